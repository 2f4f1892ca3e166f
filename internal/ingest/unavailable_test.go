package ingest

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"

	"kubernaut.ai/datastorage/internal/audit"
)

func TestIsUnavailableTellsOutagesFromDataErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"connection refused (not a server answer)", errors.New("dial tcp 127.0.0.1:5432: connect: connection refused"), true},
		{"deadline", fmt.Errorf("store: insert: %w", context.DeadlineExceeded), true},
		{"admin shutdown", &pgconn.PgError{Code: "57P01"}, true},
		{"too many connections", &pgconn.PgError{Code: "53300"}, true},
		{"read-only after failover", &pgconn.PgError{Code: "25006"}, true},
		{"deadlock", &pgconn.PgError{Code: "40P01"}, true},
		{"check violation", &pgconn.PgError{Code: "23514"}, false},
		{"invalid text", &pgconn.PgError{Code: "22021"}, false},
		{"missing parent", fmt.Errorf("store: %w", &audit.MissingParentError{Indices: []int{1}}), false},
		{"no canonical form", fmt.Errorf("store: %w", &audit.InvalidEventError{EventID: "x", Err: errors.New("number out of range")}), false},
	} {
		assert.Equal(t, tc.want, IsUnavailable(tc.err), tc.name)
	}
}
