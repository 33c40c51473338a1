package config

import (
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
)

// MaxFileBytes is the largest configuration file (HCL or conf.yml) the
// agent reads: a real one is a few KiB, and reading is bounded so that a
// huge file or a symlink to /dev/zero cannot exhaust the daemon's memory.
const MaxFileBytes = 1 << 20 // 1 MiB

// ReadFile reads one configuration file with bounds: it must be a regular
// file (a symlink to one is fine) of at most MaxFileBytes. It is opened
// non-blocking, so that a FIFO or a device fails at once with an error
// naming it instead of hanging the reader (config show, a reload). The IPAM
// pool files (core/config/pools) are read with it too, so both follow
// one rule.
func ReadFile(path string) ([]byte, error) {
	// O_NONBLOCK: opening a FIFO for reading otherwise waits for a writer.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is %s, not a regular file", path, describeMode(fi.Mode()))
	}
	if fi.Size() > MaxFileBytes {
		return nil, fmt.Errorf("%s is %d bytes: a configuration file may have at most %d (1 MiB)", path, fi.Size(), MaxFileBytes)
	}
	// The file may grow between fstat and read: read one byte past the
	// limit to tell.
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("%s grew beyond %d bytes (1 MiB) while being read", path, MaxFileBytes)
	}
	return data, nil
}

func describeMode(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&os.ModeCharDevice != 0:
		return "a character device"
	case m&os.ModeDevice != 0:
		return "a block device"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeSymlink != 0:
		return "a symbolic link"
	}
	return "a special file (" + m.Type().String() + ")"
}

// fileErr words a ReadFile error so that it names path once.
func fileErr(path string, err error) string {
	if s := err.Error(); strings.Contains(s, path) {
		return s
	}
	return path + ": " + err.Error()
}
