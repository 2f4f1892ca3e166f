package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
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
	retention_days, is_sensitive, chain_seq, event_hash, previous_event_hash, hash_algorithm)
SELECT * FROM unnest(
	$1::uuid[], $2::date[], $3::timestamptz[], $4::text[], $5::text[], $6::text[],
	$7::text[], $8::text[], $9::text[], $10::jsonb[], $11::text[], $12::text[],
	$13::text[], $14::text[], $15::text[], $16::uuid[], $17::date[],
	$18::text[], $19::text[], $20::text[], $21::int4[], $22::text[], $23::text[],
	$24::int4[], $25::bool[], $26::int8[], $27::text[], $28::text[], $29::text[])
ON CONFLICT (event_id, event_date) DO NOTHING`

// Statements of the hash chain. The advisory locks are taken in the order of
// the (sorted) array, so two writers touching the same correlations queue
// instead of deadlocking; a lock is per correlation, not per table, so
// unrelated remediations never wait for each other.
const (
	lockChainsSQL = `SELECT pg_advisory_xact_lock(hashtextextended(c, 0)) FROM unnest($1::text[]) AS c`
	readHeadsSQL  = `SELECT correlation_id, last_seq, last_hash FROM audit_chain_heads WHERE correlation_id = ANY($1)`
	storedIDsSQL  = `SELECT event_id FROM audit_events WHERE event_id = ANY($1) AND event_date BETWEEN $2 AND $3`
	writeHeadsSQL = `
