package query_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/query"
	"kubernaut.ai/datastorage/internal/store"
)

// fakeStore holds n matching events and pages through them as the real
// store does: ordered by (event_timestamp, event_id), keyset then offset
// then limit. It records what the service asked.
type fakeStore struct {
	events []audit.Event // newest first

	listErr, countErr, getErr error

	mu         sync.Mutex
	pages      []store.Page
	filters    []store.EventFilter
	countCalls []int
}

func newFakeStore(n int) *fakeStore {
	base := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	events := make([]audit.Event, n)
	for i := range events {
		// Newest first; consecutive pairs share a timestamp so that the
		// id breaks ties.
		ts := base.Add(-time.Duration(i/2) * time.Second)
		var id uuid.UUID
		id[15] = byte(n - i)
		id[14] = byte((n - i) >> 8)
		id[13] = byte((n - i) >> 16)
		events[i] = audit.Event{ID: id, Timestamp: audit.NewTime(ts), CorrelationID: fmt.Sprint("c-", i)}
	}
	return &fakeStore{events: events}
}

func (f *fakeStore) GetEvent(_ context.Context, id uuid.UUID) (audit.Event, error) {
	if f.getErr != nil {
		return audit.Event{}, f.getErr
	}
	for _, e := range f.events {
		if e.ID == id {
			return e, nil
		}
	}
	return audit.Event{}, store.ErrNotFound
}

func (f *fakeStore) EachEvent(ctx context.Context, filter store.EventFilter, p store.Page, each func(*audit.Event) error) error {
	events, err := f.ListEvents(ctx, filter, p)
	if err != nil {
		return err
	}
	for i := range events {
		if err := each(&events[i]); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeStore) ListEvents(_ context.Context, filter store.EventFilter, p store.Page) ([]audit.Event, error) {
	f.mu.Lock()
	f.pages = append(f.pages, p)
	f.filters = append(f.filters, filter)
	f.mu.Unlock()
	if f.listErr != nil {
		return nil, f.listErr
	}
	ordered := slices.Clone(f.events)
	if p.Ascending {
		slices.Reverse(ordered)
	}
	if p.After != nil {
		i := slices.IndexFunc(ordered, func(e audit.Event) bool {
			c := e.Timestamp.Std().Compare(p.After.Timestamp)
			if c == 0 {
				c = slices.Compare(e.ID[:], p.After.ID[:])
			}
			if p.Ascending {
				return c > 0
			}
			return c < 0
		})
		if i < 0 {
			i = len(ordered)
		}
		ordered = ordered[i:]
	}
	ordered = ordered[min(p.Offset, len(ordered)):]
	return ordered[:min(p.Limit, len(ordered))], nil
}

func (f *fakeStore) CountEvents(_ context.Context, _ store.EventFilter, limit int) (int64, error) {
	f.mu.Lock()
	f.countCalls = append(f.countCalls, limit)
	f.mu.Unlock()
	if f.countErr != nil {
		return 0, f.countErr
	}
	return int64(min(len(f.events), limit)), nil
}

func TestListFetchesOneMoreThanTheLimitAndPassesTheRequestThrough(t *testing.T) {
	t.Parallel()
	st := newFakeStore(10)
	cur := query.Cursor{Timestamp: time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC), ID: uuid.New(), Ascending: true}
	filter := store.EventFilter{CorrelationID: "rr-1", DetailKey: "k", DetailValue: "v"}
	_, err := query.New(st).List(context.Background(), query.ListParams{Filter: filter, Limit: 25, Cursor: &cur, Ascending: true})
	require.NoError(t, err)
	require.Len(t, st.pages, 1)
	assert.Equal(t, store.Page{Limit: 26, After: &store.Keyset{Timestamp: cur.Timestamp, ID: cur.ID}, Ascending: true}, st.pages[0])
	assert.Equal(t, filter, st.filters[0])

	st = newFakeStore(10)
	_, err = query.New(st).List(context.Background(), query.ListParams{Limit: 3, Offset: 4})
	require.NoError(t, err)
	assert.Equal(t, store.Page{Limit: 4, Offset: 4}, st.pages[0], "no cursor: no keyset")
}

