package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"kubernaut.ai/datastorage/internal/audit"
)

// querier is what both the pool and a transaction offer.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// insertEventsSQL writes a whole batch in one statement: each column travels
// as one array parameter, so the statement text (and its prepared plan) is
// the same for 1 event or 5,000, and the parameter count never grows.
const insertEventsSQL = `
INSERT INTO audit_events (
	event_id, event_date, event_timestamp, version, event_type, event_category,
	event_action, event_outcome, correlation_id, event_data, actor_type, actor_id,
	actor_ip, resource_type, resource_id, parent_event_id, parent_event_date,
	namespace, cluster_id, severity, duration_ms, error_code, error_message,
	retention_days, is_sensitive)
SELECT * FROM unnest(
	$1::uuid[], $2::date[], $3::timestamptz[], $4::text[], $5::text[], $6::text[],
	$7::text[], $8::text[], $9::text[], $10::jsonb[], $11::text[], $12::text[],
	$13::text[], $14::text[], $15::text[], $16::uuid[], $17::date[],
	$18::text[], $19::text[], $20::text[], $21::int4[], $22::text[], $23::text[],
	$24::int4[], $25::bool[])
ON CONFLICT (event_id, event_date) DO NOTHING`

// InsertEvents stores events in one transaction and returns how many were new
// (the rest were already stored: same event_id and event_date). Parents not
// yet resolved are looked up first, inside the same transaction; an event
// whose parent is missing fails the batch with *MissingParentError. A batch
// that meets a month without a partition creates it and is retried once.
func (s *Store) InsertEvents(ctx context.Context, events []*audit.Event) (int64, error) {
	n, err := s.insertEvents(ctx, events)
	if isMissingPartition(err) {
		if _, perr := s.ensureMonths(ctx, monthsOf(events)); perr != nil {
			return 0, perr
		}
		n, err = s.insertEvents(ctx, events)
	}
	return n, err
}

func (s *Store) insertEvents(ctx context.Context, events []*audit.Event) (int64, error) {
	var inserted int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := resolveParents(ctx, tx, events); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, insertEventsSQL, columns(events)...)
		if err != nil {
			return err
		}
		inserted = tag.RowsAffected()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store: insert %d events: %w", len(events), err)
	}
	return inserted, nil
}

// ResolveParents sets ParentDate on every event whose parent is stored or
// earlier in the slice. It returns *MissingParentError listing the events whose
// parent is neither; those are left unresolved.
func (s *Store) ResolveParents(ctx context.Context, events []*audit.Event) error {
	if err := resolveParents(ctx, s.pool, events); err != nil {
		return fmt.Errorf("store: resolve parents: %w", err)
	}
	return nil
}

func resolveParents(ctx context.Context, q querier, events []*audit.Event) error {
	if !slices.ContainsFunc(events, func(e *audit.Event) bool { return !e.ParentResolved() }) {
		return nil
	}
	var lookup []uuid.UUID
	seen := make(map[uuid.UUID]audit.Date, len(events))
	for _, e := range events {
		if !e.ParentResolved() {
			if d, ok := seen[*e.ParentID]; ok {
				e.ResolveParent(d)
			} else {
				lookup = append(lookup, *e.ParentID)
			}
		}
		seen[e.ID] = e.Date
	}
	if len(lookup) == 0 {
		return nil
	}
	rows, err := q.Query(ctx, `SELECT event_id, event_date FROM audit_events WHERE event_id = ANY($1)`, lookup)
	if err != nil {
		return err
	}
	found := make(map[uuid.UUID]audit.Date, len(lookup))
	var id uuid.UUID
	var date time.Time
	_, err = pgx.ForEachRow(rows, []any{&id, &date}, func() error {
		found[id] = audit.Date(date)
		return nil
	})
	if err != nil {
		return err
	}
	var missing []int
	for i, e := range events {
		if e.ParentResolved() {
			continue
		}
		if d, ok := found[*e.ParentID]; ok {
			e.ResolveParent(d)
		} else {
			missing = append(missing, i)
		}
	}
	if len(missing) > 0 {
		return &MissingParentError{Indices: missing}
	}
	return nil
}

// columns turns events into the 25 array parameters of insertEventsSQL.
func columns(events []*audit.Event) []any {
	n := len(events)
	var (
		ids          = make([]uuid.UUID, n)
		dates        = make([]time.Time, n)
		stamps       = make([]time.Time, n)
		versions     = make([]string, n)
		types        = make([]string, n)
		categories   = make([]string, n)
		actions      = make([]string, n)
		outcomes     = make([]string, n)
		correlations = make([]string, n)
		data         = make([][]byte, n)
		actorTypes   = make([]string, n)
		actorIDs     = make([]string, n)
		actorIPs     = make([]pgtype.Text, n)
		resTypes     = make([]string, n)
		resIDs       = make([]string, n)
		parentIDs    = make([]pgtype.UUID, n)
		parentDates  = make([]pgtype.Date, n)
		namespaces   = make([]pgtype.Text, n)
		clusters     = make([]pgtype.Text, n)
		severities   = make([]string, n)
		durations    = make([]pgtype.Int4, n)
		errCodes     = make([]pgtype.Text, n)
		errMessages  = make([]pgtype.Text, n)
		retention    = make([]int32, n)
		sensitive    = make([]bool, n)
	)
	for i, e := range events {
		ids[i] = e.ID
		dates[i] = e.Date.Std()
		stamps[i] = e.Timestamp.Std()
		versions[i] = e.Version
		types[i] = e.Type
		categories[i] = e.Category
		actions[i] = e.Action
		outcomes[i] = e.Outcome
		correlations[i] = e.CorrelationID
		data[i] = e.Data
		actorTypes[i] = e.ActorType
		actorIDs[i] = e.ActorID
		actorIPs[i] = optText(e.ActorIP)
		resTypes[i] = e.ResourceType
		resIDs[i] = e.ResourceID
		if e.ParentID != nil && e.ParentDate != nil {
			parentIDs[i] = pgtype.UUID{Bytes: *e.ParentID, Valid: true}
			parentDates[i] = pgtype.Date{Time: e.ParentDate.Std(), Valid: true}
		}
		namespaces[i] = optText(e.Namespace)
		clusters[i] = optText(e.ClusterID)
		severities[i] = e.Severity
		if e.DurationMS != nil {
			durations[i] = pgtype.Int4{Int32: *e.DurationMS, Valid: true}
		}
		errCodes[i] = optText(e.ErrorCode)
		errMessages[i] = optText(e.ErrorMessage)
		retention[i] = e.RetentionDays
		sensitive[i] = e.IsSensitive
	}
	return []any{ids, dates, stamps, versions, types, categories, actions, outcomes,
		correlations, data, actorTypes, actorIDs, actorIPs, resTypes, resIDs, parentIDs,
		parentDates, namespaces, clusters, severities, durations, errCodes, errMessages,
		retention, sensitive}
}

// optText stores an empty optional string as NULL.
func optText(s string) pgtype.Text { return pgtype.Text{String: s, Valid: s != ""} }

// isMissingPartition reports the error PostgreSQL gives when a row's
// event_date falls in a month without a partition.
func isMissingPartition(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23514" && pgErr.ConstraintName == "" &&
		pgErr.TableName == "audit_events"
}

func monthsOf(events []*audit.Event) []time.Time {
	var months []time.Time
	seen := map[time.Time]bool{}
	for _, e := range events {
		m := monthStart(e.Date.Std())
		if !seen[m] {
			seen[m] = true
			months = append(months, m)
		}
	}
	return months
}
