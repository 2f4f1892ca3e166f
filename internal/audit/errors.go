package audit

import (
	"errors"
	"fmt"

	"kubernaut.ai/datastorage/internal/failure"
)

// The refusals below are facts about events and notifications, whoever
// finds them: the store returns them from its writes, the write path
// (internal/ingest) and the handlers test for them with errors.As and
// errors.Is, and none of those needs the store's package to do so. Each is
// failure.Data: the same data is refused again.

// ErrNotificationExists is returned by a notification store's
// InsertNotification when the notification_id is already stored (a unique
// violation of that constraint, and of no other). Test with errors.Is.
var ErrNotificationExists = failure.Mark(errors.New("notification already recorded"), failure.Data)

// MissingParentError is returned by an event store's InsertEvents and
// ResolveParents when events name a parent_event_id that is neither stored
// nor earlier in the same batch.
type MissingParentError struct {
	// Indices are the positions of those events in the batch.
	Indices []int
}

// Error says how many events lack their parent; Indices says which.
func (e *MissingParentError) Error() string {
	return fmt.Sprintf("parent event not found for %d event(s)", len(e.Indices))
}

// FailureClass is failure.Data: the batch names parents that do not exist.
func (e *MissingParentError) FailureClass() failure.Class { return failure.Data }

// ConflictError is returned by an event store's InsertEvents when an
// event's event_id is already stored, on any date, with other content, or
// appears earlier in the same batch with other content: an id names one
// event for good. A repeat with the same content is a retry, not an error.
type ConflictError struct {
	// Indices are the positions of those events in the batch.
	Indices []int
}

// Error says how many events reuse an id.
func (e *ConflictError) Error() string {
	return fmt.Sprintf("event_id already stored with other content for %d event(s)", len(e.Indices))
}

// FailureClass is failure.Data: the batch reuses an id.
func (e *ConflictError) FailureClass() failure.Class { return failure.Data }

// InvalidEventError is returned (wrapped) by an event store's InsertEvents
// when an event has no canonical form for its hash (event_data with a number
// PostgreSQL cannot hold, say). Request validation refuses such events, so
// in practice only a damaged spool entry gets here; it is a data error,
// never an outage.
type InvalidEventError struct {
	EventID string
	Err     error
}

// Error names the event and why it has no canonical form.
func (e *InvalidEventError) Error() string {
	return "event " + e.EventID + ": " + e.Err.Error()
}

// Unwrap returns the canonical encoder's error.
func (e *InvalidEventError) Unwrap() error { return e.Err }

// FailureClass is failure.Data: the event itself cannot be stored.
func (e *InvalidEventError) FailureClass() failure.Class { return failure.Data }

// RefusedEventError is returned by an event store's InsertEvents when
// PostgreSQL refused the batch for its data (SQLSTATE classes 22 and 23: a
// check constraint, a value out of range). Index is the first event whose
// presence makes the batch fail, found by trying growing prefixes of the
// batch in transactions that are rolled back; -1 when those trials did not
// reproduce the refusal. Nothing of the batch was written.
type RefusedEventError struct {
	Index int
	Err   error
}

// Error names the refused event when it is known.
func (e *RefusedEventError) Error() string {
	if e.Index < 0 {
		return "the database refused the batch: " + e.Err.Error()
	}
	return fmt.Sprintf("the database refused event %d of the batch: %s", e.Index, e.Err.Error())
}

// Unwrap returns the database's error.
func (e *RefusedEventError) Unwrap() error { return e.Err }

// FailureClass is failure.Data.
func (e *RefusedEventError) FailureClass() failure.Class { return failure.Data }