func TestListPages(t *testing.T) {
	t.Parallel()
	type want struct {
		events     int
		hasMore    bool
		total      int64
		totalExact bool
		counted    bool
	}
	tests := []struct {
		name   string
		stored int
		params query.ListParams
		want   want
	}{
		{"empty result", 0, query.ListParams{Limit: 50},
			want{events: 0, total: 0, totalExact: true}},
		{"first page holds everything", 7, query.ListParams{Limit: 50},
			want{events: 7, total: 7, totalExact: true}},
		{"first page exactly full", 50, query.ListParams{Limit: 50},
			want{events: 50, total: 50, totalExact: true}},
		{"first page with one more", 51, query.ListParams{Limit: 50},
			want{events: 50, hasMore: true, total: 51, totalExact: true, counted: true}},
		{"last offset page: total from offset without counting", 120, query.ListParams{Limit: 50, Offset: 100},
			want{events: 20, total: 120, totalExact: true}},
		{"middle offset page is counted", 120, query.ListParams{Limit: 50, Offset: 50},
			want{events: 50, hasMore: true, total: 120, totalExact: true, counted: true}},
		{"offset past the end is counted", 120, query.ListParams{Limit: 50, Offset: 500},
			want{events: 0, total: 120, totalExact: true, counted: true}},
		{"exactly CountCap matches is exact", query.CountCap, query.ListParams{Limit: 10},
			want{events: 10, hasMore: true, total: query.CountCap, totalExact: true, counted: true}},
		{"more than CountCap matches is a lower bound", query.CountCap + 500, query.ListParams{Limit: 10},
			want{events: 10, hasMore: true, total: query.CountCap, totalExact: false, counted: true}},
		{"deep offset page beyond CountCap: bound covers what this page proves", 30000, query.ListParams{Limit: 100, Offset: 20000},
			want{events: 100, hasMore: true, total: 20101, totalExact: false, counted: true}},
		{"last offset page beyond CountCap is exact without counting", 20050, query.ListParams{Limit: 100, Offset: 20000},
			want{events: 50, total: 20050, totalExact: true}},
		{"offset past the end of more than CountCap matches: bound never exceeds the matches", 15000, query.ListParams{Limit: 100, Offset: 20000},
			want{events: 0, total: query.CountCap, totalExact: false, counted: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := newFakeStore(tt.stored)
			res, err := query.New(st).List(context.Background(), tt.params)
			require.NoError(t, err)
			assert.Len(t, res.Events, tt.want.events)
			assert.Equal(t, tt.want.hasMore, res.HasMore, "has_more")
			assert.Equal(t, tt.want.total, res.Total, "total")
			assert.Equal(t, tt.want.totalExact, res.TotalExact, "total_is_exact")
			assert.Equal(t, tt.params.Limit, res.Limit)
			assert.Equal(t, tt.params.Offset, res.Offset)
			if tt.want.counted {
				assert.Equal(t, []int{query.CountCap + 1}, st.countCalls, "counts up to the cap and one more")
			} else {
				assert.Empty(t, st.countCalls, "the total was known without counting")
			}
			if res.TotalExact {
				assert.Equal(t, int64(tt.stored), res.Total, "an exact total is the number of matches")
			} else {
				assert.LessOrEqual(t, res.Total, int64(tt.stored), "a lower bound is never above the matches")
				assert.Greater(t, int64(tt.stored), int64(query.CountCap))
			}
			if res.HasMore {
				require.NotEmpty(t, res.NextCursor)
				last := res.Events[len(res.Events)-1]
				c, err := query.DecodeCursor(res.NextCursor)
				require.NoError(t, err)
				assert.Equal(t, query.Cursor{Timestamp: last.Timestamp.Std(), ID: last.ID, Ascending: tt.params.Ascending}, c)
			} else {
				assert.Empty(t, res.NextCursor, "next_cursor only with has_more")
			}
		})
	}
}

