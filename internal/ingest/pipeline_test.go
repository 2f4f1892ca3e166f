package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/failure"
	"kubernaut.ai/datastorage/internal/store"
)

// guard bounds every wait of these tests. It is never what a test asserts:
// reaching it means the pipeline hung.
const guard = 10 * time.Second

// fakeStore records what the pipeline writes. insert, when set, decides the
// result of each InsertEvents call (numbered from 0); resolve the result of
// each ResolveParents call.
type fakeStore struct {
	insert  func(ctx context.Context, call int, events []*audit.Event) (int64, error)
	resolve func(events []*audit.Event) error

	mu        sync.Mutex
	attempts  [][]*audit.Event // every InsertEvents call
	committed [][]*audit.Event // the calls that succeeded
	resolved  [][]*audit.Event
}

func (f *fakeStore) InsertEvents(ctx context.Context, events []*audit.Event) (int64, error) {
	events = slices.Clone(events) // the pipeline reuses its slice
	f.mu.Lock()
	call := len(f.attempts)
	f.attempts = append(f.attempts, events)
	f.mu.Unlock()
	n, err := int64(len(events)), error(nil)
	if f.insert != nil {
		n, err = f.insert(ctx, call, events)
	}
	if err != nil {
		// As the real store: every error carries its class.
		return 0, &store.Error{Err: err, Class: store.Classify(err)}
	}
	if err == nil {
		f.mu.Lock()
		f.committed = append(f.committed, events)
		f.mu.Unlock()
	}
	return n, err
}

func (f *fakeStore) ResolveParents(_ context.Context, events []*audit.Event) error {
	f.mu.Lock()
	f.resolved = append(f.resolved, slices.Clone(events))
	f.mu.Unlock()
	if f.resolve != nil {
		if err := f.resolve(events); err != nil {
			return &store.Error{Err: err, Class: store.Classify(err)}
		}
	}
	return nil
}

func (f *fakeStore) committedBatches() [][]*audit.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.committed)
}

func (f *fakeStore) attemptCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.attempts)
}

func (f *fakeStore) resolveCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.resolved)
}

// committedIDs returns every committed event id, in commit order.
func (f *fakeStore) committedIDs() []uuid.UUID {
	var ids []uuid.UUID
	for _, b := range f.committedBatches() {
		for _, e := range b {
			ids = append(ids, e.ID)
		}
	}
	return ids
}

// gate blocks the first InsertEvents call until released, so that a test
// can queue requests behind a commit in progress.
type gate struct {
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

// newGate returns a closed gate that t.Cleanup opens, so that a failing
// test does not leave a writer blocked (cleanups run before the pipeline's
// Stop, registered earlier).
func newGate(t *testing.T) *gate {
	g := &gate{entered: make(chan struct{}), release: make(chan struct{})}
	t.Cleanup(g.Release)
	return g
}

// hold is an insert hook: call 0 waits for Release; the rest go to next.
func (g *gate) hold(next func(ctx context.Context, call int, events []*audit.Event) (int64, error)) func(context.Context, int, []*audit.Event) (int64, error) {
	return func(ctx context.Context, call int, events []*audit.Event) (int64, error) {
		if call == 0 {
			close(g.entered)
			<-g.release
		}
		if next != nil {
			return next(ctx, call, events)
		}
		return int64(len(events)), nil
	}
}

func (g *gate) waitEntered(t *testing.T) {
	t.Helper()
	select {
	case <-g.entered:
	case <-time.After(guard):
		t.Fatal("the first commit never started")
	}
}

func (g *gate) Release() { g.once.Do(func() { close(g.release) }) }

type fakeSpool struct {
	err error

	mu      sync.Mutex
	appends [][]*audit.Event
	hadDL   []bool
}

func (s *fakeSpool) Append(ctx context.Context, events []*audit.Event) error {
	_, hasDeadline := ctx.Deadline()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hadDL = append(s.hadDL, hasDeadline)
	if s.err != nil {
		return s.err
	}
	s.appends = append(s.appends, slices.Clone(events))
	return nil
}

func (s *fakeSpool) spooledIDs() []uuid.UUID {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []uuid.UUID
	for _, b := range s.appends {
		for _, e := range b {
			ids = append(ids, e.ID)
		}
	}
	return ids
}

func newEvents(n int, correlation string) []*audit.Event {
	out := make([]*audit.Event, n)
	for i := range out {
		out[i] = &audit.Event{ID: uuid.New(), CorrelationID: correlation, Data: []byte(`{}`)}
	}
	return out
}

func ids(events []*audit.Event) []uuid.UUID {
	out := make([]uuid.UUID, len(events))
	for i, e := range events {
		out[i] = e.ID
	}
	return out
}

// start returns a running pipeline that t.Cleanup stops. spool may be nil:
// then the pipeline has no spool at all.
func start(t *testing.T, st Store, spool *fakeSpool, opts Options) (*Pipeline, *Metrics) {
	t.Helper()
	m := NewMetrics(nil)
	var sp Spool // a nil *fakeSpool must not become a non-nil Spool
	if spool != nil {
		sp = spool
	}
	p := New(st, sp, opts, m, slog.New(slog.DiscardHandler))
	require.NoError(t, p.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), guard)
		defer cancel()
		closed := make(chan error, 1)
		go func() { closed <- p.Stop(ctx) }()
		select {
		case err := <-closed:
			assert.NoError(t, err, "stop at cleanup")
		case <-time.After(2 * guard):
			t.Error("Stop at cleanup never returned")
		}
	})
	return p, m
}

