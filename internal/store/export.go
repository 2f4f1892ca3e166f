package store

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/integrity"
	"kubernaut.ai/datastorage/internal/query"
)

// ExportCursor streams the events of an export from one snapshot, a batch
// at a time, through a server-side cursor: an export of millions of events
// holds one batch in memory. Close it.
type ExportCursor struct {
	tx    pgx.Tx
	fetch string
	done  bool
}

// OpenExport starts an export: events matching f in chain order —
// correlation_id in byte order (COLLATE "C", the archived files' order,
// which an export reaching archived months merges with this one; the sort
// is the same work in any collation, no index has this order), then
// chain_seq (then event_id) — so each correlation's links come together and
// in order. batch is the number of events Next
// returns at most (0 means 500). The cursor runs in a read-only
// repeatable-read transaction, so the export is one consistent snapshot.
func (s *Store) OpenExport(ctx context.Context, f integrity.ExportFilter, batch int) (_ integrity.ExportCursor, err error) {
	defer classifyErr(&err)
	db := s.reads(ctx)
	defer db.done(&err)
	if batch <= 0 {
		batch = 500
	}
	var b sqlBuilder
	b.filter(query.EventFilter{CorrelationID: f.CorrelationID, EventCategory: f.EventCategory, Since: f.Since, Until: f.Until})
	sql := `DECLARE export_events NO SCROLL CURSOR FOR SELECT ` + eventColumns + ` FROM audit_events` +
		b.whereClause() + ` ORDER BY correlation_id COLLATE "C", chain_seq, event_id`
	if f.Limit > 0 {
		sql += ` LIMIT ` + strconv.FormatInt(f.Limit, 10)
	}
	if f.Offset > 0 {
		sql += ` OFFSET ` + strconv.FormatInt(f.Offset, 10)
	}
	tx, err := db.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("store: open export: %w", err)
	}
	if _, err := tx.Exec(ctx, sql, b.args...); err != nil {
		_ = tx.Rollback(ctx)
		return nil, fmt.Errorf("store: open export: %w", err)
	}
	return &ExportCursor{tx: tx, fetch: `FETCH ` + strconv.Itoa(batch) + ` FROM export_events`}, nil
}

// Next returns the next batch of events; an empty batch means the export
// is complete.
func (c *ExportCursor) Next(ctx context.Context) (_ []audit.Event, err error) {
	defer classifyErr(&err)
	if c.done {
		return nil, nil
	}
	rows, err := c.tx.Query(ctx, c.fetch)
	if err != nil {
		return nil, fmt.Errorf("store: export: %w", err)
	}
	events, err := pgx.CollectRows(rows, scanEvent)
	if err != nil {
		return nil, fmt.Errorf("store: export: %w", err)
	}
	if len(events) == 0 {
		c.done = true
	}
	return events, nil
}

// Close ends the export's transaction. It is safe to call more than once.
func (c *ExportCursor) Close(ctx context.Context) {
	if c.tx != nil {
		// Roll back even when ctx is done (the client went away): pgx
		// would otherwise close the connection instead of reusing it.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = c.tx.Rollback(rctx)
		c.tx = nil
	}
}
