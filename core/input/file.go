package input

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// ReadFile reads one file an operator pointed the agent at (a
// configuration file, a credential) with bounds: it must be a regular
// file (a symlink to one is fine) of at most limit bytes, so that a huge
// file or a symlink to /dev/zero cannot exhaust memory. It is opened
// non-blocking, so that a FIFO or a device fails at once with an error
// naming it instead of hanging the reader. what names the kind of file in
// the size error ("a configuration file"); check, when not nil, vets the
// file's mode before anything is read (a secret's permissions).
func ReadFile(path string, limit int64, what string, check func(fs.FileInfo) error) ([]byte, error) {
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
	if check != nil {
		if err := check(fi); err != nil {
			return nil, err
		}
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%s is %d bytes: %s may have at most %d%s", path, fi.Size(), what, limit, inUnits(limit))
	}
	// The file may grow between fstat and read: read one byte past the
	// limit to tell.
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s grew beyond %d bytes%s while being read", path, limit, inUnits(limit))
	}
	return data, nil
}

// inUnits is " (1 MiB)" for a limit of a whole number of MiB or KiB, so
// that an operator need not count digits; "" otherwise.
func inUnits(n int64) string {
	switch {
	case n > 0 && n%(1<<20) == 0:
		return fmt.Sprintf(" (%d MiB)", n>>20)
	case n > 0 && n%(1<<10) == 0:
		return fmt.Sprintf(" (%d KiB)", n>>10)
	}
	return ""
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