type outcome struct {
	o   Outcome
	err error
}

func submitAsync(p *Pipeline, events []*audit.Event) <-chan outcome {
	ch := make(chan outcome, 1)
	go func() {
		o, err := p.Submit(context.Background(), events)
		ch <- outcome{o, err}
	}()
	return ch
}

func replayAsync(p *Pipeline, events []*audit.Event) <-chan outcome {
	ch := make(chan outcome, 1)
	go func() { ch <- outcome{err: p.Replay(context.Background(), events)} }()
	return ch
}

func await(t *testing.T, ch <-chan outcome) outcome {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(guard):
		t.Fatal("Submit never returned")
		return outcome{}
	}
}

func counter(t *testing.T, m *Metrics, result string) float64 {
	t.Helper()
	var d dto.Metric
	require.NoError(t, m.Events.WithLabelValues(result).Write(&d))
	return d.GetCounter().GetValue()
}

func gaugeValue(t *testing.T, g prometheus.Gauge) float64 {
	t.Helper()
	var d dto.Metric
	require.NoError(t, g.Write(&d))
	return d.GetGauge().GetValue()
}

func histogram(t *testing.T, h prometheus.Histogram) (count uint64, sum float64) {
	t.Helper()
	var d dto.Metric
	require.NoError(t, h.Write(&d))
	return d.GetHistogram().GetSampleCount(), d.GetHistogram().GetSampleSum()
}

// waitQueued waits until n events wait for a writer. It polls the queue
// depth gauge; the test asserts on what happens next, not on timing.
func waitQueued(t *testing.T, m *Metrics, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return gaugeValue(t, m.QueueDepth) == float64(n) },
		guard, time.Millisecond, "waiting for %d queued events", n)
}

func TestSubmitOfALoneRequestIsCommittedWithoutWaitingForCompany(t *testing.T) {
	t.Parallel()
	st := &fakeStore{}
	p, m := start(t, st, nil, Options{Writers: 1})
	for i := range 3 {
		evs := newEvents(1, "rr")
		r := await(t, submitAsync(p, evs))
		require.NoError(t, r.err)
		assert.Equal(t, Committed, r.o)
		require.Len(t, st.committedBatches(), i+1, "each lone request is its own commit")
		assert.Equal(t, ids(evs), ids(st.committedBatches()[i]))
	}
	assert.Equal(t, 3.0, counter(t, m, "committed"))
	assert.Zero(t, gaugeValue(t, m.QueueDepth))
}

func TestSubmitOfNothingIsCommittedWithoutTouchingTheStore(t *testing.T) {
	t.Parallel()
	st := &fakeStore{}
	p, _ := start(t, st, nil, Options{})
	o, err := p.Submit(context.Background(), nil)
	require.NoError(t, err)
	assert.Equal(t, Committed, o)
	require.NoError(t, p.Replay(context.Background(), []*audit.Event{}))
	assert.Zero(t, st.attemptCount())
	assert.Zero(t, st.resolveCount())
}

func TestSubmitsQueuedDuringACommitShareTheNextCommit(t *testing.T) {
	t.Parallel()
	g := newGate(t)
	st := &fakeStore{insert: g.hold(nil)}
	p, m := start(t, st, nil, Options{Writers: 1, MaxBatch: 100})

	first := submitAsync(p, newEvents(1, "first"))
	g.waitEntered(t)
	var waiting []<-chan outcome
	var queued []uuid.UUID
	for i := range 10 {
		evs := newEvents(1, fmt.Sprint("c-", i))
		queued = append(queued, evs[0].ID)
		waiting = append(waiting, submitAsync(p, evs))
	}
	waitQueued(t, m, 10)
	g.Release()

	for _, ch := range append(waiting, first) {
		r := await(t, ch)
		require.NoError(t, r.err)
		assert.Equal(t, Committed, r.o)
	}
	batches := st.committedBatches()
	require.Len(t, batches, 2, "ten submits, one commit")
	assert.ElementsMatch(t, queued, ids(batches[1]))
	count, sum := histogram(t, m.BatchSize)
	assert.Equal(t, uint64(2), count)
	assert.Equal(t, 11.0, sum)
	assert.Equal(t, 11.0, counter(t, m, "committed"))
	assert.Zero(t, gaugeValue(t, m.QueueDepth))
}

