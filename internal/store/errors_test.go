package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/puddle/v2"
	"github.com/stretchr/testify/assert"

	"kubernaut.ai/datastorage/internal/failure"
)

func TestClassifyTellsOutagesFromDataFromBugs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		want failure.Class
	}{
		{"nil", nil, failure.None},
		{"deadline", fmt.Errorf("store: insert: %w", context.DeadlineExceeded), failure.Unavailable},
		{"closed pool", fmt.Errorf("store: %w", puddle.ErrClosedPool), failure.Unavailable},
		{"connection lost mid-answer", fmt.Errorf("store: %w", io.ErrUnexpectedEOF), failure.Unavailable},
		{"conn closed", fmt.Errorf("store: %w", pgconn.ErrConnClosed), failure.Unavailable},
		{"admin shutdown", &pgconn.PgError{Code: "57P01"}, failure.Unavailable},
		{"too many connections", &pgconn.PgError{Code: "53300"}, failure.Unavailable},
		{"no such database", &pgconn.PgError{Code: "3D000"}, failure.Unavailable},
		{"password rotated", &pgconn.PgError{Code: "28P01"}, failure.Unavailable},
		{"pg_hba refusal", &pgconn.PgError{Code: "28000"}, failure.Unavailable},
		{"not accepting connections", &pgconn.PgError{Code: "55000"}, failure.Unavailable},
		{"privilege revoked", &pgconn.PgError{Code: "42501"}, failure.Unavailable},
		{"read-only after failover", &pgconn.PgError{Code: "25006"}, failure.Unavailable},
		{"deadlock", &pgconn.PgError{Code: "40P01"}, failure.Unavailable},
		{"io error", &pgconn.PgError{Code: "58030"}, failure.Unavailable},
		{"check violation", &pgconn.PgError{Code: "23514"}, failure.Data},
		{"invalid text", &pgconn.PgError{Code: "22021"}, failure.Data},
		{"undefined column: our statement is wrong", &pgconn.PgError{Code: "42703"}, failure.Internal},
		{"datatype mismatch", &pgconn.PgError{Code: "42804"}, failure.Internal},
		{"lock not available is not 55000", &pgconn.PgError{Code: "55P03"}, failure.Internal},
		{"scan error", errors.New("can't scan into dest[3]: cannot scan int4 (OID 23) in binary format into *string"), failure.Internal},
		{"missing parent", fmt.Errorf("store: %w", &MissingParentError{Indices: []int{1}}), failure.Data},
		{"no canonical form", fmt.Errorf("store: %w", &InvalidEventError{EventID: "x", Err: errors.New("number out of range")}), failure.Data},
		{"not found", fmt.Errorf("query: %w", ErrNotFound), failure.Data},
	} {
		assert.Equal(t, tc.want, Classify(tc.err), tc.name)
		if tc.err != nil {
			assert.Equal(t, tc.want, failure.ClassOf(classified(tc.err)), "%s: through classified and failure.ClassOf", tc.name)
		}
	}
}
