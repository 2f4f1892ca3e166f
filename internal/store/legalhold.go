package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"kubernaut.ai/datastorage/internal/archive"
	"kubernaut.ai/datastorage/internal/integrity"
)

// holdGateKey is the advisory lock between legal holds and the retention
// job's partition drops: placing a hold takes it shared for its
// transaction, a drop takes it exclusively from its last check until the
// partition is gone, so a hold is never placed on rows that are being
// dropped unseen.
const holdGateKey = 0x6473_686f_6c64 // "dshold"

// lockHoldSQL serialises hold changes on one correlation.
const lockHoldSQL = `SELECT pg_advisory_xact_lock(hashtextextended('legal-hold:' || $1, 0))`

// PlaceHold puts every event of correlationID under legal hold and records
// the hold in the legal_holds history. Placing a hold on a correlation that
// is already held is not an error: the existing hold is returned (and any
// event written since is flagged too). integrity.ErrNotFound when the correlation has
// no events.
func (s *Store) PlaceHold(ctx context.Context, correlationID, reason, placedBy string, at time.Time) (_ integrity.Hold, err error) {
	return s.PlaceHoldArchived(ctx, correlationID, reason, placedBy, at, 0, nil)
}

// PlaceHoldArchived is PlaceHold for a correlation that also has archived
// events (docs/archive.md, "Legal holds"): archived of them, found in the
// archived months months. The hold is placed when the correlation has
// events in PostgreSQL or in the archive, and counts both. Under the hold
// gate it checks that those months are still archived (dropped): if
// retention has begun removing one meanwhile, it returns
// archive.ErrMonthChanged and the caller counts again.
func (s *Store) PlaceHoldArchived(ctx context.Context, correlationID, reason, placedBy string, at time.Time,
	archived int64, months []time.Time) (_ integrity.Hold, err error) {
	defer classifyErr(&err)
	h := integrity.Hold{CorrelationID: correlationID, PlacedBy: placedBy, PlacedAt: at.UTC().Truncate(time.Microsecond), Reason: reason}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock_shared($1)`, int64(holdGateKey)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, lockHoldSQL, correlationID); err != nil {
			return err
		}
		if len(months) > 0 {
			var still int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM audit_archives WHERE month = ANY($1) AND status = 'dropped'`,
				months).Scan(&still); err != nil {
				return err
			}
			if still != len(months) {
				return archive.ErrMonthChanged
			}
		}
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE correlation_id = $1`, correlationID).
			Scan(&h.EventsAffected); err != nil {
			return err
		}
		h.EventsAffected += archived
		if h.EventsAffected == 0 {
			return integrity.ErrNotFound
		}
		err := tx.QueryRow(ctx, `SELECT reason, placed_by, placed_at FROM legal_holds
			WHERE correlation_id = $1 AND released_at IS NULL`, correlationID).Scan(&h.Reason, &h.PlacedBy, &h.PlacedAt)
		existing := err == nil
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE audit_events
			SET legal_hold = true, legal_hold_reason = $2, legal_hold_placed_by = $3, legal_hold_placed_at = $4
			WHERE correlation_id = $1 AND NOT legal_hold`, correlationID, h.Reason, h.PlacedBy, h.PlacedAt); err != nil {
			return err
		}
		if existing {
			return nil
		}
		_, err = tx.Exec(ctx, `INSERT INTO legal_holds (correlation_id, reason, placed_by, placed_at, events_affected)
			VALUES ($1, $2, $3, $4, $5)`, correlationID, h.Reason, h.PlacedBy, h.PlacedAt, h.EventsAffected)
		return err
	})
	if errors.Is(err, integrity.ErrNotFound) {
		return integrity.Hold{}, integrity.ErrNotFound
	}
	if err != nil {
		return integrity.Hold{}, fmt.Errorf("store: place legal hold: %w", err)
	}
	h.PlacedAt = h.PlacedAt.UTC()
	return h, nil
}

// ReleaseHold releases the active hold on correlationID: its events lose
// the hold flag and the history records who released it, when and why.
// integrity.ErrNotFound when the correlation is not held.
func (s *Store) ReleaseHold(ctx context.Context, correlationID, reason, releasedBy string, at time.Time) (_ integrity.HoldRelease, err error) {
	return s.ReleaseHoldArchived(ctx, correlationID, reason, releasedBy, at, 0)
}

