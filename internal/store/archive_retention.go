package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"kubernaut.ai/datastorage/internal/archive"
)

// The statements of the retention of archived months; the policy is
// internal/archive's (expire.go).

// archiveRetentionSession holds the archive leader lock: no archive run
// or restore works on a month while retention deletes its files.
type archiveRetentionSession struct {
	archiveSession
}

// OpenArchiveRetention takes a connection and tries the archive leader
// lock on it.
func (s *Store) OpenArchiveRetention(ctx context.Context) (_ archive.RetentionSession, leader bool, err error) {
	defer classifyErr(&err)
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("store: archive retention: %w", err)
	}
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, int64(archiveLeaderKey)).Scan(&leader); err != nil {
		conn.Release()
		return nil, false, fmt.Errorf("store: archive retention: %w", err)
	}
	if !leader {
		conn.Release()
		return nil, false, nil
	}
	return &archiveRetentionSession{archiveSession{conn: conn}}, true, nil
}

func (a *archiveRetentionSession) ExpiryRecords(ctx context.Context) ([]archive.ExpiryRecord, error) {
	rows, err := a.conn.Query(ctx, `SELECT month, status, manifest_key, manifest_sha256, events, last_retained
		FROM audit_archives WHERE status IN ('dropped', 'expiring') ORDER BY month`)
	if err != nil {
		return nil, err
	}
	var out []archive.ExpiryRecord
	var r archive.ExpiryRecord
	_, err = pgx.ForEachRow(rows, []any{&r.Month, &r.Status, &r.ManifestKey, &r.ManifestSHA256, &r.Events, &r.LastRetained}, func() error {
		r.Month = r.Month.UTC()
		if r.LastRetained != nil {
			d := r.LastRetained.UTC()
			r.LastRetained = &d
		}
		out = append(out, r)
		return nil
	})
	return out, err
}

func (a *archiveRetentionSession) SetLastRetained(ctx context.Context, month time.Time, manifestSHA256 string, day time.Time) error {
	_, err := a.conn.Exec(ctx, `UPDATE audit_archives SET last_retained = $3 WHERE month = $1 AND manifest_sha256 = $2`,
		month, manifestSHA256, day)
	return err
}

func (a *archiveRetentionSession) ActiveHolds(ctx context.Context) ([]string, error) {
	return activeHolds(ctx, a.conn)
}

func activeHolds(ctx context.Context, q querier) ([]string, error) {
	rows, err := q.Query(ctx, `SELECT correlation_id FROM legal_holds WHERE released_at IS NULL ORDER BY correlation_id`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// expiryChunk bounds the elements of one statement's arrays: a month of
// millions of events has hundreds of thousands of (hour, correlation)
// counts.
const expiryChunk = 10000

// BeginExpiry takes the legal-hold gate for the end of its transaction,
// exclusively: PlaceHold takes it shared, so a hold is either committed
// before the check sees it, or placed after the month is marked expiring
// (and then finds no archived events there to hold). The rollups are subtracted under
// shard -1, as retention does for the rows it deletes (tombstonesFrom).
func (a *archiveRetentionSession) BeginExpiry(ctx context.Context, month time.Time, manifestSHA256 string,
	gone *archive.Gone, check func(held []string) error) error {
	return pgx.BeginFunc(ctx, a.conn, func(tx pgx.Tx) error {
		// The rollups and tombstones first, the gate last: a month of
		// millions of events has hundreds of thousands of counts to
		// subtract, and a hold waits for the gate only from the check to
		// the commit. (A hold that came in between rolls the work back.)
		for h := range slices.Chunk(gone.Hourly, expiryChunk) {
			n := len(h)
			buckets, types, cats, outs, sevs, counts := make([]time.Time, n), make([]string, n), make([]string, n),
				make([]string, n), make([]string, n), make([]int64, n)
			for i, c := range h {
				buckets[i], types[i], cats[i], outs[i], sevs[i], counts[i] =
					c.Bucket, c.EventType, c.EventCategory, c.EventOutcome, c.Severity, -c.Events
			}
			if _, err := tx.Exec(ctx, `INSERT INTO audit_rollup_hourly AS r
					(bucket, event_type, event_category, event_outcome, severity, shard, events)
				SELECT b, t, c, o, s, -1, n FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[])
					AS u(b, t, c, o, s, n)
				ON CONFLICT (bucket, event_type, event_category, event_outcome, severity, shard)
				DO UPDATE SET events = r.events + EXCLUDED.events`,
				buckets, types, cats, outs, sevs, counts); err != nil {
				return fmt.Errorf("subtract hourly rollups: %w", err)
			}
		}
		for cs := range slices.Chunk(gone.Correlations, expiryChunk) {
			n := len(cs)
			buckets, ids, nss, clusters, counts := make([]time.Time, n), make([]string, n), make([]string, n),
				make([]string, n), make([]int64, n)
			for i, c := range cs {
				buckets[i], ids[i], nss[i], clusters[i], counts[i] = c.Bucket, c.CorrelationID, c.Namespace, c.ClusterID, -c.Events
			}
			if _, err := tx.Exec(ctx, `INSERT INTO audit_rollup_correlations AS r (bucket, correlation_id, namespace, cluster_id, events)
				SELECT b, i, ns, cl, n FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::bigint[])
					AS u(b, i, ns, cl, n)
				ON CONFLICT (bucket, correlation_id, namespace, cluster_id)
				DO UPDATE SET events = r.events + EXCLUDED.events`,
				buckets, ids, nss, clusters, counts); err != nil {
				return fmt.Errorf("subtract correlation rollups: %w", err)
			}
		}
		for ts := range slices.Chunk(gone.Tombstones, expiryChunk) {
			n := len(ts)
			ids, froms, tos, hashes := make([]string, n), make([]int64, n), make([]int64, n), make([]string, n)
			for i, t := range ts {
				ids[i], froms[i], tos[i], hashes[i] = t.CorrelationID, t.FromSeq, t.ToSeq, t.LastHash
			}
			if _, err := tx.Exec(ctx, `INSERT INTO audit_chain_tombstones (correlation_id, from_seq, to_seq, last_hash)
				SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[])`, ids, froms, tos, hashes); err != nil {
				return fmt.Errorf("record tombstones: %w", err)
			}
		}
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(holdGateKey)); err != nil {
			return err
		}
		var ok bool
		err := tx.QueryRow(ctx, `SELECT status = 'dropped' AND manifest_sha256 = $2 FROM audit_archives
			WHERE month = $1 FOR UPDATE`, month, manifestSHA256).Scan(&ok)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if !ok {
			return archive.ErrMonthChanged
		}
		held, err := activeHolds(ctx, tx)
		if err != nil {
			return err
		}
		if err := check(held); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE audit_archives SET status = 'expiring', expiring_at = now() WHERE month = $1`, month)
		return err
	})
}

func (a *archiveRetentionSession) FinishExpiry(ctx context.Context, month time.Time) error {
	_, err := a.conn.Exec(ctx, `UPDATE audit_archives SET status = 'expired', expired_at = now()
		WHERE month = $1 AND status = 'expiring'`, month)
	return err
}

var _ archive.RetentionSource = (*Store)(nil)
