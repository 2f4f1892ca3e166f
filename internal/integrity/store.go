package integrity

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/failure"
)

// ErrNotFound is returned (possibly wrapped) by a [Store]'s ReadChain,
// PlaceHold and ReleaseHold, and so by [Service.VerifyChain],
// [Service.PlaceHold] and [Service.ReleaseHold], when the correlation has no
// events (or, for a release, no active hold). Test with errors.Is.
var ErrNotFound = failure.Mark(errors.New("not found"), failure.Data)

// Store is what the integrity service needs of PostgreSQL. internal/store
// implements it; the rules about what the rows mean stay here.
type Store interface {
	// ReadChain reads one correlation's chain in a single snapshot: begin
	// gets the recorded head and the tombstones, then each gets every stored
	// event in chain order. It returns the number of events, or ErrNotFound
	// when there are none (begin is still called). An error from begin or
	// each stops the read and is returned as is.
	ReadChain(ctx context.Context, correlationID string,
		begin func(ChainState) error, each func(*audit.Event) error) (int64, error)
	// ReadChainAfter is ReadChain from a point: begin gets the state with
	// the checkpoint and returns the chain_seq after which each is called
	// (0 for the whole chain).
	ReadChainAfter(ctx context.Context, correlationID string,
		begin func(ChainState) (after int64, err error), each func(*audit.Event) error) (int64, error)
	// AdvanceCheckpoint records cp as the chain's checkpoint if it is ahead
	// of the recorded one.
	AdvanceCheckpoint(ctx context.Context, correlationID string, cp Checkpoint) error
	// OpenExport starts an export of the events matching f in chain order,
	// batch events at a time, from one consistent snapshot.
	OpenExport(ctx context.Context, f ExportFilter, batch int) (ExportCursor, error)
	// PlaceHold holds every event of correlationID (ErrNotFound when there is
	// none); placing a hold twice returns the existing one.
	PlaceHold(ctx context.Context, correlationID, reason, placedBy string, at time.Time) (Hold, error)
	// ReleaseHold releases the active hold (ErrNotFound when there is none).
	ReleaseHold(ctx context.Context, correlationID, reason, releasedBy string, at time.Time) (HoldRelease, error)
	// ListHolds returns the active holds, oldest first.
	ListHolds(ctx context.Context) ([]Hold, error)
}

// ExportCursor streams the events of an export a batch at a time. Next
// returns an empty batch when the export is complete; Close ends it and may
// be called more than once.
type ExportCursor interface {
	Next(ctx context.Context) ([]audit.Event, error)
	Close(ctx context.Context)
}

// ChainHead is the last link of a correlation's hash chain as
// audit_chain_heads records it: the writers move it forward in the same
// transaction as the events, so it names the chain's true end even when the
// last events were deleted behind the service's back.
type ChainHead struct {
	Seq  int64
	Hash string
}

// Tombstone is a range of one correlation's chain that the retention job
// removed: chain_seq FromSeq..ToSeq are gone on purpose, and LastHash is the
// event_hash of ToSeq, which the event after the range links to.
type Tombstone struct {
	FromSeq, ToSeq int64
	LastHash       string
	DeletedAt      time.Time
}

// ChainState is what ReadChain knows about a chain before its events: the
// recorded head (nil when none is recorded), the retention tombstones,
// ordered by FromSeq, and the verification checkpoint (nil when none).
type ChainState struct {
	Head       *ChainHead
	Tombstones []Tombstone
	Checkpoint *Checkpoint
}

// Checkpoint is the sealed head of a chain's verified prefix
// (audit_chain_checkpoints, migration 00006): every link up to and
// including Seq was found intact by a verification at VerifiedAt. Events is
// the number of stored links in that prefix. Seal is the verifier's
// signature over the rest; the store neither makes nor checks it.
type Checkpoint struct {
	Seq        int64
	EventID    uuid.UUID
	Hash       string
	VerifiedAt time.Time
	Events     int64
	Seal       string
}

// ExportFilter selects the events of an export. Zero values mean "no
// condition".
type ExportFilter struct {
	CorrelationID string
	EventCategory string
	// Since and Until bound event_timestamp, both inclusive.
	Since, Until time.Time
	// Limit caps the number of events; 0 means no cap.
	Limit int64
	// Offset skips that many events of the ordered selection.
	Offset int64
}

// Hold is an active legal hold on a correlation.
type Hold struct {
	CorrelationID string
	// EventsAffected is the number of the correlation's events under the
	// hold (all of them).
	EventsAffected int64
	PlacedBy       string
	PlacedAt       time.Time
	Reason         string
}

// HoldRelease is the record of a released hold.
type HoldRelease struct {
	CorrelationID  string
	EventsReleased int64
	ReleasedBy     string
	ReleasedAt     time.Time
}
