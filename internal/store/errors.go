package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/puddle/v2"

	"kubernaut.ai/datastorage/internal/failure"
)

// ErrNotFound is returned by GetEvent (and the other lookups) when nothing
// has the id. Test with errors.Is. Its class is failure.Data: asking again
// gives the same answer.
var ErrNotFound = failure.Mark(errors.New("not found"), failure.Data)

// ErrConflict is returned by InsertNotification when the notification_id is
// already stored (a unique violation of that constraint, and of no other).
// Test with errors.Is. It is a data error.
var ErrConflict = failure.Mark(errors.New("conflict"), failure.Data)

// MissingParentError is returned by InsertEvents and ResolveParents when an
// event names a parent_event_id that is neither stored nor earlier in the
// same batch. It is a data error.
type MissingParentError struct {
	// Indices are the positions of those events in the batch.
	Indices []int
}

func (e *MissingParentError) Error() string {
	return fmt.Sprintf("parent event not found for %d event(s)", len(e.Indices))
}

// FailureClass is failure.Data: the batch names parents that do not exist.
func (e *MissingParentError) FailureClass() failure.Class { return failure.Data }

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

// FailureClass is failure.Data: the batch reuses an id.
func (e *ConflictError) FailureClass() failure.Class { return failure.Data }

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

// FailureClass is failure.Data: the event itself cannot be stored.
func (e *InvalidEventError) FailureClass() failure.Class { return failure.Data }

// RefusedEventError is returned by InsertEvents when PostgreSQL refused the
// batch for its data (SQLSTATE classes 22 and 23: a check constraint, a value
// out of range). Index is the first event whose presence makes the batch
// fail, found by trying growing prefixes of the batch in transactions that
// are rolled back; -1 when those trials did not reproduce the refusal. It is
// a data error; nothing of the batch was written.
type RefusedEventError struct {
	Index int
	Err   error
}

func (e *RefusedEventError) Error() string {
	if e.Index < 0 {
		return "the database refused the batch: " + e.Err.Error()
	}
	return fmt.Sprintf("the database refused event %d of the batch: %s", e.Index, e.Err.Error())
}

func (e *RefusedEventError) Unwrap() error { return e.Err }

// FailureClass is failure.Data.
func (e *RefusedEventError) FailureClass() failure.Class { return failure.Data }

// Error is how every error of the store's exported methods reaches its
// caller: the cause, with the class failure.ClassOf reads (see Classify).
type Error struct {
	Err   error
	Class failure.Class
}

func (e *Error) Error() string { return e.Err.Error() }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// FailureClass returns the class found by Classify.
func (e *Error) FailureClass() failure.Class { return e.Class }

// IsUnavailable reports whether err means PostgreSQL could not take the work
// right now; it is failure.ClassOf(err) == failure.Unavailable.
func IsUnavailable(err error) bool { return failure.ClassOf(err) == failure.Unavailable }

// Classify is the store's rule, in one place, for what a pgx error means:
//
//   - Unavailable: no connection could be made (refused, reset, timed out,
//     and every refusal at admission: 3D000 no such database, 28xxx
//     authentication, 53300 too many connections, 55000 database not
//     accepting connections, 57P03 starting up), a connection lost mid-way,
//     a closed pool, a timeout, and the SQLSTATE classes 08 (connection), 53
//     (resources), 57 (operator intervention), 58 (system), 40 (deadlock,
//     serialization: worth a retry), 28 and 3D, plus 25006 (read-only after
//     a failover) and 42501 (a privilege revoked: an operator's doing, to be
//     undone, never the data's fault).
//   - Data: SQLSTATE classes 22 (data exception) and 23 (integrity
//     constraint) and our own typed refusals.
//   - Internal: everything else (a statement we got wrong, 42xxx, an answer
//     we cannot scan, an unknown error).
//
// An error already carrying a class keeps it.
func Classify(err error) failure.Class {
	if err == nil {
		return failure.None
	}
	var c failure.Classifier
	if errors.As(err, &c) {
		return c.FailureClass()
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return classifySQLState(pgErr.Code)
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	switch {
	case errors.As(err, &connectErr),
		errors.As(err, &netErr),
		pgconn.Timeout(err),
		pgconn.SafeToRetry(err), // never reached the server
		errors.Is(err, pgconn.ErrConnClosed),
		errors.Is(err, puddle.ErrClosedPool),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EPIPE),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return failure.Unavailable
	}
	return failure.Internal
}

func classifySQLState(code string) failure.Class {
	switch code {
	case "25006", // read_only_sql_transaction: a primary demoted during failover
		"42501", // insufficient_privilege: a grant revoked by an operator
		"55000": // object_not_in_prerequisite_state: database not accepting connections
		return failure.Unavailable
	}
	if len(code) < 2 {
		return failure.Internal
	}
	switch code[:2] {
	case "08", // connection exception
		"28", // invalid authorization: wrong password after a rotation, pg_hba refusal
		"3D", // invalid catalog name: the database does not exist
		"53", // insufficient resources: too many connections, disk full, out of memory
		"57", // operator intervention: admin shutdown, cannot connect now, query canceled
		"58", // system error (I/O)
		"40": // transaction rollback: serialization failure, deadlock — worth retrying
		return failure.Unavailable
	case "22", "23":
		return failure.Data
	}
	return failure.Internal
}

// classified returns err as a *Error with its class (nil for nil). Exported
// methods defer classifyErr so that no error leaves the store unclassified.
func classified(err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	return &Error{Err: err, Class: Classify(err)}
}

// classifyErr replaces *err by classified(*err); for a deferred call.
func classifyErr(err *error) { *err = classified(*err) }

// isRetryable reports a transaction that failed only because of another
// one (deadlock, serialization failure) and is worth running again at once.
func isRetryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}
