package scenario

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"kubernaut.ai/datastorage/cmd/dsbench/internal/harness"
	"kubernaut.ai/datastorage/cmd/dsbench/internal/loadgen"
	"kubernaut.ai/datastorage/internal/ingest"
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
	conn, err := pgx.Connect(ctx, e.DBURL)
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

// storeCopyMinRows mirrors the store's copyMinRows: from this many rows the
// store writes a batch by COPY instead of the unnest INSERT, and so does the
// chain-less comparison.
const storeCopyMinRows = 200

// chainRun is one store-level insert measurement.
type chainRun struct {
	batch, writers int
	chain          bool
	rows           int64
	elapsed        time.Duration
	pgCPU, goCPU   float64 // seconds
}

func (c chainRun) rowsPerSec() float64 {
	if c.elapsed <= 0 {
		return 0
	}
	return float64(c.rows) / c.elapsed.Seconds()
}

// chainCost measures the product's write (the ingest pipeline's group
// commit over Store.InsertEvents: advisory locks, chain-head read, hashing,
// insert, chain-head write, rollups, in one transaction per writer) against
// the same rows alone in a transaction, through pgx, for big batches from one
// writer and group-commit-sized ones from two.
func chainCost(ctx context.Context, e *harness.Env, gen *loadgen.Generator) ([]chainRun, error) {
	st, err := store.Open(ctx, e.DBURL, store.Options{MaxConns: 4})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	var out []chainRun
	for _, shape := range []struct{ batch, writers, total int }{{500, 1, 50_000}, {32, 2, 20_000}} {
		for _, chain := range []bool{false, true} {
			r, err := chainOnce(ctx, e, st, gen, shape.batch, shape.writers, shape.total, chain)
			if err != nil {
				return nil, err
			}
			harness.Logf("  batch %3d × %d writer(s), chain %-5v %8.0f rows/s", r.batch, r.writers, r.chain, r.rowsPerSec())
			out = append(out, r)
		}
	}
	return out, nil
}

func chainOnce(ctx context.Context, e *harness.Env, st *store.Store, gen *loadgen.Generator, batch, writers, total int, chain bool) (chainRun, error) {
	// Decode everything first so the clock sees only the writes.
	bodies := make([][]byte, total)
	for i := range bodies {
		bodies[i] = gen.Body()
	}
	events, err := loadgen.DecodeEvents(bodies)
	if err != nil {
		return chainRun{}, err
	}
	var cols [][]any
	if !chain {
		for i := 0; i < total; i += batch {
			part := events[i:min(i+batch, total)]
			loadgen.StampUnchained(part, func(i int) int64 { return int64(i) + 1 })
			if batch < storeCopyMinRows {
				args, err := store.BatchInsertArgs(part)
				if err != nil {
					return chainRun{}, err
				}
				cols = append(cols, args)
			}
		}
	}
	work := make(chan int, total/batch+1)
	for i := 0; i*batch < total; i++ {
		work <- i
	}
	close(work)

	// With chains, the writes go through the product's own group commit
	// (ingest.Pipeline over store.InsertEvents) with as many writers as
	// there are submitters, so correlations are routed to writers as in
	// the server.
	var pipe *ingest.Pipeline
	if chain {
		pipe = ingest.New(st, nil, ingest.Options{Writers: writers, MaxBatch: 2000}, nil, slog.New(slog.DiscardHandler))
		if err := pipe.Start(ctx); err != nil {
			return chainRun{}, err
		}
		defer pipe.Stop(context.Background())
	}
	pgPID := e.PostmasterPID()
	pg0, go0 := harness.TreeCPU(pgPID), harness.SelfCPU()
	deadline := time.Now().Add(time.Minute)
	start := time.Now()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		rows  int64
		first error
	)
	for range writers {
		wg.Go(func() {
			for i := range work {
				if time.Now().After(deadline) || ctx.Err() != nil {
					return
				}
				var n int64
				var err error
				if chain {
					part := events[i*batch : min((i+1)*batch, total)]
					if _, err = pipe.Submit(ctx, part); err == nil {
						n = int64(len(part))
					}
				} else {
					err = pgx.BeginFunc(ctx, st.Pool(), func(tx pgx.Tx) error {
						if batch >= storeCopyMinRows {
							part := events[i*batch : min((i+1)*batch, total)]
							var err error
							n, err = tx.CopyFrom(ctx, pgx.Identifier{"audit_events"}, store.BatchInsertColumns(), store.CopyRows(part))
							return err
						}
						tag, err := tx.Exec(ctx, store.BatchInsertSQL(), cols[i]...)
						n = tag.RowsAffected()
						return err
					})
				}
				mu.Lock()
				rows += n
				if err != nil && first == nil {
					first = err
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	r := chainRun{batch: batch, writers: writers, chain: chain, rows: rows, elapsed: time.Since(start),
		pgCPU: harness.TreeCPU(pgPID) - pg0, goCPU: harness.SelfCPU() - go0}
	if first != nil {
		return r, fmt.Errorf("insert (chain %v): %w", chain, first)
	}
	return r, nil
}

// countRows counts audit_events (for the report).
func countRows(ctx context.Context, e *harness.Env) int64 {
	var n int64
	withConn(ctx, e, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, "SELECT count(*) FROM audit_events").Scan(&n)
	})
	return n
}
