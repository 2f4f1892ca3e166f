package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrNotFound is returned by GetEvent when no event has the id. Test with errors.Is.
var ErrNotFound = errors.New("not found")

// ErrConflict is returned by InsertNotification when the notification_id is
// already stored. Test with errors.Is.
var ErrConflict = errors.New("conflict")

// MissingParentError is returned by InsertEvents when an event names a
// parent_event_id that is neither stored nor earlier in the same batch.
type MissingParentError struct {
	// Indices are the positions of those events in the batch.
	Indices []int
}

func (e *MissingParentError) Error() string {
	return fmt.Sprintf("parent event not found for %d event(s)", len(e.Indices))
}

// ConflictError is returned by InsertEvents when an event's event_id is
// already stored, on any date, with other content, or appears earlier in
// the same batch with other content (issue 18 item 7: an id names one event
// for good). A repeat with the same content is a retry and is not an error.
// It is a data error, never an outage.
type ConflictError struct {
	// Indices are the positions of those events in the batch.
	Indices []int
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("event_id already stored with other content for %d event(s)", len(e.Indices))
}

// InvalidEventError is returned (wrapped) by InsertEvents when an event has
// no canonical form for its hash (event_data with a number PostgreSQL cannot
// hold, say). Request validation refuses such events, so in practice only a
// damaged spool entry gets here; it is a data error, never an outage.
type InvalidEventError struct {
	EventID string
	Err     error
}

func (e *InvalidEventError) Error() string {
	return "event " + e.EventID + ": " + e.Err.Error()
}

func (e *InvalidEventError) Unwrap() error { return e.Err }

// IsUnavailable reports whether err means PostgreSQL could not take the work
// right now (down, unreachable, shutting down, read-only, out of connections,
// timed out) as opposed to refusing the data. The write path spools events on
// such errors and returns them to the client on any other.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	var missing *MissingParentError
	var invalid *InvalidEventError
	var conflict *ConflictError
	if errors.As(err, &missing) || errors.As(err, &invalid) || errors.As(err, &conflict) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code[:2] {
		case "08", // connection exception
			"53", // insufficient resources: too many connections, disk full, out of memory
			"57", // operator intervention: admin shutdown, cannot connect now, query canceled
			"58", // system error (I/O)
			"40": // transaction rollback: serialization failure, deadlock — worth retrying
			return true
		}
		// read_only_sql_transaction: a primary demoted to replica during failover.
		return pgErr.Code == "25006"
	}
	// Anything that is not the server's answer (refused or lost connection,
	// closed pool, timeout) is about reaching PostgreSQL, not about the data:
	// the server never looked at the rows.
	return true
}

// isRetryable reports a transaction that failed only because of another
// one (deadlock, serialization failure) and is worth running again at once.
func isRetryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}
