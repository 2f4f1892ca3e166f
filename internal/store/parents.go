package store

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"kubernaut.ai/datastorage/internal/audit"
)

// Parent lookups. An event names its parent by id only; the write path needs
// the parent's event_date too (the partition key, part of the foreign key
// and of the hash). Both lookups read audit_event_ids (migration 00006),
// the one row per id that says which stored event an id names, so a parent
// link can never resolve to a second row stored under the same id on
// another date. The first lookup is still bounded to the window where
// nearly every parent is (the bound costs nothing on the unpartitioned
// table and keeps the two-step shape), and only the ids it misses are
// looked up without it. A parent stored without an id row (its id made by
// the server, ids.go) is found by the first lookup on the date its id
// names, inside the window or not.
var recentParentsSQL = `SELECT event_id, event_date, false FROM audit_event_ids WHERE event_id = ANY($1) AND event_date BETWEEN $2 AND $3
	UNION ALL ` + selfDatedSQL(4, 5)

const parentsSQL = `SELECT event_id, event_date FROM audit_event_ids WHERE event_id = ANY($1)`

// parentWindow is how far before its earliest child the first lookup
// searches. A parent precedes its child by seconds or hours; the window
// covers the oldest event a client may send (ingest.maxEventAge, 7 days by
// default, plus the clock skew allowed). The lookup also reaches one day
// past the latest child, for clocks that disagree across midnight. A parent
// outside the window is still found, by the unbounded lookup.
const parentWindow = 8 * 24 * time.Hour

// parentLookupTimeout bounds a shared lookup (see parentLookups), which runs
// for several requests and so cannot use any one request's deadline.
const parentLookupTimeout = 10 * time.Second

func parentWindowOf(minDate, maxDate time.Time) (from, to time.Time) {
	return minDate.Add(-parentWindow), maxDate.AddDate(0, 0, 1)
}

// ResolveParents sets ParentDate on every event whose parent is stored or
// earlier in the slice. It returns *audit.MissingParentError listing the events whose
// parent is neither; those are left unresolved.
//
// Concurrent calls share their database lookups: while one lookup runs, the
// calls that arrive wait and are answered together by the next one, as the
// group commit does for inserts. A lone call runs at once.
func (s *Store) ResolveParents(ctx context.Context, events []*audit.Event) (err error) {
	defer classifyErr(&err)
	s.recent.resolve(events, time.Now())
	lookup := pendingParents(events)
	if len(lookup) == 0 {
		return nil
	}
	from, to := parentWindowOf(dateRange(events))
	found, err := s.parents.lookup(ctx, s, lookup, from, to)
	if err == nil {
		err = resolveFound(ctx, s.pool, events, lookup, found)
	}
	if err != nil {
		return fmt.Errorf("store: resolve parents: %w", err)
	}
	return nil
}

// dateRange returns the earliest and latest event_date of events.
func dateRange(events []*audit.Event) (minDate, maxDate time.Time) {
	for _, e := range events {
		d := e.Date.Std()
		if minDate.IsZero() || d.Before(minDate) {
			minDate = d
		}
		if d.After(maxDate) {
			maxDate = d
		}
	}
	return minDate, maxDate
}

// pendingParents resolves the parents that are earlier in the slice and
// returns the ids that must be looked up in the database.
func pendingParents(events []*audit.Event) []uuid.UUID {
	if !slices.ContainsFunc(events, func(e *audit.Event) bool { return !e.ParentResolved() }) {
		return nil
	}
	var lookup []uuid.UUID
	seen := make(map[uuid.UUID]audit.Date, len(events))
	asked := map[uuid.UUID]bool{}
	for _, e := range events {
		if !e.ParentResolved() {
			if d, ok := seen[*e.ParentID]; ok {
				e.ResolveParent(d)
			} else if !asked[*e.ParentID] {
				asked[*e.ParentID] = true
				lookup = append(lookup, *e.ParentID)
			}
		}
		seen[e.ID] = e.Date
	}
	return lookup
}

func collectDates(rows pgx.Rows, found map[uuid.UUID]audit.Date) error {
	var id pgtype.UUID
	var date time.Time
	_, err := pgx.ForEachRow(rows, []any{&id, &date}, func() error {
		found[id.Bytes] = audit.Date(date)
		return nil
	})
	return err
}

