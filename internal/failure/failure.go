// Package failure is the one rule that says what a failed operation means
// for whoever asked for it. Every path that can fail against a store — live
// writes (ingest), replay (spool), reads and readiness (httpapi), the CLI —
// asks [ClassOf] and answers by the class, so one error never means "outage"
// on one path and "bad data" on another.
//
// The rule lives on the error, as pgconn's SafeToRetry does: the package
// that knows the driver (store) returns errors that carry their class, with
// a FailureClass method. This package knows no driver, so packages that must
// not import the store can still classify what it returns.
//
// # Classes
//
//   - [Unavailable]: the store could not take or give the work right now
//     (unreachable, refusing connections, read-only, out of connections,
//     privilege revoked, timed out, a transaction lost to a deadlock). The
//     data was never judged; the same work may succeed later or elsewhere.
//   - [Data]: the store judged the data and refused it (SQLSTATE classes 22
//     and 23, a missing parent, an event without a canonical form). Retrying
//     the same data gives the same answer.
//   - [Internal]: anything else — an answer we cannot read, a statement our
//     code got wrong, a bug. Neither a retry nor the client can fix it; it is
//     logged at error level and alerted on.
//
// An error that says nothing about its class is Internal: calling an
// unknown error an outage made reads answer 503 forever and replay retry
// the same page without end (issue 18).
package failure

import (
	"context"
	"errors"
)

// Class is what a failure means for the caller.
type Class int

const (
	// None is the class of a nil error.
	None Class = iota
	// Unavailable means the store could not take the work now; try later or
	// keep the work elsewhere (the spool).
	Unavailable
	// Data means the store refused the data itself; the same data fails
	// again.
	Data
	// Internal means neither: an error of ours or one we do not understand.
	Internal
)

// String returns the class's name as used in logs and metric labels.
func (c Class) String() string {
	switch c {
	case None:
		return "none"
	case Unavailable:
		return "unavailable"
	case Data:
		return "data"
	case Internal:
		return "internal"
	default:
		return "unknown"
	}
}

// Classifier is implemented by errors that know their class.
type Classifier interface {
	FailureClass() Class
}

// ClassOf returns the class of err: that of the outermost error in its chain
// with a FailureClass method, else Unavailable for an ended context, else
// Internal.
//
// context.DeadlineExceeded and context.Canceled are Unavailable on purpose:
// the work was abandoned before the store answered, so nothing was judged and
// nothing is known to be wrong. A caller whose own context ended is gone and
// does not read the answer; a deadline of ours that passed is a slow store.
func ClassOf(err error) Class {
	if err == nil {
		return None
	}
	var c Classifier
	if errors.As(err, &c) {
		return c.FailureClass()
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return Unavailable
	}
	return Internal
}

// Is reports whether err is of class c.
func Is(err error, c Class) bool { return ClassOf(err) == c }

// Mark returns err carrying class c (nil for a nil err). errors.Is and
// errors.As see through it to err.
func Mark(err error, c Class) error {
	if err == nil {
		return nil
	}
	return &marked{err: err, class: c}
}

type marked struct {
	err   error
	class Class
}

func (e *marked) Error() string       { return e.err.Error() }
func (e *marked) Unwrap() error       { return e.err }
func (e *marked) FailureClass() Class { return e.class }
