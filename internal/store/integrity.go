package store

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/integrity"
)

// ReadChain reads one correlation's chain in a single snapshot: begin gets
// the head and the tombstones, then each gets every stored event in chain
// order (chain_seq, then event_id), streamed, so a chain of any length is
// verified in constant memory. It returns the number of events, or
// integrity.ErrNotFound when the correlation has none (begin is still called). An error
// from begin or each stops the read and is returned as is.
func (s *Store) ReadChain(ctx context.Context, correlationID string,
	begin func(integrity.ChainState) error, each func(*audit.Event) error) (_ int64, err error) {
	defer classifyErr(&err)
	var n int64
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
		if err := begin(st); err != nil {
			cbErr = err
			return err
		}
		rows, err = tx.Query(ctx, `SELECT `+eventColumns+` FROM audit_events WHERE correlation_id = $1
			ORDER BY chain_seq, event_id`, correlationID)
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
	if n == 0 {
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
`, "$ROLE", r)
}
