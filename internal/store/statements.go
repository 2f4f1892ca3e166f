package store

import (
	"slices"

	"github.com/jackc/pgx/v5"

	"kubernaut.ai/datastorage/internal/audit"
)

// BatchInsertSQL returns the statement InsertEvents writes a batch of up to
// copyMinRows events with: one array parameter per column of
// [BatchInsertColumns], in that order, holding the stored form (stored.go).
//
// It exists for cmd/dsbench, which times this statement alone, without the
// hash-chain statements InsertEvents runs around it, and EXPLAINs it: the
// benchmark then measures the statement the store really sends, where it
// used to rebuild a copy that had to be kept in step by hand. It is a
// function, not a variable, so no caller can change what the store runs.
func BatchInsertSQL() string { return insertEventsSQL }

// BatchInsertColumns returns the columns of [BatchInsertSQL] and of the
// store's COPY, in order (a copy: the caller may keep or change it).
func BatchInsertColumns() []string { return slices.Clone(insertColumns) }

// EventColumns returns the select list of every statement that reads whole
// events (get, list, timeline), for cmd/dsbench's EXPLAINs of the list
// statements.
func EventColumns() string { return eventColumns }

// BatchInsertArgs returns the arguments of [BatchInsertSQL] for events, in
// the stored form InsertEvents sends: one array per column. The events must
// already carry what the write path fills in (ID, Date, ChainSeq, Hash,
// PreviousHash, HashAlgorithm); an error means a hash that is not lowercase
// hex.
//
// It and [CopyRows] let cmd/dsbench and the store's benchmarks send rows
// exactly as the store encodes them, without the hash-chain statements
// around the write, instead of keeping a second encoder in step by hand.
func BatchInsertArgs(events []*audit.Event) ([]any, error) { return batchColumns(events) }

// CopyRows returns the source of a COPY into audit_events with the columns
// of [BatchInsertColumns]: events in the stored form the store's own COPY
// writes (the same preconditions as [BatchInsertArgs]; a bad hash fails the
// COPY).
func CopyRows(events []*audit.Event) pgx.CopyFromSource { return &eventRows{events: events} }

// HotPathSQL returns the read statements InsertEvents and ResolveParents
// send on every write, by what they do, for cmd/dsbench's EXPLAINs (the
// EXPLAINs used to hold copies, which went stale when the id lookups moved
// to audit_event_ids):
//
//   - "chain heads": $1 the correlation ids (text[]);
//   - "stored ids": $1 the event ids (uuid[]), $2 the v7 ones among them
//     and $3 the dates they name (date[], ids.go);
//   - "parents, bounded": $1 the ids, $2 and $3 the date window, $4 and $5
//     as $2 and $3 of "stored ids";
//   - "parents, unbounded": $1 the ids (the lookup of what the bounded one missed).
func HotPathSQL() map[string]string {
	return map[string]string{
		"chain heads":        readHeadsSQL,
		"stored ids":         storedIDsSQL,
		"parents, bounded":   recentParentsSQL,
		"parents, unbounded": parentsSQL,
	}
}
