package audit

import (
	"errors"
	"fmt"
)

// The refusals below are facts about events and notifications, whoever
// finds them: the store returns them from its writes, the write path
// (internal/ingest) and the handlers test for them with errors.As and
// errors.Is, and none of those needs the store's package to do so.

// ErrNotificationExists is returned by a notification store's
// InsertNotification when the notification_id is already stored. Test with
// errors.Is.
var ErrNotificationExists = errors.New("notification already recorded")

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
