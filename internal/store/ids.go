package store

import (
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"kubernaut.ai/datastorage/internal/audit"
)

// Ids without a row (issue 15). audit_event_ids (migration 00006) makes a
// client-given id unique across dates and says which date it is stored on.
// An id the server makes (audit.NewServerID) needs neither: it is a fresh
// UUIDv7 that cannot collide, and its timestamp is its event's, so the id
// names its own date. The write path keeps no row for it (idRowColumns),
// which saves a heap tuple, a B-tree entry and their WAL per event.
//
// Every lookup that asks "which row is event X" therefore reads the id
// table first and, for a v7 id it does not hold, probes audit_events on the
// one date the id names: a primary-key probe in one partition, pruned at
// plan time (custom plans: these lookups run before a transaction switches
// to generic plans). The probe skips ids the table holds, so the table stays
// the authority wherever it has a row; and a probe's answer counts only on
// the date the id names (the = ANY pairs ids and dates crosswise).
//
// Who relies on it: GET /events/{id} (getEventOnDateSQL), parents
// (recentParentsSQL), the duplicate check of client-given ids
// (storedIDsSQL: a client that sends back the id it was answered is
// retrying, or in conflict), and through them the catalog. Retention and
// the archive need nothing: a row-less event's id goes with its row, and a
// restored month gets rows for all its ids (archive.go).
//
// No race: a server-made id is known to nobody before its commit is
// answered, so no concurrent writer can store it elsewhere meanwhile; a
// client repeating it on its own date collides on audit_events' primary key.

// selfDatedSQL is the probe, with its ids and dates as parameters ids and
// dates. Its third column, true, marks a probe's answer.
func selfDatedSQL(ids, dates int) string {
	return fmt.Sprintf(`SELECT e.event_id, e.event_date, true FROM audit_events e
	WHERE e.event_id = ANY($%d) AND e.event_date = ANY($%d)
	AND NOT EXISTS (SELECT 1 FROM audit_event_ids i WHERE i.event_id = e.event_id)`, ids, dates)
}

// probes returns the v7 ids among ids and the dates they name.
func probes(ids []uuid.UUID) ([]pgtype.UUID, []time.Time) {
	var v7 []pgtype.UUID
	var dates []time.Time
	for _, id := range ids {
		if d, ok := audit.IDDate(id); ok {
			v7 = append(v7, pgtype.UUID{Bytes: id, Valid: true})
			dates = append(dates, d.Std())
		}
	}
	return v7, dates
}

// storedIDsArgs are the parameters of storedIDsSQL.
func storedIDsArgs(ids []uuid.UUID) []any {
	v7, dates := probes(ids)
	return []any{pgUUIDs(ids), v7, dates}
}

// recentParentsArgs are the parameters of recentParentsSQL.
func recentParentsArgs(ids []uuid.UUID, from, to time.Time) []any {
	v7, dates := probes(ids)
	return []any{pgUUIDs(ids), from, to, v7, dates}
}

// collectIDDates reads rows of (event_id, event_date, probed) into found,
// keeping a probe's answer only on the date its id names.
func collectIDDates(rows pgx.Rows, found map[uuid.UUID]audit.Date) error {
	var id pgtype.UUID
	var date time.Time
	var probed bool
	_, err := pgx.ForEachRow(rows, []any{&id, &date, &probed}, func() error {
		if probed {
			if d, ok := audit.IDDate(id.Bytes); !ok || !d.Std().Equal(date) {
				return nil
			}
		}
		found[id.Bytes] = audit.Date(date)
		return nil
	})
	return err
}
