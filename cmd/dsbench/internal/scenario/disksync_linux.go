package scenario

import (
	"os"
	"syscall"
)

// datasync flushes f as PostgreSQL's default wal_sync_method on Linux does.
func datasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
