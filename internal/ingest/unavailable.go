package ingest

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5/pgconn"

	"kubernaut.ai/datastorage/internal/audit"
)

// IsUnavailable reports whether an error of the store means PostgreSQL could
// not take the work right now (down, unreachable, shutting down, read-only,
// out of connections, timed out) as opposed to refusing the data. The write
// path spools events on such errors and returns them to the client on any
// other; reads answer 503 on them.
//
// It lives here, not in internal/store, so that the packages that decide
// what to do about an outage (this one, internal/httpapi) need not import
// the store. The rule itself is the store's old one, unchanged; it is about
// to be replaced by a failure classification carried by the errors.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	var missing *audit.MissingParentError
	var invalid *audit.InvalidEventError
	if errors.As(err, &missing) || errors.As(err, &invalid) {
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