func TestMaxBatchBoundsWhatOneCommitGathers(t *testing.T) {
	t.Parallel()
	g := newGate(t)
	st := &fakeStore{insert: g.hold(nil)}
	p, m := start(t, st, nil, Options{Writers: 1, MaxBatch: 4, QueueSize: 100})

	first := submitAsync(p, newEvents(1, "first"))
	g.waitEntered(t)
	var waiting []<-chan outcome
	for range 10 {
		waiting = append(waiting, submitAsync(p, newEvents(1, "rr")))
	}
	waitQueued(t, m, 10)
	g.Release()
	for _, ch := range append(waiting, first) {
		require.NoError(t, await(t, ch).err)
	}
	var sizes []int
	for _, b := range st.committedBatches()[1:] {
		sizes = append(sizes, len(b))
	}
	assert.Equal(t, []int{4, 4, 2}, sizes)
}

func TestOneWriterNeverSplitsAClientBatchAcrossCommits(t *testing.T) {
	t.Parallel()
	const maxBatch = 4
	g := newGate(t)
	st := &fakeStore{insert: g.hold(nil)}
	p, m := start(t, st, nil, Options{Writers: 1, MaxBatch: maxBatch, QueueSize: 100})

	first := submitAsync(p, newEvents(1, "first"))
	g.waitEntered(t)
	requests := map[string][]*audit.Event{}
	var waiting []<-chan outcome
	for i, n := range []int{3, 3, 3, 10, 1, 2} {
		name := fmt.Sprintf("req-%d", i)
		requests[name] = newEvents(n, name)
		waiting = append(waiting, submitAsync(p, requests[name]))
	}
	waitQueued(t, m, 22)
	g.Release()
	for _, ch := range append(waiting, first) {
		r := await(t, ch)
		require.NoError(t, r.err)
		assert.Equal(t, Committed, r.o)
	}

	seenIn := map[string]int{}
	for c, batch := range st.committedBatches()[1:] {
		// The requests of this commit, in order, each whole and contiguous.
		var order []string
		for i := 0; i < len(batch); {
			name := batch[i].CorrelationID
			req := requests[name]
			require.NotNil(t, req, "commit %d holds an unknown event", c)
			require.LessOrEqual(t, i+len(req), len(batch), "%s is cut off at the end of commit %d", name, c)
			assert.Equal(t, ids(req), ids(batch[i:i+len(req)]), "%s is whole and in order in commit %d", name, c)
			_, dup := seenIn[name]
			assert.False(t, dup, "%s is in two commits", name)
			seenIn[name] = c
			order = append(order, name)
			i += len(req)
		}
		gathered := 0
		for _, name := range order[:len(order)-1] {
			gathered += len(requests[name])
		}
		assert.Less(t, gathered, maxBatch, "commit %d took another request after reaching MaxBatch: %v", c, order)
	}
	assert.Len(t, seenIn, len(requests), "every request was committed")
}

func TestDatabaseOutageSpoolsTheEventsAndAnswersQueued(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
	}{
		{"connection refused", fmt.Errorf("dial tcp 127.0.0.1:5432: %w", syscall.ECONNREFUSED)},
		{"connection failure", &pgconn.PgError{Code: "08006"}},
		{"admin shutdown", &pgconn.PgError{Code: "57P01"}},
		{"too many connections", &pgconn.PgError{Code: "53300"}},
		{"read-only after failover", fmt.Errorf("store: insert: %w", &pgconn.PgError{Code: "25006"})},
		{"serialization failure", fmt.Errorf("store: insert: %w", &pgconn.PgError{Code: "40001"})},
		{"timeout", fmt.Errorf("store: insert: %w", context.DeadlineExceeded)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, failure.Unavailable, store.Classify(tt.err), "test data")
			st := &fakeStore{insert: func(context.Context, int, []*audit.Event) (int64, error) { return 0, tt.err }}
			sp := &fakeSpool{}
			p, m := start(t, st, sp, Options{})
			evs := newEvents(3, "rr")
			o, err := p.Submit(context.Background(), evs)
			require.NoError(t, err)
			assert.Equal(t, Queued, o)
			assert.Equal(t, ids(evs), sp.spooledIDs(), "the same events, with their ids")
			assert.Empty(t, st.committedBatches())
			assert.Equal(t, 3.0, counter(t, m, "queued"))
			assert.Zero(t, counter(t, m, "committed"))
			assert.Zero(t, counter(t, m, "unavailable"))
			assert.Equal(t, []bool{true}, sp.hadDL, "the spool append is bounded")
		})
	}
}

func TestDatabaseOutageWithoutASpoolAnswersUnavailable(t *testing.T) {
	t.Parallel()
	down := fmt.Errorf("dial: %w", syscall.ECONNREFUSED)
	tests := []struct {
		name  string
		spool *fakeSpool
	}{
		{"spool refuses", &fakeSpool{err: errors.New("redis: connection refused")}},
		{"no spool configured", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := &fakeStore{insert: func(context.Context, int, []*audit.Event) (int64, error) { return 0, down }}
			p, m := start(t, st, tt.spool, Options{})
			o, err := p.Submit(context.Background(), newEvents(2, "rr"))
			require.ErrorIs(t, err, ErrUnavailable)
			assert.Zero(t, o)
			assert.Equal(t, 2.0, counter(t, m, "unavailable"))
			assert.Zero(t, counter(t, m, "queued"))
			if tt.spool != nil {
				assert.Empty(t, tt.spool.spooledIDs())
			}
		})
	}
}

