package store

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
)

// The store returns the errors its callers declare: query.ErrNotFound from
// GetEvent, integrity.ErrNotFound from the chain and hold methods,
// audit.ErrNotificationExists from InsertNotification, and
// *audit.MissingParentError and *audit.InvalidEventError from the writes.
// Whether any other error is an outage is decided by ingest.IsUnavailable.

// isRetryable reports a transaction that failed only because of another
// one (deadlock, serialization failure) and is worth running again at once.
func isRetryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}
