package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/query"
	"kubernaut.ai/datastorage/internal/readroute"
)

// eventColumns is the select list that scanEvent reads.
const eventColumns = `event_id, event_date, event_timestamp, version, event_type, event_category,
	event_action, event_outcome, correlation_id, event_data, actor_type, actor_id, actor_ip,
	resource_type, resource_id, parent_event_id, parent_event_date, namespace, cluster_id,
	severity, duration_ms, error_code, error_message, retention_days, is_sensitive,
	chain_seq, event_hash, previous_event_hash, hash_algorithm, legal_hold, legal_hold_reason,
	legal_hold_placed_by, legal_hold_placed_at, created_at`

// getEventSQL finds the row an id names through audit_event_ids (migration
// 00006): a row stored under the same id on another date before ids were
// unique is never returned. The date comes from an InitPlan, so PostgreSQL
// prunes the partitions during execution; but it plans every partition,
// which at 36 monthly partitions is most of the lookup's cost
// (bench/results/writepath-2026-12-07c.md).
const getEventSQL = `SELECT ` + eventColumns + ` FROM audit_events
	WHERE event_id = $1 AND event_date = (SELECT event_date FROM audit_event_ids WHERE event_id = $1)`

// getEventOnDateSQL is the lookup of a v7 id on the date it names ($2,
// ids.go), unless the id table says it is stored on another date: the only
// lookup of an id the server made (it has no id row), and the first of a
// client's v7 id, which nearly always names its event's date too (the SDK
// makes it when it stamps the event). The date is a parameter, so the plan
// holds one partition.
const getEventOnDateSQL = `SELECT ` + eventColumns + ` FROM audit_events
	WHERE event_id = $1 AND event_date = $2
	AND NOT EXISTS (SELECT 1 FROM audit_event_ids WHERE event_id = $1 AND event_date <> $2)`

// GetEvent returns the event with the given id, or ErrNotFound. An id the
// standby does not have yet is looked up on the primary too, so a 404 is
// never a matter of replication lag (the event written a moment ago is
// found).
func (s *Store) GetEvent(ctx context.Context, id uuid.UUID) (_ audit.Event, err error) {
	defer classifyErr(&err)
	db := s.reads(ctx)
	defer db.done(&err)
	ev, err := getEvent(ctx, db, id)
	if errors.Is(err, pgx.ErrNoRows) && db.target == readroute.Replica {
		ev, err = getEvent(ctx, s.pool, id)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return audit.Event{}, query.ErrNotFound
	}
	if err != nil {
		return audit.Event{}, fmt.Errorf("store: get event: %w", err)
	}
	return ev, nil
}

// getEvent looks id up on the date it names, if it is a v7 id, then
// through the id table; pgx.ErrNoRows when neither finds it.
func getEvent(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, id uuid.UUID) (audit.Event, error) {
	pid := pgtype.UUID{Bytes: id, Valid: true}
	if d, ok := audit.IDDate(id); ok {
		rows, err := q.Query(ctx, getEventOnDateSQL, pid, d.Std())
		if err != nil {
			return audit.Event{}, err
		}
		ev, err := pgx.CollectExactlyOneRow(rows, scanEvent)
		if !errors.Is(err, pgx.ErrNoRows) {
			return ev, err
		}
	}
	rows, err := q.Query(ctx, getEventSQL, pid)
	if err != nil {
		return audit.Event{}, err
	}
	return pgx.CollectExactlyOneRow(rows, scanEvent)
}

// ListEvents returns one page of the events that match f, ordered by
// (event_timestamp, event_id) descending, or ascending if p.Ascending.
//
// A filter on resource_id or actor_id matches rows of two kinds, those that
// store the value and those that store NULL for it because it is their
// default (stored.go), which two different indexes find. The page is then
// the merge of one ordered, limited SELECT per kind (UNION ALL): each reads
// at most a page through its own index, in the page's order, and
// PostgreSQL merges the two (Merge Append) instead of sorting every match.
// (A UNION ALL of plain SELECTs would not do: PostgreSQL 15 does not merge
// the arms of a UNION ALL in index order when they have WHERE clauses, and
// sorts all their rows.)
func (s *Store) ListEvents(ctx context.Context, f query.EventFilter, p query.Page) ([]audit.Event, error) {
	var events []audit.Event
	err := s.EachEvent(ctx, f, p, func(e *audit.Event) error {
		events = append(events, *e)
		return nil
	})
	return events, err
}