// resolveFound sets the parents found in the window (found is only read),
// looks up the rest everywhere, and returns *audit.MissingParentError for those
// still missing.
func resolveFound(ctx context.Context, q querier, events []*audit.Event, lookup []uuid.UUID, found map[uuid.UUID]audit.Date) error {
	var rest []uuid.UUID
	for _, id := range lookup {
		if _, ok := found[id]; !ok {
			rest = append(rest, id)
		}
	}
	elsewhere := map[uuid.UUID]audit.Date{}
	if len(rest) > 0 {
		rows, err := q.Query(ctx, parentsSQL, pgUUIDs(rest))
		if err != nil {
			return err
		}
		if err := collectDates(rows, elsewhere); err != nil {
			return err
		}
	}
	var missing []int
	for i, e := range events {
		if e.ParentResolved() {
			continue
		}
		d, ok := found[*e.ParentID]
		if !ok {
			d, ok = elsewhere[*e.ParentID]
		}
		if ok {
			e.ResolveParent(d)
		} else {
			missing = append(missing, i)
		}
	}
	if len(missing) > 0 {
		return &audit.MissingParentError{Indices: missing}
	}
	return nil
}

// parentLookups coalesces the window lookups of concurrent ResolveParents
// calls. Every request with a parent asks before it is queued for a commit;
// one query per request would cost PostgreSQL a plan and a round trip each
// (the plan alone, over a partitioned table, is most of it). Instead the
// first caller runs its lookup at once, and callers arriving meanwhile are
// answered together by one query when it is done.
type parentLookups struct {
	mu      sync.Mutex
	queue   []*parentAsk
	running bool
	// rounds counts the rounds handed to goroutines, so Stop can wait for
	// them: a round outlives the request that queued it.
	rounds sync.WaitGroup
}

// parentAsk is one caller's share of a lookup.
type parentAsk struct {
	ids      []uuid.UUID
	from, to time.Time
	found    map[uuid.UUID]audit.Date // shared between the asks of a round: read only
	err      error
	done     chan struct{}
}

func (l *parentLookups) lookup(ctx context.Context, s *Store, ids []uuid.UUID, from, to time.Time) (map[uuid.UUID]audit.Date, error) {
	ask := &parentAsk{ids: ids, from: from, to: to, done: make(chan struct{})}
	l.mu.Lock()
	l.queue = append(l.queue, ask)
	lead := !l.running
	l.running = true
	l.mu.Unlock()
	if lead {
		// Serve this caller's round here, without a goroutine hop; later
		// rounds go to a goroutine so this request is not held by others.
		l.round(s)
	}
	select {
	case <-ask.done:
		return ask.found, ask.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// round answers everything queued with one query, then hands the next round
// to a goroutine if more callers arrived meanwhile.
func (l *parentLookups) round(s *Store) {
	l.mu.Lock()
	asks := l.queue
	l.queue = nil
	l.mu.Unlock()

	var ids []uuid.UUID
	var from, to time.Time
	seen := map[uuid.UUID]bool{}
	for i, a := range asks {
		for _, id := range a.ids {
			if !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
		if i == 0 || a.from.Before(from) {
			from = a.from
		}
		if a.to.After(to) {
			to = a.to
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), parentLookupTimeout)
	found := make(map[uuid.UUID]audit.Date, len(ids))
	rows, err := s.pool.Query(ctx, recentParentsSQL, recentParentsArgs(ids, from, to)...)
	if err == nil {
		err = collectIDDates(rows, found)
	}
	cancel()
	for _, a := range asks {
		a.found, a.err = found, err
		close(a.done)
	}

	l.mu.Lock()
	more := len(l.queue) > 0
	l.running = more
	l.mu.Unlock()
	if more {
		// Counted before this round returns, so whoever waits for this
		// round's goroutine (Stop) also waits for the next one.
		l.rounds.Go(func() { l.round(s) })
	}
}

// Stop waits until no parent lookup runs in a goroutine of the store's, or
// until ctx ends. Callers stop calling ResolveParents first (serve stops the
// HTTP server and the pipeline before the store): a round started after Stop
// returned is not waited for. It belongs to the server's lifecycle
// (internal/lifecycle), so the pool is closed only after the last lookup.
func (s *Store) Stop(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		s.parents.rounds.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("store: stop: parent lookups still running: %w", ctx.Err())
	}
}