func TestACommitThatOutlivesCommitTimeoutIsSpooled(t *testing.T) {
	t.Parallel()
	st := &fakeStore{insert: func(ctx context.Context, _ int, _ []*audit.Event) (int64, error) {
		<-ctx.Done() // a database that never answers
		return 0, ctx.Err()
	}}
	sp := &fakeSpool{}
	p, _ := start(t, st, sp, Options{CommitTimeout: 10 * time.Millisecond})
	evs := newEvents(1, "rr")
	o, err := p.Submit(context.Background(), evs)
	require.NoError(t, err)
	assert.Equal(t, Queued, o)
	assert.Equal(t, ids(evs), sp.spooledIDs())
}

func TestDataErrorRejectsOnlyTheRequestHoldingTheBadEvent(t *testing.T) {
	t.Parallel()
	g := newGate(t)
	checkViolation := &pgconn.PgError{Code: "23514", Message: "new row violates check constraint"}
	st := &fakeStore{insert: g.hold(func(_ context.Context, _ int, events []*audit.Event) (int64, error) {
		for _, e := range events {
			if e.CorrelationID == "bad" {
				return 0, fmt.Errorf("store: insert: %w", checkViolation)
			}
		}
		return int64(len(events)), nil
	})}
	sp := &fakeSpool{}
	p, m := start(t, st, sp, Options{Writers: 1, MaxBatch: 100})

	first := submitAsync(p, newEvents(1, "first"))
	g.waitEntered(t)
	good := map[int][]*audit.Event{}
	waiting := map[int]<-chan outcome{}
	for i := range 7 {
		corr, n := fmt.Sprint("good-", i), 1+i%3
		if i == 4 {
			corr, n = "bad", 2
		}
		evs := newEvents(n, corr)
		if corr != "bad" {
			good[i] = evs
		}
		waiting[i] = submitAsync(p, evs)
	}
	waitQueued(t, m, 1+2+3+1+2+3+1)
	g.Release()

	require.NoError(t, await(t, first).err)
	var wantCommitted []uuid.UUID
	for i, ch := range waiting {
		r := await(t, ch)
		if i == 4 {
			var rejected *RejectedError
			require.ErrorAs(t, r.err, &rejected)
			var pgErr *pgconn.PgError
			require.ErrorAs(t, r.err, &pgErr)
			assert.Equal(t, "23514", pgErr.Code)
			assert.Contains(t, r.err.Error(), "ingest: the database refused the events: ")
			assert.Zero(t, r.o)
			continue
		}
		require.NoError(t, r.err, "request %d", i)
		assert.Equal(t, Committed, r.o, "request %d", i)
		wantCommitted = append(wantCommitted, ids(good[i])...)
	}
	got := st.committedIDs()[1:]
	assert.ElementsMatch(t, wantCommitted, got, "every good event committed exactly once")
	assert.Empty(t, sp.spooledIDs(), "a data error is not an outage")
	assert.Equal(t, 2.0, counter(t, m, "rejected"))
	assert.Equal(t, float64(1+len(wantCommitted)), counter(t, m, "committed"))
	attempts, _ := histogram(t, m.CommitSeconds)
	assert.Equal(t, uint64(st.attemptCount()), attempts, "every attempt is timed")
	assert.Greater(t, st.attemptCount(), 3, "the batch was split")
}

func TestDataErrorOnALoneRequestRejectsIt(t *testing.T) {
	t.Parallel()
	st := &fakeStore{insert: func(context.Context, int, []*audit.Event) (int64, error) {
		return 0, &pgconn.PgError{Code: "22P02"}
	}}
	sp := &fakeSpool{}
	p, m := start(t, st, sp, Options{})
	_, err := p.Submit(context.Background(), newEvents(3, "rr"))
	var rejected *RejectedError
	require.ErrorAs(t, err, &rejected)
	assert.Equal(t, 1, st.attemptCount(), "nothing to split")
	assert.Empty(t, sp.spooledIDs())
	assert.Equal(t, 3.0, counter(t, m, "rejected"))
}

func TestSubmitWithAMissingParentIsRefusedBeforeQueueing(t *testing.T) {
	t.Parallel()
	st := &fakeStore{resolve: func([]*audit.Event) error {
		return fmt.Errorf("store: resolve parents: %w", &audit.MissingParentError{Indices: []int{1, 2}})
	}}
	sp := &fakeSpool{}
	p, m := start(t, st, sp, Options{})
	o, err := p.Submit(context.Background(), newEvents(3, "rr"))
	var missing *MissingParentsError
	require.ErrorAs(t, err, &missing)
	assert.Equal(t, []int{1, 2}, missing.Indices)
	assert.Equal(t, "ingest: 2 event(s) name a parent event that does not exist", err.Error())
	assert.Zero(t, o)
	assert.Zero(t, st.attemptCount(), "nothing reached a commit")
	assert.Empty(t, sp.spooledIDs(), "nothing was queued")
	assert.Zero(t, gaugeValue(t, m.QueueDepth))
}

