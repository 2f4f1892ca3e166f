package scenario

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// syncLatency is how long the disk under PostgreSQL's WAL takes to make an
// 8 KiB write durable, the way PostgreSQL flushes its WAL at commit
// (wal_sync_method fdatasync). A commit of one event cannot answer sooner
// than one such flush, so this is the floor under the single c=1 latency
// targets: the report shows it beside them.
type syncLatency struct {
	n             int
	p50, p99, max time.Duration
}

// measureSync writes and flushes an 8 KiB block n times in a scratch file
// of dir (PostgreSQL's pg_wal, so the same file system and device), cycling
// over a preallocated 2 MiB so that, like a WAL segment, the file does not
// grow and each flush carries the data only.
func measureSync(dir string, n int) (syncLatency, error) {
	f, err := os.CreateTemp(dir, "dsbench-sync-*")
	if err != nil {
		return syncLatency{}, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	const block, blocks = 8192, 256
	buf := make([]byte, block)
	for i := range buf {
		buf[i] = byte(i)
	}
	for i := range blocks {
		if _, err := f.WriteAt(buf, int64(i*block)); err != nil {
			return syncLatency{}, err
		}
	}
	if err := f.Sync(); err != nil {
		return syncLatency{}, err
	}
	lat := make([]time.Duration, n)
	for i := range n {
		if _, err := f.WriteAt(buf, int64(i%blocks*block)); err != nil {
			return syncLatency{}, err
		}
		start := time.Now()
		if err := datasync(f); err != nil {
			return syncLatency{}, fmt.Errorf("flush %s: %w", filepath.Base(f.Name()), err)
		}
		lat[i] = time.Since(start)
	}
	slices.Sort(lat)
	at := func(q float64) time.Duration { return lat[min(n-1, int(q*float64(n)))] }
	return syncLatency{n: n, p50: at(.5), p99: at(.99), max: lat[n-1]}, nil
}