// EachEvent is ListEvents streamed: each gets the page's events one at a
// time, as PostgreSQL sends them, so a page of large events is never held
// whole (issue 18 item 6). The *audit.Event is each's only while it runs.
// An error from each stops the read and is returned (classified).
func (s *Store) EachEvent(ctx context.Context, f query.EventFilter, p query.Page, each func(*audit.Event) error) (err error) {
	defer classifyErr(&err)
	db := s.reads(ctx)
	defer db.done(&err)
	var b sqlBuilder
	b.filter(f)
	if p.After != nil {
		// A row comparison on the index's own columns: the scan starts right
		// after the cursor instead of counting its way there.
		op, dateOp := "<", "<="
		if p.Ascending {
			op, dateOp = ">", ">="
		}
		b.where("(event_timestamp, event_id) "+op+" ("+b.arg(p.After.Timestamp)+", "+b.arg(p.After.ID)+")",
			"event_date "+dateOp+" "+b.arg(audit.DateOf(p.After.Timestamp).Std())+"::date")
	}
	dir := "DESC"
	if p.Ascending {
		dir = "ASC"
	}
	order := ` ORDER BY event_timestamp ` + dir + `, event_id ` + dir
	var sql string
	if arms := b.arms(); len(arms) == 1 {
		sql = `SELECT ` + eventColumns + ` FROM audit_events` + arms[0] + order + ` LIMIT ` + strconv.Itoa(p.Limit)
	} else {
		armLimit := ` LIMIT ` + strconv.Itoa(p.Limit+p.Offset)
		for i, where := range arms {
			arms[i] = `(SELECT ` + eventColumns + ` FROM audit_events` + where + order + armLimit + `)`
		}
		sql = `SELECT * FROM (` + strings.Join(arms, ` UNION ALL `) + `) AS u` + order + ` LIMIT ` + strconv.Itoa(p.Limit)
	}
	if p.Offset > 0 {
		sql += ` OFFSET ` + strconv.Itoa(p.Offset)
	}
	rows, err := db.Query(ctx, sql, b.args...)
	if err != nil {
		return fmt.Errorf("store: list events: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return fmt.Errorf("store: list events: %w", err)
		}
		if err := each(&e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: list events: %w", err)
	}
	return nil
}

// CountEvents counts the events that match f, stopping at limit: counting
// every match of a broad filter over millions of rows would cost more than
// the page itself. A result equal to limit means "at least limit".
func (s *Store) CountEvents(ctx context.Context, f query.EventFilter, limit int) (_ int64, err error) {
	defer classifyErr(&err)
	db := s.reads(ctx)
	defer db.done(&err)
	var b sqlBuilder
	b.filter(f)
	lim := ` LIMIT ` + strconv.Itoa(limit)
	arms := b.arms()
	if len(arms) == 1 {
		arms[0] = `SELECT 1 FROM audit_events` + arms[0]
	} else {
		for i, where := range arms {
			arms[i] = `(SELECT 1 FROM audit_events` + where + lim + `)`
		}
	}
	sql := `SELECT count(*) FROM (` + strings.Join(arms, ` UNION ALL `) + lim + `) AS matches`
	var n int64
	if err := db.QueryRow(ctx, sql, b.args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count events: %w", err)
	}
	return n, nil
}

// sqlBuilder collects WHERE conditions and their positional arguments.
type sqlBuilder struct {
	conds []string
	args  []any
	// alts, when set, are disjoint alternatives: a row matches when it
	// meets conds and one of them (see arms).
	alts []string
}

func (b *sqlBuilder) arg(v any) string {
	b.args = append(b.args, v)
	return "$" + strconv.Itoa(len(b.args))
}

func (b *sqlBuilder) where(conds ...string) { b.conds = append(b.conds, conds...) }

func (b *sqlBuilder) whereClause() string {
	if len(b.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(b.conds, " AND ")
}

// arms returns one WHERE clause per alternative (just whereClause when
// there are none), each with every condition.
func (b *sqlBuilder) arms() []string {
	if len(b.alts) == 0 {
		return []string{b.whereClause()}
	}
	out := make([]string, len(b.alts))
	for i, alt := range b.alts {
		out[i] = " WHERE " + strings.Join(append(slices.Clip(b.conds), alt), " AND ")
	}
	return out
}

func (b *sqlBuilder) eq(column, value string) {
	if value != "" {
		b.where(column + " = " + b.arg(value))
	}
}

func (b *sqlBuilder) filter(f query.EventFilter) {
	b.eq("correlation_id", f.CorrelationID)
	b.eq("event_type", f.EventType)
	b.eq("event_category", f.EventCategory)
	b.eq("event_outcome", f.EventOutcome)
	b.eq("severity", f.Severity)
	b.eq("namespace", f.Namespace)
	b.eq("cluster_id", f.ClusterID)
	// actor_id, resource_type and resource_id are NULL where they hold
	// their default (stored.go): each filter matches the rows that store the
	// value and the rows whose default it is. resource_type has no index
	// (the time index serves it), so one condition does. resource_id and
	// actor_id have partial indexes of the stored values; the defaulted
	// rows are found through the correlation index and the time index, so
	// the two kinds are alternatives (see ListEvents), of the resource_id
	// filter when there is one, else of actor_id.
	if f.ResourceType != "" {
		v := b.arg(f.ResourceType)
		b.where("(resource_type = " + v + " OR (resource_type IS NULL AND event_category = " + v + "))")
	}
	var actor, resource []string
	if f.ActorID != "" {
		actor = []string{"actor_id = " + b.arg(f.ActorID)}
		if c := actorDefaultCategory(f.ActorID); c != "" {
			actor = append(actor, "actor_id IS NULL AND event_category = "+b.arg(c))
		}
	}
	if f.ResourceID != "" {
		v := b.arg(f.ResourceID)
		resource = []string{"resource_id = " + v, "resource_id IS NULL AND correlation_id = " + v}
	}
	switch {
	case resource != nil:
		b.alts = resource
		if actor != nil {
			b.where("(" + strings.Join(actor, " OR ") + ")")
		}
	case len(actor) > 1:
		b.alts = actor
	case actor != nil:
		b.where(actor[0])
	}
	// Each time bound also bounds event_date, the partition key, so the
	// planner skips whole months.
	if !f.Since.IsZero() {
		b.where("event_timestamp >= "+b.arg(f.Since),
			"event_date >= "+b.arg(audit.DateOf(f.Since).Std())+"::date")
	}
	if !f.Until.IsZero() {
		b.where("event_timestamp <= "+b.arg(f.Until),
			"event_date <= "+b.arg(audit.DateOf(f.Until).Std())+"::date")
	}
	if f.DetailKey != "" {
		b.where("event_data ->> " + b.arg(f.DetailKey) + " = " + b.arg(f.DetailValue))
	}
}

// scanEvent reads one row of eventColumns.
func scanEvent(row pgx.CollectableRow) (audit.Event, error) {
	var (
		e                                            audit.Event
		date, stamp, created                         time.Time
		actorIP, namespace, cluster, errCode, errMsg pgtype.Text
		actorType, actorID, resType, resID           pgtype.Text
		hash, prevHash, data                         []byte
		hashAlg, holdReason, holdPlacedBy            pgtype.Text
		parentID                                     pgtype.UUID
		parentDate                                   pgtype.Date
		duration                                     pgtype.Int4
		holdPlacedAt                                 pgtype.Timestamptz
	)
	err := row.Scan(&e.ID, &date, &stamp, &e.Version, &e.Type, &e.Category,
		&e.Action, &e.Outcome, &e.CorrelationID, &data, &actorType, &actorID, &actorIP,
		&resType, &resID, &parentID, &parentDate, &namespace, &cluster,
		&e.Severity, &duration, &errCode, &errMsg, &e.RetentionDays, &e.IsSensitive,
		&e.ChainSeq, &hash, &prevHash, &hashAlg, &e.LegalHold, &holdReason,
		&holdPlacedBy, &holdPlacedAt, &created)
	if err != nil {
		return e, err
	}
	// event_data is scanned as bytes, not into the json.RawMessage:
	// pgx would run json.Unmarshal over it to fill that, a validation
	// of what PostgreSQL's jsonb already validated, and the largest cost
	// of a scan (half of the archive job's reading of a month).
	e.Data = data
	e.Date = audit.Date(date.UTC())
	e.Timestamp = audit.NewTime(stamp)
	e.CreatedAt = audit.NewTime(created)
	e.ActorIP, e.Namespace, e.ClusterID = actorIP.String, namespace.String, cluster.String
	e.ErrorCode, e.ErrorMessage = errCode.String, errMsg.String
	fillDefaults(&e, actorType, actorID, resType, resID)
	e.Hash, e.HashAlgorithm = hashHex(hash), hashAlg.String
	prev := hashHex(prevHash) // NOT NULL; "" for the first link
	e.PreviousHash = &prev
	e.HoldReason, e.HoldPlacedBy = holdReason.String, holdPlacedBy.String
	if parentID.Valid {
		id := uuid.UUID(parentID.Bytes)
		e.ParentID = &id
	}
	if parentDate.Valid {
		t := audit.Time(parentDate.Time.UTC())
		e.ParentDate = &t
	}
	if duration.Valid {
		d := duration.Int32
		e.DurationMS = &d
	}
	if holdPlacedAt.Valid {
		t := audit.NewTime(holdPlacedAt.Time)
		e.HoldPlacedAt = &t
	}
	return e, nil
}