func TestSubmitWhenParentsCannotBeCheckedLeavesTheCheckToTheCommit(t *testing.T) {
	t.Parallel()
	st := &fakeStore{resolve: func([]*audit.Event) error { return &pgconn.PgError{Code: "57P03"} }}
	p, _ := start(t, st, nil, Options{})
	evs := newEvents(2, "rr")
	o, err := p.Submit(context.Background(), evs)
	require.NoError(t, err)
	assert.Equal(t, Committed, o)
	assert.Equal(t, ids(evs), st.committedIDs())
}

func TestSubmitWhenTheParentCheckFailsOtherwiseReportsTheError(t *testing.T) {
	t.Parallel()
	denied := &pgconn.PgError{Code: "42703", Message: "column does not exist"}
	st := &fakeStore{resolve: func([]*audit.Event) error { return denied }}
	sp := &fakeSpool{}
	p, _ := start(t, st, sp, Options{})
	_, err := p.Submit(context.Background(), newEvents(1, "rr"))
	require.ErrorIs(t, err, denied)
	assert.NotErrorIs(t, err, ErrUnavailable)
	assert.Zero(t, st.attemptCount())
	assert.Empty(t, sp.spooledIDs())
}

func TestReplayCommitsWithoutCheckingParentsFirst(t *testing.T) {
	t.Parallel()
	st := &fakeStore{}
	p, m := start(t, st, &fakeSpool{}, Options{})
	evs := newEvents(4, "rr")
	require.NoError(t, p.Replay(context.Background(), evs))
	assert.Equal(t, ids(evs), st.committedIDs())
	assert.Zero(t, st.resolveCount(), "parents are resolved inside the commit")
	assert.Equal(t, 4.0, counter(t, m, "committed"))
}

func TestReplayWithAMissingParentReportsItsIndices(t *testing.T) {
	t.Parallel()
	st := &fakeStore{insert: func(context.Context, int, []*audit.Event) (int64, error) {
		return 0, &audit.MissingParentError{Indices: []int{0}}
	}}
	sp := &fakeSpool{}
	p, _ := start(t, st, sp, Options{})
	err := p.Replay(context.Background(), newEvents(1, "rr"))
	var missing *MissingParentsError
	require.ErrorAs(t, err, &missing)
	assert.Equal(t, []int{0}, missing.Indices)
	assert.Empty(t, sp.spooledIDs(), "a missing parent is not an outage")
}

func TestReplayNeverSpoolsAgain(t *testing.T) {
	t.Parallel()
	sp := &fakeSpool{}
	st := &fakeStore{insert: func(context.Context, int, []*audit.Event) (int64, error) {
		return 0, &pgconn.PgError{Code: "08006"}
	}}
	p, _ := start(t, st, sp, Options{})
	err := p.Replay(context.Background(), newEvents(2, "rr"))
	require.ErrorIs(t, err, ErrDatabaseUnavailable)
	assert.Equal(t, failure.Unavailable, failure.ClassOf(err))
	assert.NotErrorIs(t, err, ErrUnavailable, "the spool is not known to be down")
	assert.NotContains(t, err.Error(), "spool", "a PostgreSQL-only outage is not reported as both stores down")
	assert.Contains(t, err.Error(), "SQLSTATE 08006", "the database's own error is kept")
	assert.Empty(t, sp.spooledIDs())
}

func TestReplayInTheSameCommitAsLiveSubmitsIsNotSpooledButTheLiveOnesAre(t *testing.T) {
	t.Parallel()
	g := newGate(t)
	st := &fakeStore{insert: g.hold(func(_ context.Context, call int, events []*audit.Event) (int64, error) {
		if call == 0 {
			return int64(len(events)), nil
		}
		return 0, fmt.Errorf("read: %w", syscall.ECONNRESET) // the database went away
	})}
	sp := &fakeSpool{}
	p, m := start(t, st, sp, Options{Writers: 1, MaxBatch: 100})

	first := submitAsync(p, newEvents(1, "first"))
	g.waitEntered(t)
	replayed := newEvents(2, "replayed")
	replay := replayAsync(p, replayed)
	live := newEvents(1, "live")
	liveCh := submitAsync(p, live)
	replayed2 := newEvents(3, "replayed-2")
	replay2 := replayAsync(p, replayed2)
	waitQueued(t, m, 6)
	g.Release()

	require.NoError(t, await(t, first).err)
	require.ErrorIs(t, await(t, replay).err, ErrDatabaseUnavailable)
	require.ErrorIs(t, await(t, replay2).err, ErrDatabaseUnavailable)
	r := await(t, liveCh)
	require.NoError(t, r.err)
	assert.Equal(t, Queued, r.o)
	assert.Equal(t, ids(live), sp.spooledIDs(), "only the live event is spooled")
	assert.Equal(t, 2, st.attemptCount(), "one commit for all three requests")
	assert.Equal(t, 1.0, counter(t, m, "queued"))
}