func TestListCursorPagesWalkEveryEventOnceAndNeverGuessTheTotal(t *testing.T) {
	t.Parallel()
	for _, asc := range []bool{false, true} {
		t.Run(fmt.Sprintf("ascending=%v", asc), func(t *testing.T) {
			t.Parallel()
			const stored, limit = 23, 5
			st := newFakeStore(stored)
			svc := query.New(st)
			var seen []uuid.UUID
			p := query.ListParams{Limit: limit, Ascending: asc}
			for page := 0; ; page++ {
				require.Less(t, page, 10, "paging does not end")
				countsBefore := len(st.countCalls)
				res, err := svc.List(context.Background(), p)
				require.NoError(t, err)
				for _, e := range res.Events {
					seen = append(seen, e.ID)
				}
				if p.Cursor != nil {
					assert.Len(t, st.countCalls, countsBefore+1, "page %d: a cursor page counts: its offset says nothing of the rows before it", page)
				}
				assert.True(t, res.TotalExact, "page %d", page)
				assert.Equal(t, int64(stored), res.Total, "page %d: the total of all matches, not of the rows after the cursor", page)
				if !res.HasMore {
					assert.Empty(t, res.NextCursor)
					break
				}
				c, err := query.DecodeCursor(res.NextCursor)
				require.NoError(t, err)
				p.Cursor = &c
			}
			want := make([]uuid.UUID, 0, stored)
			for _, e := range st.events {
				want = append(want, e.ID)
			}
			if asc {
				slices.Reverse(want)
			}
			assert.Equal(t, want, seen, "every event once, in order")
		})
	}
}

func TestListCursorPageAtTheEndIsCountedNotDerived(t *testing.T) {
	t.Parallel()
	st := newFakeStore(12)
	last := st.events[9]
	cur := query.Cursor{Timestamp: last.Timestamp.Std(), ID: last.ID}
	res, err := query.New(st).List(context.Background(), query.ListParams{Limit: 50, Cursor: &cur})
	require.NoError(t, err)
	assert.Len(t, res.Events, 2)
	assert.False(t, res.HasMore)
	assert.Equal(t, []int{query.CountCap + 1}, st.countCalls)
	assert.Equal(t, int64(12), res.Total, "not 2: the rows before the cursor exist too")
	assert.True(t, res.TotalExact)
}

func TestListCursorPageBeyondCountCapIsALowerBound(t *testing.T) {
	t.Parallel()
	st := newFakeStore(query.CountCap + 10)
	last := st.events[query.CountCap]
	cur := query.Cursor{Timestamp: last.Timestamp.Std(), ID: last.ID}
	res, err := query.New(st).List(context.Background(), query.ListParams{Limit: 50, Cursor: &cur})
	require.NoError(t, err)
	assert.Len(t, res.Events, 9)
	assert.False(t, res.HasMore)
	assert.False(t, res.TotalExact)
	assert.Equal(t, int64(query.CountCap), res.Total)
}

func TestListReportsStoreErrors(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")

	st := newFakeStore(3)
	st.listErr = boom
	_, err := query.New(st).List(context.Background(), query.ListParams{Limit: 10})
	require.ErrorIs(t, err, boom)
	assert.Contains(t, err.Error(), "query: list")

	st = newFakeStore(30)
	st.countErr = boom
	_, err = query.New(st).List(context.Background(), query.ListParams{Limit: 10})
	require.ErrorIs(t, err, boom)
	assert.Contains(t, err.Error(), "query: count")

	st = newFakeStore(3)
	st.countErr = boom
	_, err = query.New(st).List(context.Background(), query.ListParams{Limit: 10})
	require.NoError(t, err, "a page that needs no count does not fail on one")
}

func TestGetReturnsTheEventOrWrapsNotFound(t *testing.T) {
	t.Parallel()
	st := newFakeStore(3)
	svc := query.New(st)
	ev, err := svc.Get(context.Background(), st.events[1].ID)
	require.NoError(t, err)
	assert.Equal(t, st.events[1], ev)

	missing := uuid.New()
	_, err = svc.Get(context.Background(), missing)
	require.ErrorIs(t, err, store.ErrNotFound)
	assert.Contains(t, err.Error(), missing.String())

	boom := errors.New("boom")
	st.getErr = boom
	_, err = svc.Get(context.Background(), st.events[0].ID)
	require.ErrorIs(t, err, boom)
}
