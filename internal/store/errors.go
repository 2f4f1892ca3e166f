package store

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/puddle/v2"

	"kubernaut.ai/datastorage/internal/failure"
)

// The store returns the errors its callers declare, each carrying its
// failure class: query.ErrNotFound from GetEvent, integrity.ErrNotFound from
// the chain and hold methods, audit.ErrNotificationExists from
// InsertNotification, and *audit.MissingParentError,
// *audit.InvalidEventError and *audit.RefusedEventError from the writes.
// Every other error leaves an exported method as an *Error with the class
// Classify finds.

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