func TestFullQueueAnswersBusyWhenTheDeadlinePasses(t *testing.T) {
	t.Parallel()
	g := newGate(t)
	st := &fakeStore{insert: g.hold(nil)}
	p, m := start(t, st, nil, Options{Writers: 1, MaxBatch: 1, QueueSize: 2})

	first := submitAsync(p, newEvents(1, "first"))
	g.waitEntered(t)
	second := submitAsync(p, newEvents(1, "second"))
	waitQueued(t, m, 1) // two events in flight: the queue is full

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	busy := newEvents(3, "busy")
	o, err := p.Submit(ctx, busy)
	require.ErrorIs(t, err, ErrBusy)
	assert.Zero(t, o)
	assert.Equal(t, 3.0, counter(t, m, "busy"))

	g.Release()
	require.NoError(t, await(t, first).err)
	require.NoError(t, await(t, second).err)
	assert.NotContains(t, st.committedIDs(), busy[0].ID, "a busy request is not written")

	// With the queue free again, a request larger than the whole queue
	// still goes through: it takes every slot.
	big := newEvents(5, "big")
	o, err = p.Submit(context.Background(), big)
	require.NoError(t, err)
	assert.Equal(t, Committed, o)
	assert.Equal(t, ids(big), ids(st.committedBatches()[2]))
}

func TestStopDrainsEverythingQueuedAndRefusesLaterSubmits(t *testing.T) {
	t.Parallel()
	g := newGate(t)
	st := &fakeStore{insert: g.hold(nil)}
	p, m := start(t, st, nil, Options{Writers: 1, MaxBatch: 2})

	first := submitAsync(p, newEvents(1, "first"))
	g.waitEntered(t)
	var waiting []<-chan outcome
	want := 1
	for i := range 5 {
		waiting = append(waiting, submitAsync(p, newEvents(1+i, "queued")))
		want += 1 + i
	}
	waitQueued(t, m, want-1)

	closed := make(chan error, 1)
	go func() { closed <- p.Stop(context.Background()) }()
	require.Eventually(t, func() bool {
		p.mu.RLock()
		defer p.mu.RUnlock()
		return p.closed
	}, guard, time.Millisecond, "Stop never began")

	late := newEvents(1, "late")
	o, err := p.Submit(context.Background(), late)
	require.ErrorIs(t, err, ErrClosed)
	assert.Zero(t, o)
	require.ErrorIs(t, p.Replay(context.Background(), late), ErrClosed)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, p.Stop(ctx), context.Canceled, "Stop gives up when its context ends")

	g.Release()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(guard):
		t.Fatal("Stop never returned")
	}
	for _, ch := range append(waiting, first) {
		r := await(t, ch)
		require.NoError(t, r.err)
		assert.Equal(t, Committed, r.o)
	}
	assert.Len(t, st.committedIDs(), want, "every queued event was committed")
	assert.NotContains(t, st.committedIDs(), late[0].ID)
	assert.Zero(t, gaugeValue(t, m.QueueDepth))

	_, err = p.Submit(context.Background(), newEvents(1, "after"))
	require.ErrorIs(t, err, ErrClosed)
	require.NoError(t, p.Stop(context.Background()), "Stop is idempotent")
	require.ErrorIs(t, p.Start(context.Background()), ErrClosed, "a stopped pipeline does not start again")
}

// New has no side effects: until Start, no writer runs, so a submitted
// event would wait forever. Submit and Replay refuse instead, and nothing
// reaches the store; Start then opens the pipeline, once.
func TestNewStartsNothingAndSubmitWaitsForStart(t *testing.T) {
	t.Parallel()
	st := &fakeStore{}
	p := New(st, nil, Options{Writers: 2}, nil, slog.New(slog.DiscardHandler))

	_, err := p.Submit(context.Background(), newEvents(1, "early"))
	require.ErrorIs(t, err, ErrNotStarted)
	require.ErrorIs(t, p.Replay(context.Background(), newEvents(1, "early")), ErrNotStarted)
	assert.Equal(t, failure.Internal, failure.ClassOf(ErrNotStarted), "a wiring mistake, not an outage")

	require.NoError(t, p.Start(context.Background()))
	require.ErrorIs(t, p.Start(context.Background()), ErrStarted)
	o, err := p.Submit(context.Background(), newEvents(3, "late"))
	require.NoError(t, err)
	assert.Equal(t, Committed, o)
	assert.Len(t, st.committedIDs(), 3, "only what came after Start")
	require.NoError(t, p.Stop(context.Background()))
}

