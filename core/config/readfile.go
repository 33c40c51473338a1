package config

import (
	"strings"

	"github.com/spiderpool-agent/spiderpool-agent/core/input"
)

// MaxFileBytes is the largest configuration file (HCL or conf.yml) the
// agent reads: a real one is a few KiB, and reading is bounded so that a
// huge file or a symlink to /dev/zero cannot exhaust the daemon's memory.
const MaxFileBytes = 1 << 20 // 1 MiB

// ReadFile reads one configuration file with bounds: it must be a regular
// file (a symlink to one is fine) of at most MaxFileBytes, and a FIFO or a
// device fails at once with an error naming it instead of hanging the
// reader (config show, a reload). The IPAM pool files (core/config/pools)
// are read with it too, so both follow one rule.
func ReadFile(path string) ([]byte, error) {
	return input.ReadFile(path, MaxFileBytes, "a configuration file", nil)
}

// fileErr words a ReadFile error so that it names path once.
func fileErr(path string, err error) string {
	if s := err.Error(); strings.Contains(s, path) {
		return s
	}
	return path + ": " + err.Error()
}
