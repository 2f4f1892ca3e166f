package query

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"kubernaut.ai/datastorage/internal/audit"
)

// Archive is what a list needs of the archive tier (internal/archive's
// Reader is one): which archived months a window reaches, and an archived
// correlation's events.
type Archive interface {
	// MonthsIn names (YYYY-MM) the archived months that overlap [from, to).
	MonthsIn(ctx context.Context, from, to time.Time) ([]string, error)
	// CorrelationEvents returns a correlation's archived events.
	CorrelationEvents(ctx context.Context, correlationID string) ([]audit.Event, error)
}

// WithArchive returns a Service whose lists know the archived months:
// a list filtered by correlation_id includes the correlation's archived
// events; any other list whose window reaches archived months answers from
// PostgreSQL and names those months in ListResult.ArchivedMonths.
func (s *Service) WithArchive(a Archive) *Service { return &Service{store: s.store, archive: a} }

// farFuture bounds an open window.
var farFuture = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

// archivedMonths returns the archived months the filter's window reaches.
func (s *Service) archivedMonths(ctx context.Context, f EventFilter) ([]string, error) {
	if s.archive == nil {
		return nil, nil
	}
	to := farFuture
	if !f.Until.IsZero() {
		to = f.Until.Add(time.Microsecond) // Until is inclusive
	}
	months, err := s.archive.MonthsIn(ctx, f.Since, to)
	if err != nil {
		return nil, fmt.Errorf("query: archived months: %w", err)
	}
	return months, nil
}

// streamWithArchive lists a correlation's events from its archived months
// and PostgreSQL. Archived months are older than every month in
// PostgreSQL, so in the page's order one source follows the other; a
// correlation's events are few (a timeline holds at most 5,000), so the
// page is assembled in memory, offset included.
func (s *Service) streamWithArchive(ctx context.Context, p ListParams, each func(*audit.Event) error) (ListResult, error) {
	res := ListResult{Limit: p.Limit, Offset: p.Offset}
	all, err := s.archive.CorrelationEvents(ctx, p.Filter.CorrelationID)
	if err != nil {
		return res, fmt.Errorf("query: list: %w", err)
	}
	order := func(a, b *audit.Event) int {
		c := cmp.Or(a.Timestamp.Std().Compare(b.Timestamp.Std()), bytes.Compare(a.ID[:], b.ID[:]))
		if p.Ascending {
			return c
		}
		return -c
	}
	var archived []audit.Event
	for i := range all {
		if Matches(p.Filter, &all[i]) {
			archived = append(archived, all[i])
		}
	}
	matched := int64(len(archived))
	if k := p.Cursor.keyset(); k != nil {
		at := audit.Event{ID: k.ID, Timestamp: audit.NewTime(k.Timestamp)}
		archived = slices.DeleteFunc(archived, func(e audit.Event) bool { return order(&e, &at) <= 0 })
	}
	var live []audit.Event
	seen := map[uuid.UUID]bool{}
	err = s.store.EachEvent(ctx, p.Filter, Page{Limit: p.Offset + p.Limit + 1, After: p.Cursor.keyset(), Ascending: p.Ascending},
		func(e *audit.Event) error {
			live = append(live, *e)
			seen[e.ID] = true
			return nil
		})
	if err != nil {
		return res, fmt.Errorf("query: list: %w", err)
	}
	// A restored month is in both: PostgreSQL's copy is the one listed.
	archived = slices.DeleteFunc(archived, func(e audit.Event) bool { return seen[e.ID] })
	slices.SortFunc(archived, func(a, b audit.Event) int { return order(&a, &b) })
	merged := append(live, archived...)
	if p.Ascending {
		merged = append(archived, live...)
	}
	slices.SortStableFunc(merged, func(a, b audit.Event) int { return order(&a, &b) })
	rest := merged[min(p.Offset, len(merged)):]
	n := min(p.Limit, len(rest))
	res.HasMore = len(rest) > p.Limit
	for i := range n {
		if err := each(&rest[i]); err != nil {
			return res, fmt.Errorf("query: list: %w", err)
		}
	}
	if res.HasMore {
		last := rest[n-1]
		res.NextCursor = Cursor{Timestamp: last.Timestamp.Std(), ID: last.ID, Ascending: p.Ascending}.Encode()
	}
	if !res.HasMore && p.Cursor == nil {
		res.Total, res.TotalExact = int64(len(merged)), true
		return res, nil
	}
	c, err := s.store.CountEvents(ctx, p.Filter, CountCap+1)
	if err != nil {
		return res, fmt.Errorf("query: count: %w", err)
	}
	res.Total, res.TotalExact = c+matched, c <= CountCap
	return res, nil
}

// Matches reports whether e passes every condition of f, as the store's
// SQL would (event_data ->> key compared as text).
func Matches(f EventFilter, e *audit.Event) bool {
	eq := func(want, got string) bool { return want == "" || want == got }
	ts := e.Timestamp.Std()
	if !eq(f.CorrelationID, e.CorrelationID) || !eq(f.EventType, e.Type) || !eq(f.EventCategory, e.Category) ||
		!eq(f.EventOutcome, e.Outcome) || !eq(f.Severity, e.Severity) || !eq(f.Namespace, e.Namespace) ||
		!eq(f.ClusterID, e.ClusterID) || !eq(f.ActorID, e.ActorID) || !eq(f.ResourceType, e.ResourceType) ||
		!eq(f.ResourceID, e.ResourceID) ||
		(!f.Since.IsZero() && ts.Before(f.Since)) || (!f.Until.IsZero() && ts.After(f.Until)) {
		return false
	}
	if f.DetailKey == "" {
		return true
	}
	var top map[string]json.RawMessage
	if json.Unmarshal(e.Data, &top) != nil {
		return false
	}
	raw, ok := top[f.DetailKey]
	if !ok || string(raw) == "null" {
		return false
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s == f.DetailValue
	}
	// Numbers and booleans: their JSON text, as ->> gives it. (Objects
	// and arrays may differ in white space from PostgreSQL's jsonb text.)
	return string(raw) == f.DetailValue
}
