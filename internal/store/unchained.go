package store

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"kubernaut.ai/datastorage/internal/audit"
)

// InsertUnchained writes events as InsertEvents does (commitSQL, the rows
// by COPY from copyMinRows events on: the events, their ids and the
// rollups, in one transaction) but without the hash chain: no advisory
// locks, no chain-head read or write, no hashing. The caller sets each
// event's chain fields (a stand-in hash will do).
//
// The correlation counts go straight to audit_rollup_correlations: with no
// chain there is no head row to keep an open cell on (cells.go). A head
// row made for a chain that does not exist (last_seq 0) would be read by
// verify-chain as that chain's head, and its cell, updated without the
// chain lock by concurrent commits, would make them fail and retry each
// other's commits. So chains off writes one row per correlation and cell
// (its rollup row), chains on one per correlation (its head): the same
// number of row updates for the usual commit in one hour.
//
// It exists for cmd/dsbench only, which measures what the chains cost
// ("chains on vs off, rollups on in both", issue 15): the product has no
// switch to turn chains off, and a copy of these statements in the
// benchmark would drift from what the store runs.
func (s *Store) InsertUnchained(ctx context.Context, events []*audit.Event) (int64, error) {
	var inserted int64
	shard, release := s.shards.acquire()
	defer release()
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return 0, fmt.Errorf("store: insert %d events without chain: %w", len(events), err)
	}
	defer conn.Release()
	// The same round trips as InsertEvents at its best: BEGIN and the COPY
	// then commitSQL and COMMIT for a big batch, one pipeline for a small.
	// Without the chain locks two commits may add the same new rollup key
	// at once; the loser is retried, as InsertEvents retries (isDuplicateEvent).
	// Nor is there a lock order between two commits' rollup rows: one may
	// wait on the other's new key while the other waits on a row it
	// updated, which PostgreSQL ends as a deadlock (40P01) after
	// deadlock_timeout; that commit is retried too (isRetryable).
	once := func() error {
		rest := commitArgs(chainHeads{}, nil, nil, newRollupDelta(events), shard)
		b := &pgx.Batch{}
		if len(events) >= copyMinRows {
			if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
				return err
			}
			n, err := conn.CopyFrom(ctx, pgx.Identifier{"audit_events"}, insertColumns, &eventRows{events: events})
			if err != nil {
				return err
			}
			inserted = n
			b.Queue(commitAfterCopySQL, append(idRowColumns(events), rest...)...)
		} else {
			cols, err := batchColumns(events)
			if err != nil {
				return err
			}
			inserted = int64(len(events))
			b.Queue("BEGIN")
			b.Queue(commitEventsSQL, slices.Concat(cols, rest, idRowColumns(events))...)
		}
		b.Queue("COMMIT")
		return conn.SendBatch(ctx, b).Close()
	}
	for range maxInsertAttempts {
		if err = once(); err == nil {
			break
		}
		rollback(conn.Conn())
		if !isDuplicateEvent(err) && !isRetryable(err) {
			break
		}
	}
	if err != nil {
		return 0, fmt.Errorf("store: insert %d events without chain: %w", len(events), err)
	}
	return inserted, nil
}