// A pipeline that never started stops at once: serve stops its group on a
// failed start, which may come before the pipeline's turn.
func TestStopWithoutStartReturnsAtOnce(t *testing.T) {
	t.Parallel()
	p := New(&fakeStore{}, nil, Options{Writers: 2}, nil, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // an ended context: Stop must not need to wait for anything
	require.NoError(t, p.Stop(ctx))
	_, err := p.Submit(context.Background(), newEvents(1, "x"))
	require.ErrorIs(t, err, ErrClosed)
}

func TestDuplicatesAreCountedApartFromNewEvents(t *testing.T) {
	t.Parallel()
	st := &fakeStore{insert: func(_ context.Context, _ int, events []*audit.Event) (int64, error) {
		return int64(len(events)) - 2, nil // two were already stored
	}}
	p, m := start(t, st, nil, Options{})
	o, err := p.Submit(context.Background(), newEvents(5, "rr"))
	require.NoError(t, err)
	assert.Equal(t, Committed, o, "a repeat is still a success")
	assert.Equal(t, 3.0, counter(t, m, "committed"))
	assert.Equal(t, 2.0, counter(t, m, "duplicate"))
}

func TestNewMetricsRegistersEveryMetricWithEveryResult(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	NewMetrics(reg)
	families, err := reg.Gather()
	require.NoError(t, err)
	byName := map[string]*dto.MetricFamily{}
	for _, f := range families {
		byName[f.GetName()] = f
	}
	require.Contains(t, byName, "datastorage_ingest_events_total")
	assert.Contains(t, byName, "datastorage_ingest_batch_size")
	assert.Contains(t, byName, "datastorage_ingest_commit_duration_seconds")
	assert.Contains(t, byName, "datastorage_ingest_queue_depth")
	var results []string
	for _, m := range byName["datastorage_ingest_events_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "result" {
				results = append(results, l.GetValue())
			}
		}
		assert.Zero(t, m.GetCounter().GetValue())
	}
	assert.ElementsMatch(t, []string{"committed", "duplicate", "queued", "rejected", "unavailable", "busy", "abandoned", "internal"}, results,
		"every result is exported from the start, at 0")
}

func TestNewAppliesDefaultOptions(t *testing.T) {
	t.Parallel()
	p, _ := start(t, &fakeStore{}, nil, Options{MaxBatch: 10, QueueSize: 5})
	assert.Equal(t, 2, p.opts.Writers)
	assert.Equal(t, 10, p.opts.MaxBatch)
	assert.Equal(t, 100, p.opts.QueueSize, "a queue smaller than one batch becomes ten batches")
	assert.Equal(t, 10*time.Second, p.opts.CommitTimeout)

	p, _ = start(t, &fakeStore{}, nil, Options{})
	assert.Equal(t, 2000, p.opts.MaxBatch)
	assert.Equal(t, 20000, p.opts.QueueSize)
}

func TestAnInternalErrorFailsTheCommitOnceWithoutSpoolingOrRetrying(t *testing.T) {
	t.Parallel()
	g := newGate(t)
	scan := errors.New("can't scan into dest[0]: cannot scan int4 into *string") // no class: internal
	st := &fakeStore{insert: g.hold(func(_ context.Context, call int, evs []*audit.Event) (int64, error) {
		if call == 0 {
			return int64(len(evs)), nil
		}
		return 0, scan
	})}
	sp := &fakeSpool{}
	p, m := start(t, st, sp, Options{Writers: 1, MaxBatch: 100})
	first := submitAsync(p, newEvents(1, "first"))
	g.waitEntered(t)
	a, b := submitAsync(p, newEvents(2, "a")), replayAsync(p, newEvents(3, "b"))
	waitQueued(t, m, 5)
	g.Release()
	require.NoError(t, await(t, first).err)
	for _, ch := range []<-chan outcome{a, b} {
		r := await(t, ch)
		require.ErrorIs(t, r.err, scan)
		assert.Equal(t, failure.Internal, failure.ClassOf(r.err))
		assert.Zero(t, r.o)
	}
	assert.Equal(t, 2, st.attemptCount(), "one attempt for the two requests: no split, no retry")
	assert.Empty(t, sp.spooledIDs(), "an internal error is not an outage")
	assert.Equal(t, 5.0, counter(t, m, "internal"))
}

