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
	EachEvent(ctx context.Context, f EventFilter, p Page, each func(*audit.Event) error) error
	CountEvents(ctx context.Context, f EventFilter, limit int) (int64, error)
}

// Service answers reads.
type Service struct {
	store   Store
	archive Archive
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
	// ArchivedMonths (YYYY-MM) are the archived months the list's window
	// reaches and that it did not search (see WithArchive).
	ArchivedMonths []string
}

// List returns the page p asks for.
func (s *Service) List(ctx context.Context, p ListParams) (ListResult, error) {
	var events []audit.Event
	res, err := s.Stream(ctx, p, func(e *audit.Event) error {
		events = append(events, *e)
		return nil
	})
	res.Events = events
	return res, err
}

// Stream is List with the page's events handed to each, one at a time and
// in order, as they come from the database, instead of gathered in
// ListResult.Events (left nil): a page of large events is never held whole.
// The rest of ListResult (has_more, next_cursor, total) is known only once
// every event was handed over, so a response writes it last. An error from
// each stops the read and is returned (wrapped).
func (s *Service) Stream(ctx context.Context, p ListParams, each func(*audit.Event) error) (ListResult, error) {
	months, err := s.archivedMonths(ctx, p.Filter)
	if err != nil {
		return ListResult{}, err
	}
	if len(months) > 0 && p.Filter.CorrelationID != "" {
		return s.streamWithArchive(ctx, p, each)
	}
	res, err := s.stream(ctx, p, each)
	res.ArchivedMonths = months
	return res, err
}

func (s *Service) stream(ctx context.Context, p ListParams, each func(*audit.Event) error) (ListResult, error) {
	res := ListResult{Limit: p.Limit, Offset: p.Offset}
	var n int
	var last Cursor
	err := s.store.EachEvent(ctx, p.Filter, Page{
		Limit:     p.Limit + 1, // one more than asked tells whether there is more
		Offset:    p.Offset,
		After:     p.Cursor.keyset(),
		Ascending: p.Ascending,
	}, func(e *audit.Event) error {
		if n == p.Limit {
			res.HasMore = true
			return nil
		}
		n++
		last = Cursor{Timestamp: e.Timestamp.Std(), ID: e.ID, Ascending: p.Ascending}
		return each(e)
	})
	if err != nil {
		return ListResult{}, fmt.Errorf("query: list: %w", err)
	}
	if res.HasMore {
		res.NextCursor = last.Encode()
	}
	if !res.HasMore && p.Cursor == nil && (n > 0 || p.Offset == 0) {
		// The page reached the end: everything before it was skipped by
		// offset, so the total is known without counting.
		res.Total, res.TotalExact = int64(p.Offset+n), true
		return res, nil
	}
	c, err := s.store.CountEvents(ctx, p.Filter, CountCap+1)
	if err != nil {
		return ListResult{}, fmt.Errorf("query: count: %w", err)
	}
	res.Total, res.TotalExact = c, c <= CountCap
	if !res.TotalExact {
		// A lower bound: at least the rows up to the end of this page. An
		// empty page proves nothing about the rows its offset skipped.
		var seen int64
		if n > 0 {
			seen = int64(p.Offset + n)
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
