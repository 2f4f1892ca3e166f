package scenario

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"kubernaut.ai/datastorage/cmd/dsbench/internal/harness"
	"kubernaut.ai/datastorage/cmd/dsbench/internal/loadgen"
	"kubernaut.ai/datastorage/internal/store"
)

// copyChunk is the rows per COPY (and per commit) of the raw limit: large
// enough that the commit's WAL flush is a rounding error.
const copyChunk = 5000

// copyResult is the raw limit: COPY straight into audit_events.
type copyResult struct {
	rows    int64
	elapsed time.Duration
	pgCPU   float64
}

func (c copyResult) rowsPerSec() float64 {
	if c.elapsed <= 0 {
		return 0
	}
	return float64(c.rows) / c.elapsed.Seconds()
}

// rawCopy COPYs rows rows, equivalent to the API's events (same generator,
// same decoded values, a stand-in hash), into audit_events with all its
// indexes, in chunks of copyChunk rows per transaction, from one connection.
func rawCopy(ctx context.Context, e *harness.Env, gen *loadgen.Generator, rows int64) (copyResult, error) {
	bodies := make([][]byte, copyChunk)
	for i := range bodies {
		bodies[i] = gen.Body()
	}
	events, err := loadgen.DecodeEvents(bodies)
	if err != nil {
		return copyResult{}, err
	}
	conn, err := pgx.Connect(ctx, measuredURL(e))
	if err != nil {
		return copyResult{}, err
	}
	defer conn.Close(context.Background())

	pgPID := e.PostmasterPID()
	cpu0 := harness.TreeCPU(pgPID)
	start := time.Now()
	var done int64
	deadline := start.Add(3 * time.Minute)
	for done < rows && time.Now().Before(deadline) {
		part := events[:min(int64(copyChunk), rows-done)]
		loadgen.StampUnchained(part, func(i int) int64 { return done + int64(i) + 1 })
		got, err := conn.CopyFrom(ctx, pgx.Identifier{"audit_events"}, store.BatchInsertColumns(), store.CopyRows(part))
		if err != nil {
			return copyResult{}, err
		}
		done += got
	}
	return copyResult{rows: done, elapsed: time.Since(start), pgCPU: harness.TreeCPU(pgPID) - cpu0}, nil
}

// countRows counts audit_events (for the report).
func countRows(ctx context.Context, e *harness.Env) int64 {
	var n int64
	withConn(ctx, e, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, "SELECT count(*) FROM audit_events").Scan(&n)
	})
	return n
}
