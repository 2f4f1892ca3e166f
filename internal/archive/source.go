package archive

import (
	"context"
	"errors"
	"time"

	"kubernaut.ai/datastorage/internal/audit"
)

// Source is what the archive needs of PostgreSQL. internal/store
// implements it.
type Source interface {
	// OpenArchive returns a session holding the archive leader lock, or
	// leader false (and no session) when another replica holds it.
	OpenArchive(ctx context.Context) (s Session, leader bool, err error)
	// ArchiveRecords lists the archived months (no lock needed).
	ArchiveRecords(ctx context.Context) ([]Record, error)
}

// Session is one archive run's hold on the database.
type Session interface {
	// Close releases the leader lock.
	Close(ctx context.Context)
	// Today is the database's UTC date.
	Today(ctx context.Context) (time.Time, error)
	// Months lists the months that have an attached partition.
	Months(ctx context.Context) ([]time.Time, error)
	// Blockers counts what keeps a month in PostgreSQL: rows under legal
	// hold (by flag or active hold on their correlation) and rows of other
	// months whose parent is in the month.
	Blockers(ctx context.Context, month time.Time) (held, referenced int64, err error)
	// EachRow streams the month's events as Parquet rows in
	// (correlation_id, chain_seq) order, correlation_id compared as bytes
	// (COLLATE "C", the order of Parquet's statistics and of Go's
	// strings), each row exactly RowOf of the event the store reads.
	// Sorting them may spill to temporary files as o says. The Row is
	// reused for the next one: fn may keep a copy of *r (what it points to
	// is the row's own), not r. It reads the month in one snapshot (one
	// statement, or several streams sharing one exported snapshot), taken
	// after WatchMonth returned: the watch proves the month unchanged since
	// that snapshot, not since several.
	EachRow(ctx context.Context, month time.Time, o SortOptions, fn func(r *Row) error) error
	// RollupTotals sums the month's hourly rollups.
	RollupTotals(ctx context.Context, month time.Time) ([]RollupTotal, error)
	// SaveRecord inserts or replaces the month's record.
	SaveRecord(ctx context.Context, r Record) error
	// WatchMonth arms the month's watch and returns its generation: from
	// its return on, a write to the month that commits is noted. It must
	// return before EachRow starts reading the month for its files.
	WatchMonth(ctx context.Context, month time.Time) (generation int64, err error)
	// DropMonth, in one transaction: blocks legal holds and writes to the
	// month, checks again that nothing blocks it, then proves the month is
	// the archived one. When generation watch (the one the archive's files
	// were written under; 0 for none) is still armed, the watch decides: no
	// write noted, the month is proved; a write noted is ErrChanged
	// (wrapped). Otherwise it computes the month's Sums and calls check
	// with them (compared is then true), returning check's error. Only once
	// proved does it detach and drop the partition, free the month's event
	// ids and mark the record dropped. ErrBlocked when a hold or a
	// reference appeared.
	DropMonth(ctx context.Context, month time.Time, watch int64, check func(Sums) error) (compared bool, err error)
	// Restore creates the month's partition if needed and inserts the
	// events each yields that are not there yet, with their ids, then marks
	// the record restored, in one transaction. It returns how many it
	// inserted.
	Restore(ctx context.Context, month time.Time, each func(yield func(*audit.Event) error) error) (int64, error)
}

// SortOptions bound the sort of a month's events by Session.EachRow.
type SortOptions struct {
	// TempDir holds the sorted runs spilled while a month is sorted; ""
	// means os.TempDir. They take about the partition's heap size.
	TempDir string
	// Memory bounds the row bytes held in memory at once (one run); 0
	// means 256 MiB.
	Memory int64
}

// ErrBlocked is returned by Session.DropMonth when the month gained a held
// row or a reference from another month since it was archived.
var ErrBlocked = errors.New("archive: the month is held or referenced")

// Record statuses.
const (
	// StatusVerified: the files are written and verified against
	// PostgreSQL; the partition is still there.
	StatusVerified = "verified"
	// StatusDropped: the partition is gone; reads use the files.
	StatusDropped = "dropped"
	// StatusRestored: the month was loaded back into a partition; the job
	// leaves it alone until `archive run --month` archives it again.
	StatusRestored = "restored"
)

// Record is one row of audit_archives.
type Record struct {
	Month          time.Time
	Status         string
	Target         string
	ManifestKey    string
	ManifestSHA256 string
	Events         int64
	Bytes          int64
	EventsDigest   string
	// Watch is the generation of the month's watch (Session.WatchMonth)
	// armed before the files were read from PostgreSQL; 0 for an archive
	// written before the watch existed.
	Watch      int64
	ArchivedAt time.Time
	DroppedAt  *time.Time
	RestoredAt *time.Time
}
