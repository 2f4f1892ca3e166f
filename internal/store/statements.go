package store

import "slices"

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
