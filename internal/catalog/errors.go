package catalog

import (
	"errors"
	"fmt"

	"kubernaut.ai/datastorage/internal/failure"
)

// Sentinel errors of the catalog's operations. Test with errors.Is.
var (
	// ErrNotFound is returned by Get, Versions, ChangeStatus and
	// ValidateSelection for an unknown (or malformed) workflow id, name or
	// discovery id.
	ErrNotFound = failure.Mark(errors.New("catalog: not found"), failure.Data)
	// ErrConflict is returned by Register when the name and version exist
	// with different keys: the version must be bumped.
	ErrConflict = errors.New("catalog: version already registered with different content")
	// ErrInvalidTransition is returned by ChangeStatus for a move the
	// lifecycle does not allow (CONTRACT §15.2).
	ErrInvalidTransition = errors.New("catalog: invalid status transition")
	// ErrUnavailable wraps every error that means PostgreSQL (or, for the
	// search events, the whole write pipeline) could not take the work right
	// now; the API answers 503. The catalog is never spooled.
	ErrUnavailable = errors.New("catalog: storage unavailable")
)

// storeErr translates a store error: not found stays ErrNotFound,
// unavailability becomes ErrUnavailable, anything else is wrapped as is.
func storeErr(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNotFound):
		return fmt.Errorf("catalog: %s: %w", op, ErrNotFound)
	// Classify, not IsUnavailable: the store's catalog methods return the
	// driver's errors unclassed, and Classify reads them.
	case failure.ClassOf(err) == failure.Unavailable:
		return fmt.Errorf("catalog: %s: %w: %w", op, ErrUnavailable, err)
	default:
		return fmt.Errorf("catalog: %s: %w", op, err)
	}
}
