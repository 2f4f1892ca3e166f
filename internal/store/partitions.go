package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"kubernaut.ai/datastorage/internal/maintenance"
)

// partitionLockKey serialises partition creation across replicas: CREATE TABLE
// IF NOT EXISTS alone can still fail when two sessions race on the same name.
const partitionLockKey = 0x6473_7061_7274 // "dspart"

// monthStart returns the first day of t's month, UTC.
func monthStart(t time.Time) time.Time {
	y, m, _ := t.UTC().Date()
	return time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
}

// partitionName names the partition holding the month that starts at m.
func partitionName(m time.Time) string {
	return fmt.Sprintf("audit_events_y%04dm%02d", m.Year(), int(m.Month()))
}

// EnsurePartitions makes sure audit_events has a partition for every month
// from the one holding `from` through `ahead` months after it, and returns how
// many it created. It is cheap when they exist.
func (s *Store) EnsurePartitions(ctx context.Context, from time.Time, ahead int) (_ int, err error) {
	defer classifyErr(&err)
	months := make([]time.Time, 0, ahead+1)
	for m, i := monthStart(from), 0; i <= ahead; m, i = m.AddDate(0, 1, 0), i+1 {
		months = append(months, m)
	}
	return s.ensureMonths(ctx, months)
}

// ensureMonths creates the partitions of the given months that are missing.
func (s *Store) ensureMonths(ctx context.Context, months []time.Time) (int, error) {
	return ensureMonthsOn(ctx, s.pool, months)
}

// ensureMonthsOn is ensureMonths on a pool or on one connection (the
// archive's restore runs on its session's).
func ensureMonthsOn(ctx context.Context, db interface {
	Begin(context.Context) (pgx.Tx, error)
}, months []time.Time) (int, error) {
	created := 0
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(partitionLockKey)); err != nil {
			return err
		}
		for _, m := range months {
			name := partitionName(m)
			var exists bool
			if err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", name).Scan(&exists); err != nil {
				return err
			}
			if exists {
				continue
			}
			// The partition copies its columns' storage settings from the
			// parent (event_data's lz4 compression, migration 00004), so
			// none are given here. toast_tuple_target is left at its
			// default on purpose: docs/storage.md says why.
			sql := fmt.Sprintf(`CREATE TABLE %s PARTITION OF audit_events FOR VALUES FROM ('%s') TO ('%s')`,
				pgx.Identifier{name}.Sanitize(), m.Format(time.DateOnly), m.AddDate(0, 1, 0).Format(time.DateOnly))
			if _, err := tx.Exec(ctx, sql); err != nil {
				return err
			}
			created++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store: ensure partitions: %w", err)
	}
	return created, nil
}

// Partitions lists audit_events' partitions in month order.
func (s *Store) Partitions(ctx context.Context) (_ []maintenance.Partition, err error) {
	defer classifyErr(&err)
	rows, err := s.pool.Query(ctx, `
		SELECT c.relname
		FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'audit_events'::regclass
		ORDER BY c.relname`)
	if err != nil {
		return nil, fmt.Errorf("store: list partitions: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("store: list partitions: %w", err)
	}
	out := make([]maintenance.Partition, 0, len(names))
	for _, n := range names {
		var y, m int
		if _, err := fmt.Sscanf(n, "audit_events_y%04dm%02d", &y, &m); err != nil {
			continue // not one of ours
		}
		from := time.Date(y, time.Month(m), 1, 0, 0, 0, 0, time.UTC)
		out = append(out, maintenance.Partition{Name: n, From: from, To: from.AddDate(0, 1, 0)})
	}
	return out, nil
}