func TestARefusedEventNamedByTheStoreRejectsItsRequestAndCommitsTheOthersAtOnce(t *testing.T) {
	t.Parallel()
	g := newGate(t)
	check := &pgconn.PgError{Code: "23514"}
	st := &fakeStore{insert: g.hold(func(_ context.Context, _ int, evs []*audit.Event) (int64, error) {
		for i, e := range evs {
			if e.CorrelationID == "bad" {
				return 0, &audit.RefusedEventError{Index: i, Err: check}
			}
		}
		return int64(len(evs)), nil
	})}
	p, m := start(t, st, nil, Options{Writers: 1, MaxBatch: 100})
	first := submitAsync(p, newEvents(1, "first"))
	g.waitEntered(t)
	before, after := newEvents(3, "good-1"), newEvents(2, "good-2")
	bad := append(newEvents(2, "ok"), newEvents(1, "bad")...)
	chBefore, chBad, chAfter := submitAsync(p, before), submitAsync(p, bad), submitAsync(p, after)
	waitQueued(t, m, 8)
	g.Release()
	require.NoError(t, await(t, first).err)
	require.NoError(t, await(t, chBefore).err)
	require.NoError(t, await(t, chAfter).err)
	var rejected *RejectedError
	require.ErrorAs(t, await(t, chBad).err, &rejected)
	assert.Equal(t, 2, rejected.Index, "the index is into the request, not the commit")
	assert.Equal(t, 3, st.attemptCount(), "the first commit, the refused one, the one without the bad request")
	assert.ElementsMatch(t, append(append(ids(st.committedBatches()[0]), ids(before)...), ids(after)...), st.committedIDs())
}

func TestAClientThatLeavesWhileWaitingForTheQueueIsNotCountedBusy(t *testing.T) {
	t.Parallel()
	g := newGate(t)
	st := &fakeStore{insert: g.hold(nil)}
	p, m := start(t, st, nil, Options{Writers: 1, MaxBatch: 1, QueueSize: 2})
	first := submitAsync(p, newEvents(1, "first"))
	g.waitEntered(t)
	second := submitAsync(p, newEvents(1, "second"))
	waitQueued(t, m, 1) // the queue is full

	ctx, cancel := context.WithCancel(context.Background())
	leaving := make(chan error, 1)
	go func() {
		_, err := p.Submit(ctx, newEvents(2, "leaving"))
		leaving <- err
	}()
	cancel() // the client disconnects
	select {
	case err := <-leaving:
		require.ErrorIs(t, err, ErrAbandoned)
		assert.NotErrorIs(t, err, ErrBusy)
	case <-time.After(guard):
		t.Fatal("Submit did not return after its client left")
	}
	assert.Equal(t, 2.0, counter(t, m, "abandoned"))
	assert.Zero(t, counter(t, m, "busy"), "a client that left is not a sign of a full queue")
	g.Release()
	require.NoError(t, await(t, first).err)
	require.NoError(t, await(t, second).err)
}

func TestARequestLargerThanMaxBatchGetsAProportionalCommitTimeout(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	budgets := map[int]time.Duration{}
	st := &fakeStore{insert: func(ctx context.Context, _ int, evs []*audit.Event) (int64, error) {
		deadline, ok := ctx.Deadline()
		require.True(t, ok)
		mu.Lock()
		budgets[len(evs)] = time.Until(deadline)
		mu.Unlock()
		return int64(len(evs)), nil
	}}
	p, _ := start(t, st, nil, Options{Writers: 1, MaxBatch: 10, CommitTimeout: time.Minute})
	_, err := p.Submit(context.Background(), newEvents(5, "small"))
	require.NoError(t, err)
	_, err = p.Submit(context.Background(), newEvents(35, "big")) // 4 × MaxBatch started
	require.NoError(t, err)
	assert.LessOrEqual(t, budgets[5], time.Minute)
	assert.Greater(t, budgets[35], 3*time.Minute, "35 events get 4 × CommitTimeout")
	assert.LessOrEqual(t, budgets[35], 4*time.Minute)
}

// A lone request finds its writer idle and is committed in the caller's
// goroutine, without a hand-over to the writer and back; what arrives
// while it commits queues, and the writer commits it all at once after.
func TestALoneRequestCommitsInItsOwnGoroutineAndTheRestStillGroup(t *testing.T) {
	t.Parallel()
	g := newGate(t)
	var byWriter []bool // per InsertEvents call: was it the writer's goroutine?
	var mu sync.Mutex
	st := &fakeStore{insert: g.hold(func(_ context.Context, _ int, events []*audit.Event) (int64, error) {
		buf := make([]byte, 64<<10)
		stack := string(buf[:runtime.Stack(buf, false)])
		mu.Lock()
		byWriter = append(byWriter, strings.Contains(stack, "(*Pipeline).writer"))
		mu.Unlock()
		return int64(len(events)), nil
	})}
	p, m := start(t, st, nil, Options{Writers: 1, MaxBatch: 100})

	lone := submitAsync(p, newEvents(1, "lone"))
	g.waitEntered(t)
	second := submitAsync(p, newEvents(2, "second"))
	third := submitAsync(p, newEvents(3, "third"))
	waitQueued(t, m, 5)
	g.Release()
	for _, ch := range []<-chan outcome{lone, second, third} {
		require.NoError(t, await(t, ch).err)
	}
	batches := st.committedBatches()
	require.Len(t, batches, 2, "the lone request, then the two that queued meanwhile in one commit")
	assert.Len(t, batches[0], 1)
	assert.Len(t, batches[1], 5)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []bool{false, true}, byWriter, "the lone request is committed by its caller, the queued ones by the writer")
}
