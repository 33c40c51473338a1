package config

// ReadFile reads a configuration file with the bounds of the agent's own
// (a regular file of at most MaxFileBytes, opened without blocking so a
// FIFO cannot hang the reader). The IPAM pool files (core/ipam/ipamconfig)
// are read with it too, so both follow one rule.
func ReadFile(path string) ([]byte, error) { return readFile(path) }
