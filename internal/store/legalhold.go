package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// holdGateKey is the advisory lock between legal holds and the retention
// job's partition drops: placing a hold takes it shared for its
// transaction, a drop takes it exclusively from its last check until the
// partition is gone, so a hold is never placed on rows that are being
// dropped unseen.
const holdGateKey = 0x6473_686f_6c64 // "dshold"

// Hold is an active legal hold on a correlation.
type Hold struct {
	CorrelationID string
	// EventsAffected is the number of the correlation's events under the
	// hold (all of them).
	EventsAffected int64
	PlacedBy       string
	PlacedAt       time.Time
	Reason         string
}

// HoldRelease is the record of a released hold.
type HoldRelease struct {
	CorrelationID  string
	EventsReleased int64
	ReleasedBy     string
	ReleasedAt     time.Time
}

// lockHoldSQL serialises hold changes on one correlation.
const lockHoldSQL = `SELECT pg_advisory_xact_lock(hashtextextended('legal-hold:' || $1, 0))`

// PlaceHold puts every event of correlationID under legal hold and records
// the hold in the legal_holds history. Placing a hold on a correlation that
// is already held is not an error: the existing hold is returned (and any
// event written since is flagged too). ErrNotFound when the correlation has
// no events.
func (s *Store) PlaceHold(ctx context.Context, correlationID, reason, placedBy string, at time.Time) (_ Hold, err error) {
	defer classifyErr(&err)
	h := Hold{CorrelationID: correlationID, PlacedBy: placedBy, PlacedAt: at.UTC().Truncate(time.Microsecond), Reason: reason}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock_shared($1)`, int64(holdGateKey)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, lockHoldSQL, correlationID); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE correlation_id = $1`, correlationID).
			Scan(&h.EventsAffected); err != nil {
			return err
		}
		if h.EventsAffected == 0 {
			return ErrNotFound
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
	if errors.Is(err, ErrNotFound) {
		return Hold{}, ErrNotFound
	}
	if err != nil {
		return Hold{}, fmt.Errorf("store: place legal hold: %w", err)
	}
	h.PlacedAt = h.PlacedAt.UTC()
	return h, nil
}

// ReleaseHold releases the active hold on correlationID: its events lose
// the hold flag and the history records who released it, when and why.
// ErrNotFound when the correlation is not held.
func (s *Store) ReleaseHold(ctx context.Context, correlationID, reason, releasedBy string, at time.Time) (_ HoldRelease, err error) {
	defer classifyErr(&err)
	r := HoldRelease{CorrelationID: correlationID, ReleasedBy: releasedBy, ReleasedAt: at.UTC().Truncate(time.Microsecond)}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, lockHoldSQL, correlationID); err != nil {
			return err
		}
		var id int64
		err := tx.QueryRow(ctx, `SELECT id FROM legal_holds WHERE correlation_id = $1 AND released_at IS NULL`,
			correlationID).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
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
		r.EventsReleased = tag.RowsAffected()
		_, err = tx.Exec(ctx, `UPDATE legal_holds
			SET released_by = $2, released_at = $3, release_reason = $4, events_released = $5 WHERE id = $1`,
			id, releasedBy, r.ReleasedAt, reason, r.EventsReleased)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return HoldRelease{}, ErrNotFound
	}
	if err != nil {
		return HoldRelease{}, fmt.Errorf("store: release legal hold: %w", err)
	}
	return r, nil
}

// ListHolds returns the active holds, oldest first, each with the number of
// events it protects now.
func (s *Store) ListHolds(ctx context.Context) (_ []Hold, err error) {
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
	holds := []Hold{}
	var h Hold
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
