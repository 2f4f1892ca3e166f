//go:build !linux

package scenario

import "os"

// datasync flushes f; without fdatasync, fsync is the nearest.
func datasync(f *os.File) error { return f.Sync() }