// ReleaseHoldArchived is ReleaseHold for a correlation with archived
// events: archived of them are released too (they carry no flag; the
// hold's record is what protected them).
func (s *Store) ReleaseHoldArchived(ctx context.Context, correlationID, reason, releasedBy string, at time.Time,
	archived int64) (_ integrity.HoldRelease, err error) {
	defer classifyErr(&err)
	r := integrity.HoldRelease{CorrelationID: correlationID, ReleasedBy: releasedBy, ReleasedAt: at.UTC().Truncate(time.Microsecond)}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, lockHoldSQL, correlationID); err != nil {
			return err
		}
		var id int64
		err := tx.QueryRow(ctx, `SELECT id FROM legal_holds WHERE correlation_id = $1 AND released_at IS NULL`,
			correlationID).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			return integrity.ErrNotFound
		}
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE audit_events
			SET legal_hold = false, legal_hold_reason = NULL, legal_hold_placed_by = NULL, legal_hold_placed_at = NULL
			WHERE correlation_id = $1 AND legal_hold`, correlationID)
		if err != nil {
			return err
		}
		r.EventsReleased = tag.RowsAffected() + archived
		_, err = tx.Exec(ctx, `UPDATE legal_holds
			SET released_by = $2, released_at = $3, release_reason = $4, events_released = $5 WHERE id = $1`,
			id, releasedBy, r.ReleasedAt, reason, r.EventsReleased)
		return err
	})
	if errors.Is(err, integrity.ErrNotFound) {
		return integrity.HoldRelease{}, integrity.ErrNotFound
	}
	if err != nil {
		return integrity.HoldRelease{}, fmt.Errorf("store: release legal hold: %w", err)
	}
	return r, nil
}

// ListHolds returns the active holds, oldest first, each with the number of
// events it protects now.
func (s *Store) ListHolds(ctx context.Context) (_ []integrity.Hold, err error) {
	defer classifyErr(&err)
	rows, err := s.pool.Query(ctx, `
		SELECT h.correlation_id, h.reason, h.placed_by, h.placed_at,
		       (SELECT count(*) FROM audit_events e WHERE e.correlation_id = h.correlation_id)
		FROM legal_holds h
		WHERE h.released_at IS NULL
		ORDER BY h.placed_at, h.correlation_id`)
	if err != nil {
		return nil, fmt.Errorf("store: list legal holds: %w", err)
	}
	holds := []integrity.Hold{}
	var h integrity.Hold
	if _, err := pgx.ForEachRow(rows, []any{&h.CorrelationID, &h.Reason, &h.PlacedBy, &h.PlacedAt, &h.EventsAffected}, func() error {
		h.PlacedAt = h.PlacedAt.UTC()
		holds = append(holds, h)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("store: list legal holds: %w", err)
	}
	return holds, nil
}

// SweepHolds flags the events written after their correlation was put
// under hold. They are protected already (retention and the DELETE trigger
// look at legal_holds too); the flag makes reads show it. The retention job
// runs it first. It returns the number of events flagged.
func (s *Store) SweepHolds(ctx context.Context) (_ int64, err error) {
	defer classifyErr(&err)
	return sweepHolds(ctx, s.pool)
}

func sweepHolds(ctx context.Context, q querier) (int64, error) {
	tag, err := q.Exec(ctx, `UPDATE audit_events e
		SET legal_hold = true, legal_hold_reason = h.reason, legal_hold_placed_by = h.placed_by,
		    legal_hold_placed_at = h.placed_at
		FROM legal_holds h
		WHERE h.released_at IS NULL AND e.correlation_id = h.correlation_id AND NOT e.legal_hold`)
	if err != nil {
		return 0, fmt.Errorf("store: sweep legal holds: %w", err)
	}
	return tag.RowsAffected(), nil
}

// ActiveHold returns the correlation's active hold (ok false when none);
// EventsAffected is not counted.
func (s *Store) ActiveHold(ctx context.Context, correlationID string) (_ integrity.Hold, ok bool, err error) {
	defer classifyErr(&err)
	h := integrity.Hold{CorrelationID: correlationID}
	err = s.pool.QueryRow(ctx, `SELECT reason, placed_by, placed_at FROM legal_holds
		WHERE correlation_id = $1 AND released_at IS NULL`, correlationID).Scan(&h.Reason, &h.PlacedBy, &h.PlacedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return integrity.Hold{}, false, nil
	}
	if err != nil {
		return integrity.Hold{}, false, fmt.Errorf("store: legal hold of %q: %w", correlationID, err)
	}
	h.PlacedAt = h.PlacedAt.UTC()
	return h, true, nil
}
