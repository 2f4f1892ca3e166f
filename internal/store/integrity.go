package store

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/integrity"
)

// AdvanceCheckpoint records cp as correlationID's checkpoint if it is ahead
// of the one recorded (or re-seals the one recorded at the same link). A
// checkpoint behind the recorded one is left alone, not an error: two
// verifications may finish in any order. The table's trigger refuses any
// other change.
func (s *Store) AdvanceCheckpoint(ctx context.Context, correlationID string, cp integrity.Checkpoint) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO audit_chain_checkpoints AS c
		(correlation_id, chain_seq, event_id, event_hash, verified_at, events, seal)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (correlation_id) DO UPDATE SET chain_seq = EXCLUDED.chain_seq, event_id = EXCLUDED.event_id,
			event_hash = EXCLUDED.event_hash, verified_at = EXCLUDED.verified_at, events = EXCLUDED.events, seal = EXCLUDED.seal
		WHERE c.chain_seq < EXCLUDED.chain_seq OR (c.chain_seq = EXCLUDED.chain_seq AND c.event_hash = EXCLUDED.event_hash)`,
		correlationID, cp.Seq, pgtype.UUID{Bytes: cp.EventID, Valid: true}, cp.Hash, cp.VerifiedAt, cp.Events, cp.Seal)
	if err != nil {
		return fmt.Errorf("store: advance checkpoint of %q: %w", correlationID, err)
	}
	return nil
}

// ReadChain reads one correlation's chain in a single snapshot: begin gets
// the head and the tombstones, then each gets every stored event in chain
// order (chain_seq, then event_id), streamed, so a chain of any length is
// verified in constant memory. It returns the number of events, or
// integrity.ErrNotFound when the correlation has none (begin is still called). An error
// from begin or each stops the read and is returned as is.
func (s *Store) ReadChain(ctx context.Context, correlationID string,
	begin func(integrity.ChainState) error, each func(*audit.Event) error) (int64, error) {
	return s.ReadChainAfter(ctx, correlationID, func(st integrity.ChainState) (int64, error) { return 0, begin(st) }, each)
}

// ReadChainAfter is ReadChain from a point: begin also gets the
// checkpoint, and returns the chain_seq after which each is called (0 for
// the whole chain). With after > 0 a chain with no events past it is not
// integrity.ErrNotFound: the count is 0. Rows before the point are filtered out by
// PostgreSQL, not sent.
func (s *Store) ReadChainAfter(ctx context.Context, correlationID string,
	begin func(integrity.ChainState) (after int64, err error), each func(*audit.Event) error) (_ int64, err error) {
	defer classifyErr(&err)
	var n, after int64
	var cbErr error
	err = pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var st integrity.ChainState
		var h integrity.ChainHead
		err := tx.QueryRow(ctx, `SELECT last_seq, last_hash FROM audit_chain_heads WHERE correlation_id = $1`, correlationID).
			Scan(&h.Seq, &h.Hash)
		switch {
		case err == nil:
			st.Head = &h
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		rows, err := tx.Query(ctx, `SELECT from_seq, to_seq, last_hash, deleted_at FROM audit_chain_tombstones
			WHERE correlation_id = $1 ORDER BY from_seq, to_seq`, correlationID)
		if err != nil {
			return err
		}
		var t integrity.Tombstone
		if _, err := pgx.ForEachRow(rows, []any{&t.FromSeq, &t.ToSeq, &t.LastHash, &t.DeletedAt}, func() error {
			st.Tombstones = append(st.Tombstones, t)
			return nil
		}); err != nil {
			return err
		}
		var cp integrity.Checkpoint
		var cpID pgtype.UUID
		err = tx.QueryRow(ctx, `SELECT chain_seq, event_id, event_hash, verified_at, events, seal
			FROM audit_chain_checkpoints WHERE correlation_id = $1`, correlationID).
			Scan(&cp.Seq, &cpID, &cp.Hash, &cp.VerifiedAt, &cp.Events, &cp.Seal)
		switch {
		case err == nil:
			cp.EventID = cpID.Bytes
			st.Checkpoint = &cp
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		if after, err = begin(st); err != nil {
			cbErr = err
			return err
		}
		rows, err = tx.Query(ctx, `SELECT `+eventColumns+` FROM audit_events WHERE correlation_id = $1 AND chain_seq > $2
			ORDER BY chain_seq, event_id`, correlationID, after)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			e, err := scanEvent(rows)
			if err != nil {
				return err
			}
			n++
			if err := each(&e); err != nil {
				cbErr = err
				return err
			}
		}
		return rows.Err()
	})
	if cbErr != nil {
		return n, cbErr
	}
	if err != nil {
		return n, fmt.Errorf("store: read chain: %w", err)
	}
	if n == 0 && after == 0 {
		return 0, integrity.ErrNotFound
	}
	return n, nil
}

// LeastPrivilegeSQL returns the statements that give role what the API
// needs and nothing more (docs/integrity.md, migration 00002): no DELETE, no
// TRUNCATE, no UPDATE of event columns. Migrations, partition upkeep and
// retention run as the tables' owner. role must be a plain identifier.
func LeastPrivilegeSQL(role string) string {
	r := pgx.Identifier{role}.Sanitize()
	return strings.ReplaceAll(`GRANT USAGE ON SCHEMA public TO $ROLE;
GRANT SELECT, INSERT ON audit_events, notification_audit TO $ROLE;
GRANT UPDATE (legal_hold, legal_hold_reason, legal_hold_placed_by, legal_hold_placed_at) ON audit_events TO $ROLE;
GRANT SELECT, INSERT, UPDATE ON audit_chain_heads TO $ROLE;
GRANT SELECT, INSERT ON legal_holds TO $ROLE;
GRANT UPDATE (released_by, released_at, release_reason, events_released) ON legal_holds TO $ROLE;
GRANT SELECT ON audit_chain_tombstones TO $ROLE;
GRANT SELECT, INSERT, UPDATE ON audit_rollup_hourly, audit_rollup_correlations TO $ROLE;
GRANT SELECT ON audit_rollup_correlations_all TO $ROLE;
GRANT SELECT, INSERT ON audit_event_ids TO $ROLE;
GRANT SELECT, INSERT, UPDATE ON audit_chain_checkpoints TO $ROLE;
`, "$ROLE", r)
}
