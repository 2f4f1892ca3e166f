package query

import (
	"context"
	"fmt"

	"github.com/google/uuid"

	"kubernaut.ai/datastorage/internal/audit"
)

// CountCap is the number of matches up to which a list's total is exact.
const CountCap = 10_000

// Store is the part of the store that reads serve from.
type Store interface {
	GetEvent(ctx context.Context, id uuid.UUID) (audit.Event, error)
	ListEvents(ctx context.Context, f EventFilter, p Page) ([]audit.Event, error)
	CountEvents(ctx context.Context, f EventFilter, limit int) (int64, error)
}

// Service answers reads.
type Service struct {
	store Store
}

// New returns a Service reading from st.
func New(st Store) *Service { return &Service{store: st} }

// ListResult is one page of events and what is known of the rest.
type ListResult struct {
	Events     []audit.Event
	Limit      int
	Offset     int
	Total      int64
	TotalExact bool
	HasMore    bool
	// NextCursor continues after the last event; empty when HasMore is false.
	NextCursor string
}

// List returns the page p asks for.
func (s *Service) List(ctx context.Context, p ListParams) (ListResult, error) {
	events, err := s.store.ListEvents(ctx, p.Filter, Page{
		Limit:     p.Limit + 1, // one more than asked tells whether there is more
		Offset:    p.Offset,
		After:     p.Cursor.keyset(),
		Ascending: p.Ascending,
	})
	if err != nil {
		return ListResult{}, fmt.Errorf("query: list: %w", err)
	}
	res := ListResult{Limit: p.Limit, Offset: p.Offset, Events: events}
	if len(events) > p.Limit {
		res.HasMore = true
		res.Events = events[:p.Limit]
		last := res.Events[len(res.Events)-1]
		res.NextCursor = Cursor{Timestamp: last.Timestamp.Std(), ID: last.ID, Ascending: p.Ascending}.Encode()
	}
	if !res.HasMore && p.Cursor == nil && (len(res.Events) > 0 || p.Offset == 0) {
		// The page reached the end: everything before it was skipped by
		// offset, so the total is known without counting.
		res.Total, res.TotalExact = int64(p.Offset+len(res.Events)), true
		return res, nil
	}
	n, err := s.store.CountEvents(ctx, p.Filter, CountCap+1)
	if err != nil {
		return ListResult{}, fmt.Errorf("query: count: %w", err)
	}
	res.Total, res.TotalExact = n, n <= CountCap
	if !res.TotalExact {
		// A lower bound: at least the rows up to the end of this page. An
		// empty page proves nothing about the rows its offset skipped.
		var seen int64
		if len(res.Events) > 0 {
			seen = int64(p.Offset + len(res.Events))
		}
		if res.HasMore {
			seen++
		}
		res.Total = max(CountCap, seen)
	}
	return res, nil
}

// Get returns one event, or an error wrapping ErrNotFound.
func (s *Service) Get(ctx context.Context, id uuid.UUID) (audit.Event, error) {
	ev, err := s.store.GetEvent(ctx, id)
	if err != nil {
		return audit.Event{}, fmt.Errorf("query: get event %s: %w", id, err)
	}
	return ev, nil
}