INSERT INTO audit_chain_heads (correlation_id, last_seq, last_hash)
SELECT * FROM unnest($1::text[], $2::int8[], $3::text[])
ON CONFLICT (correlation_id) DO UPDATE SET last_seq = EXCLUDED.last_seq, last_hash = EXCLUDED.last_hash`
)

// errChainRace means a concurrent transaction stored one of our events
// between our duplicate check and our insert; the hashes computed for it are
// void, so the whole transaction is retried.
var errChainRace = errors.New("store: event stored concurrently")

// maxInsertAttempts bounds the retries of InsertEvents (missing partition,
// concurrent duplicate, deadlock or serialization failure).
const maxInsertAttempts = 4

// InsertEvents stores events in one transaction, extending each
// correlation's hash chain, and returns how many were new (the others were
// already stored: same event_id and event_date; they keep their place in the
// chain). Parents not yet resolved are looked up first, inside the same
// transaction; an event whose parent is missing fails the batch with
// *MissingParentError. A month without a partition is created and the batch
// retried.
func (s *Store) InsertEvents(ctx context.Context, events []*audit.Event) (int64, error) {
	var err error
	for range maxInsertAttempts {
		var n int64
		n, err = s.insertEvents(ctx, events)
		switch {
		case err == nil:
			return n, nil
		case isMissingPartition(err):
			if _, perr := s.ensureMonths(ctx, monthsOf(events)); perr != nil {
				return 0, perr
			}
		case errors.Is(err, errChainRace), isRetryable(err):
		default:
			return 0, err
		}
	}
	return 0, err
}

func (s *Store) insertEvents(ctx context.Context, events []*audit.Event) (int64, error) {
	var inserted int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := resolveParents(ctx, tx, events); err != nil {
			return err
		}
		fresh, heads, err := s.chain(ctx, tx, events)
		if err != nil {
			return err
		}
		if len(fresh) == 0 {
			return nil
		}
		b := &pgx.Batch{}
		var tag pgconn.CommandTag
		b.Queue(insertEventsSQL, s.columns(fresh)...).Exec(func(t pgconn.CommandTag) error {
			tag = t
			return nil
		})
		b.Queue(writeHeadsSQL, heads.ids, heads.seqs, heads.hashes)
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		if tag.RowsAffected() != int64(len(fresh)) {
			return errChainRace
		}
		inserted = tag.RowsAffected()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store: insert %d events: %w", len(events), err)
	}
	return inserted, nil
}

// chainHeads is the new last link of each correlation a batch touches.
type chainHeads struct {
	ids    []string
	seqs   []int64
	hashes []string
}

// chain locks the chains of the batch's correlations, drops events already
// stored (and repeats within the batch), and links the rest: each gets the
// next sequence number of its correlation and a hash over its predecessor's.
// It returns the events to insert and the new chain heads.
func (s *Store) chain(ctx context.Context, tx pgx.Tx, events []*audit.Event) ([]*audit.Event, chainHeads, error) {
	type head struct {
		seq  int64
		hash string
	}
	heads := make(map[string]*head)
	var check []uuid.UUID
	var minDate, maxDate time.Time
	for _, e := range events {
		heads[e.CorrelationID] = nil
		if !e.ServerID() {
			check = append(check, e.ID)
			d := e.Date.Std()
			if minDate.IsZero() || d.Before(minDate) {
				minDate = d
			}
			if d.After(maxDate) {
				maxDate = d
			}
		}
	}
	corrs := slices.Sorted(maps.Keys(heads))

	b := &pgx.Batch{}
	b.Queue(lockChainsSQL, corrs)
	b.Queue(readHeadsSQL, corrs).Query(func(rows pgx.Rows) error {
		var c string
		var h head
		_, err := pgx.ForEachRow(rows, []any{&c, &h.seq, &h.hash}, func() error {
			hh := h
			heads[c] = &hh
			return nil
		})
		return err
	})
	stored := map[uuid.UUID]bool{}
	if len(check) > 0 {
		b.Queue(storedIDsSQL, check, minDate, maxDate).Query(func(rows pgx.Rows) error {
			var id uuid.UUID
			_, err := pgx.ForEachRow(rows, []any{&id}, func() error {
				stored[id] = true
				return nil
			})
			return err
		})
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, chainHeads{}, err
	}

	fresh := make([]*audit.Event, 0, len(events))
	type key struct {
		id   uuid.UUID
		date time.Time
	}
	seen := make(map[key]bool, len(events))
	for _, e := range events {
		k := key{e.ID, e.Date.Std()}
		if seen[k] || stored[e.ID] && !e.ServerID() {
			continue
		}
		seen[k] = true
		h := heads[e.CorrelationID]
		if h == nil {
			h = &head{}
			heads[e.CorrelationID] = h
		}
		canon, err := e.Canonical()
		if err != nil {
			return nil, chainHeads{}, err
		}
		prev := h.hash
		h.seq++
		h.hash = s.hasher.Link(prev, canon)
		e.ChainSeq, e.Hash, e.PreviousHash, e.HashAlgorithm = h.seq, h.hash, &prev, s.hasher.Algorithm()
		fresh = append(fresh, e)
	}
	var out chainHeads
	for _, c := range corrs {
		if h := heads[c]; h != nil && h.seq > 0 {
			out.ids = append(out.ids, c)
			out.seqs = append(out.seqs, h.seq)
			out.hashes = append(out.hashes, h.hash)
		}
	}
	return fresh, out, nil
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

// columns turns events into the 29 array parameters of insertEventsSQL.
func (s *Store) columns(events []*audit.Event) []any {
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
		seqs         = make([]int64, n)
		hashes       = make([]string, n)
		prevHashes   = make([]string, n)
		algorithms   = make([]string, n)
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
		seqs[i] = e.ChainSeq
		hashes[i] = e.Hash
		prevHashes[i] = *e.PreviousHash
		algorithms[i] = e.HashAlgorithm
	}
	return []any{ids, dates, stamps, versions, types, categories, actions, outcomes,
		correlations, data, actorTypes, actorIDs, actorIPs, resTypes, resIDs, parentIDs,
		parentDates, namespaces, clusters, severities, durations, errCodes, errMessages,
		retention, sensitive, seqs, hashes, prevHashes, algorithms}
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
