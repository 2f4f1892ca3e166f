package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/client"
	"kubernaut.ai/datastorage/client/clientmetrics"
)

// batchServer is a fake batch endpoint. Each request is answered by the
// next function of script (the last one repeats); the default stores the
// batch and answers 201 like the server.
type batchServer struct {
	*fakeServer
	mu      sync.Mutex
	script  []func(w http.ResponseWriter, r *http.Request, events []map[string]any) bool
	stored  map[string]int // event_id → times stored
	batches []int          // sizes of the stored batches
	times   []time.Time    // arrival of every request
}

func newBatchServer(t *testing.T, script ...func(w http.ResponseWriter, r *http.Request, events []map[string]any) bool) *batchServer {
	s := &batchServer{script: script, stored: map[string]int{}}
	s.fakeServer = newFakeServer(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		var events []map[string]any
		if err := json.Unmarshal(body, &events); err != nil {
			t.Errorf("the batch body is not a JSON array: %v", err)
		}
		s.mu.Lock()
		s.times = append(s.times, time.Now())
		var step func(w http.ResponseWriter, r *http.Request, events []map[string]any) bool
		if n := len(s.times) - 1; len(s.script) > 0 {
			step = s.script[min(n, len(s.script)-1)]
		}
		s.mu.Unlock()
		if step != nil && step(w, r, events) {
			return
		}
		s.accept(w, events)
	})
	return s
}

// accept stores the events and answers 201.
func (s *batchServer) accept(w http.ResponseWriter, events []map[string]any) {
	s.mu.Lock()
	ids := make([]string, len(events))
	for i, e := range events {
		ids[i], _ = e["event_id"].(string)
		s.stored[ids[i]]++
	}
	s.batches = append(s.batches, len(events))
	s.mu.Unlock()
	b, _ := json.Marshal(map[string]any{"event_ids": ids, "message": fmt.Sprintf("%d audit events created successfully", len(ids))})
	writeJSON(w, 201, string(b))
}

func (s *batchServer) storedCount() (distinct, total int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.stored {
		distinct++
		total += n
	}
	return
}

func (s *batchServer) batchSizes() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.batches...)
}

func (s *batchServer) requestTimes() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.times...)
}

func unavailable(retryAfter string) func(w http.ResponseWriter, r *http.Request, _ []map[string]any) bool {
	return func(w http.ResponseWriter, r *http.Request, _ []map[string]any) bool {
		w.Header().Set("Retry-After", retryAfter)
		writeProblem(w, 503, `{"type":"https://kubernaut.ai/problems/service-unavailable","title":"Service Unavailable","status":503,"detail":"try later"}`)
		return true
	}
}

func ok(w http.ResponseWriter, r *http.Request, _ []map[string]any) bool { return false }

// testLogger collects the emitter's log lines.
type testLogger struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *testLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *testLogger) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *testLogger) logger() *slog.Logger { return slog.New(slog.NewJSONHandler(l, nil)) }

func emit(t *testing.T, em *client.Emitter, n int, correlation string) []uuid.UUID {
	t.Helper()
	ids := make([]uuid.UUID, n)
	for i := range n {
		ev := newEvent(correlation)
		ev.ID = client.NewEventID()
		ids[i] = ev.ID
		require.NoError(t, em.Emit(context.Background(), ev))
	}
	return ids
}

func closeEmitter(t *testing.T, em *client.Emitter) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, em.Close(ctx))
}

func TestEmitterBatchesBySize(t *testing.T) {
	t.Parallel()
	srv := newBatchServer(t)
	c, _ := newSpecClient(t, srv.URL)
	em := client.NewEmitter(c, client.EmitterOptions{BatchSize: 10, FlushInterval: time.Hour})
	emit(t, em, 35, "rr-size")
	require.NoError(t, em.Flush(context.Background()))
	assert.Equal(t, []int{10, 10, 10, 5}, srv.batchSizes())
	distinct, total := srv.storedCount()
	assert.Equal(t, 35, distinct)
	assert.Equal(t, 35, total)
	st := em.Stats()
	assert.Equal(t, client.EmitterStats{Queued: 35, Sent: 35}, st)
	closeEmitter(t, em)
	assert.ErrorIs(t, em.Emit(context.Background(), newEvent("late")), client.ErrClosed)
	assert.ErrorIs(t, em.Flush(context.Background()), client.ErrClosed)
	assert.EqualValues(t, 1, em.Stats().Dropped)
	require.NoError(t, em.Close(context.Background()), "a second Close is harmless")
}

func TestEmitterFlushesByInterval(t *testing.T) {
	t.Parallel()
	srv := newBatchServer(t)
	c, _ := newSpecClient(t, srv.URL)
	em := client.NewEmitter(c, client.EmitterOptions{BatchSize: 1000, FlushInterval: 50 * time.Millisecond})
	defer closeEmitter(t, em)
	start := time.Now()
	emit(t, em, 3, "rr-interval")
	require.Eventually(t, func() bool { d, _ := srv.storedCount(); return d == 3 }, 5*time.Second, 5*time.Millisecond)
	assert.Less(t, time.Since(start), 2*time.Second)
	assert.Equal(t, []int{3}, srv.batchSizes())
}

func TestEmitterRetriesHonouringRetryAfterWithTheSameIDs(t *testing.T) {
	t.Parallel()
	srv := newBatchServer(t, unavailable("1"), ok)
	c, _ := newSpecClient(t, srv.URL)
	em := client.NewEmitter(c, client.EmitterOptions{BatchSize: 5, FlushInterval: time.Hour, InitialBackoff: 10 * time.Millisecond})
	ids := emit(t, em, 5, "rr-retry")
	require.NoError(t, em.Flush(context.Background()))
	times := srv.requestTimes()
	require.Len(t, times, 2)
	assert.GreaterOrEqual(t, times[1].Sub(times[0]), time.Second, "Retry-After: 1 is waited out")

	reqs := srv.all()
	var first, second []map[string]any
	require.NoError(t, json.Unmarshal(reqs[0].body, &first))
	require.NoError(t, json.Unmarshal(reqs[1].body, &second))
	assert.Equal(t, first, second, "a retry sends the very same events, ids included")
	assert.Equal(t, ids[0].String(), second[0]["event_id"])
	st := em.Stats()
	assert.EqualValues(t, 5, st.Sent)
	assert.EqualValues(t, 5, st.Retried)
	closeEmitter(t, em)
}

func TestEmitterRetriesTransportErrors5xxAnd429(t *testing.T) {
	t.Parallel()
	hangUp := func(w http.ResponseWriter, r *http.Request, _ []map[string]any) bool {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return true
	}
	internal := func(w http.ResponseWriter, r *http.Request, _ []map[string]any) bool {
		writeProblem(w, 500, `{"type":"https://kubernaut.ai/problems/internal-error","title":"Internal Server Error","status":500}`)
		return true
	}
	limited := func(w http.ResponseWriter, r *http.Request, _ []map[string]any) bool {
		w.Header().Set("Retry-After", "1")
		writeProblem(w, 429, `{"type":"https://kubernaut.ai/problems/rate-limit-exceeded","title":"Rate Limit Exceeded","status":429}`)
		return true
	}
	srv := newBatchServer(t, hangUp, internal, limited, ok)
	log := &testLogger{}
	c, _ := newSpecClient(t, srv.URL)
	em := client.NewEmitter(c, client.EmitterOptions{BatchSize: 4, FlushInterval: time.Hour,
		InitialBackoff: 5 * time.Millisecond, Logger: log.logger()})
	emit(t, em, 4, "rr-flaky")
	require.NoError(t, em.Flush(context.Background()))
	assert.Len(t, srv.requestTimes(), 4)
	distinct, total := srv.storedCount()
	assert.Equal(t, 4, distinct)
	assert.Equal(t, 4, total)
	assert.EqualValues(t, 12, em.Stats().Retried)
	assert.Contains(t, log.String(), "retrying")
	closeEmitter(t, em)
}

func TestEmitterNeverRetries400AndKeepsTheGoodEvents(t *testing.T) {
	t.Parallel()
	refuse := func(w http.ResponseWriter, r *http.Request, events []map[string]any) bool {
		writeProblem(w, 400, `{"type":"https://kubernaut.ai/problems/validation-error","title":"Validation Error","status":400,
			"detail":"the events failed validation","field_errors":{"[1].event_category":"must be one of …","[3].version":"is required"}}`)
		return true
	}
	srv := newBatchServer(t, refuse, ok)
	log := &testLogger{}
	var failedIDs []uuid.UUID
	var failedErr error
	c, _ := newSpecClient(t, srv.URL)
	em := client.NewEmitter(c, client.EmitterOptions{BatchSize: 5, FlushInterval: time.Hour, Logger: log.logger(),
		OnFailure: func(events []client.EncodedEvent, err error) {
			for _, e := range events {
				failedIDs = append(failedIDs, e.ID)
			}
			failedErr = err
		}})
	ids := emit(t, em, 5, "rr-400")
	require.NoError(t, em.Flush(context.Background()))

	reqs := srv.all()
	require.Len(t, reqs, 2, "the refused events are not sent again; the good ones are")
	var resent []map[string]any
	require.NoError(t, json.Unmarshal(reqs[1].body, &resent))
	var resentIDs []string
	for _, e := range resent {
		resentIDs = append(resentIDs, e["event_id"].(string))
	}
	assert.Equal(t, []string{ids[0].String(), ids[2].String(), ids[4].String()}, resentIDs)
	assert.Equal(t, []uuid.UUID{ids[1], ids[3]}, failedIDs)
	assert.ErrorIs(t, failedErr, client.ErrValidation)

	st := em.Stats()
	assert.EqualValues(t, 3, st.Sent)
	assert.EqualValues(t, 2, st.Failed)
	assert.EqualValues(t, 0, st.Retried)
	assert.EqualValues(t, 0, st.Buffered)

	// One error line per refused event, with the server's field errors.
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(log.String()), "\n") {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m))
		if m["level"] == "ERROR" {
			lines = append(lines, m)
		}
	}
	require.Len(t, lines, 2)
	assert.Equal(t, ids[1].String(), lines[0]["event_id"])
	assert.Equal(t, map[string]any{"event_category": "must be one of …"}, lines[0]["field_errors"])
	assert.Equal(t, ids[3].String(), lines[1]["event_id"])
	assert.Equal(t, map[string]any{"version": "is required"}, lines[1]["field_errors"])
	assert.Equal(t, "req-fake", lines[0]["request_id"])
	closeEmitter(t, em)
}

func TestEmitterGivesUpABatchRefusedAsAWhole(t *testing.T) {
	t.Parallel()
	srv := newBatchServer(t, func(w http.ResponseWriter, r *http.Request, _ []map[string]any) bool {
		writeProblem(w, 403, `{"type":"about:blank","title":"Forbidden","status":403}`)
		return true
	})
	log := &testLogger{}
	c, _ := newSpecClient(t, srv.URL)
	em := client.NewEmitter(c, client.EmitterOptions{BatchSize: 3, FlushInterval: time.Hour, Logger: log.logger()})
	emit(t, em, 3, "rr-403")
	require.NoError(t, em.Flush(context.Background()))
	assert.Len(t, srv.requestTimes(), 1)
	assert.EqualValues(t, 3, em.Stats().Failed)
	assert.Contains(t, log.String(), `"status":403`)
	closeEmitter(t, em)
}

func TestEmitterSplitsBatchesTheServerFindsTooLarge(t *testing.T) {
	t.Parallel()
	srv := newBatchServer(t)
	srv.script = []func(w http.ResponseWriter, r *http.Request, events []map[string]any) bool{
		func(w http.ResponseWriter, r *http.Request, events []map[string]any) bool {
			if len(events) <= 4 {
				return false
			}
			writeProblem(w, 400, `{"type":"https://kubernaut.ai/problems/batch-size-exceeded","title":"Batch Size Exceeded","status":400,
				"field_errors":{"body":"at most 4 events per batch"}}`)
			return true
		},
	}
	c, _ := newSpecClient(t, srv.URL)
	em := client.NewEmitter(c, client.EmitterOptions{BatchSize: 16, FlushInterval: time.Hour})
	emit(t, em, 16, "rr-split")
	require.NoError(t, em.Flush(context.Background()))
	emit(t, em, 8, "rr-split")
	require.NoError(t, em.Flush(context.Background()))
	distinct, total := srv.storedCount()
	assert.Equal(t, 24, distinct)
	assert.Equal(t, 24, total)
	sizes := srv.batchSizes()
	assert.Equal(t, []int{4, 4, 4, 4, 4, 4}, sizes, "halved until accepted, and smaller from then on")
	assert.EqualValues(t, 0, em.Stats().Failed)
	closeEmitter(t, em)
}

func TestEmitterOverflowDropNeverBlocks(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := newBatchServer(t, func(w http.ResponseWriter, r *http.Request, _ []map[string]any) bool {
		<-release
		return false
	})
	c, _ := newSpecClient(t, srv.URL)
	em := client.NewEmitter(c, client.EmitterOptions{BatchSize: 2, BufferSize: 4, FlushInterval: time.Millisecond, Overflow: client.OverflowDrop})
	start := time.Now()
	var dropped int
	for range 100 {
		if err := em.Emit(context.Background(), newEvent("rr-drop")); err != nil {
			require.ErrorIs(t, err, client.ErrBufferFull)
			dropped++
		}
	}
	assert.Less(t, time.Since(start), time.Second, "Emit never waits under OverflowDrop")
	// At most the buffer, a batch being filled and a batch in flight are held.
	assert.GreaterOrEqual(t, dropped, 100-(4+2+2))
	st := em.Stats()
	assert.EqualValues(t, dropped, st.Dropped)
	assert.EqualValues(t, 100-dropped, st.Queued)
	close(release)
	closeEmitter(t, em)
	assert.EqualValues(t, 100-dropped, em.Stats().Sent)
}

func TestEmitterOverflowBlockWaitsAtMostTheBound(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := newBatchServer(t, func(w http.ResponseWriter, r *http.Request, _ []map[string]any) bool {
		<-release
		return false
	})
	c, _ := newSpecClient(t, srv.URL)
	em := client.NewEmitter(c, client.EmitterOptions{BatchSize: 1, BufferSize: 2, FlushInterval: time.Millisecond,
		MaxBlock: 50 * time.Millisecond})
	var err error
	for range 10 {
		start := time.Now()
		if err = em.Emit(context.Background(), newEvent("rr-block")); err != nil {
			elapsed := time.Since(start)
			assert.GreaterOrEqual(t, elapsed, 50*time.Millisecond)
			assert.Less(t, elapsed, time.Second)
			break
		}
	}
	require.ErrorIs(t, err, client.ErrBufferFull)

	// A caller's context ends the wait sooner.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.ErrorIs(t, em.Emit(ctx, newEvent("rr-block")), context.Canceled)
	close(release)
	closeEmitter(t, em)
}

func TestEmitterCloseDrainsEverything(t *testing.T) {
	t.Parallel()
	srv := newBatchServer(t)
	c, _ := newSpecClient(t, srv.URL)
	em := client.NewEmitter(c, client.EmitterOptions{BatchSize: 64, FlushInterval: time.Hour, Senders: 3})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 250 {
				assert.NoError(t, em.Emit(context.Background(), newEvent(fmt.Sprintf("rr-close-%d", g))))
			}
		}()
	}
	wg.Wait()
	closeEmitter(t, em)
	distinct, total := srv.storedCount()
	assert.Equal(t, 1000, distinct)
	assert.Equal(t, 1000, total)
	assert.Equal(t, client.EmitterStats{Queued: 1000, Sent: 1000}, em.Stats())
}

func TestEmitterCloseDeadlineGivesUpAndSaysSo(t *testing.T) {
	t.Parallel()
	srv := newBatchServer(t, unavailable("1"))
	c, _ := newSpecClient(t, srv.URL)
	var failed atomic.Int64
	em := client.NewEmitter(c, client.EmitterOptions{BatchSize: 10, FlushInterval: time.Millisecond,
		OnFailure: func(events []client.EncodedEvent, err error) { failed.Add(int64(len(events))) }})
	emit(t, em, 25, "rr-deadline")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := em.Close(ctx)
	assert.Less(t, time.Since(start), 2*time.Second)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "25 events not delivered")
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	st := em.Stats()
	assert.EqualValues(t, 25, st.Failed)
	assert.EqualValues(t, 0, st.Sent)
	assert.EqualValues(t, 0, st.Buffered)
	assert.EqualValues(t, 25, failed.Load())
}

func TestEmitterMaxAttempts(t *testing.T) {
	t.Parallel()
	srv := newBatchServer(t, func(w http.ResponseWriter, r *http.Request, _ []map[string]any) bool {
		writeProblem(w, 500, `{"type":"https://kubernaut.ai/problems/internal-error","title":"Internal Server Error","status":500}`)
		return true
	})
	c, _ := newSpecClient(t, srv.URL)
	em := client.NewEmitter(c, client.EmitterOptions{BatchSize: 2, FlushInterval: time.Hour, MaxAttempts: 3,
		InitialBackoff: time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	emit(t, em, 2, "rr-attempts")
	require.NoError(t, em.Flush(context.Background()))
	assert.Len(t, srv.requestTimes(), 3)
	st := em.Stats()
	assert.EqualValues(t, 2, st.Failed)
	assert.EqualValues(t, 4, st.Retried)
	closeEmitter(t, em)
}

func TestEmitterIsACollector(t *testing.T) {
	t.Parallel()
	srv := newBatchServer(t)
	c, _ := newSpecClient(t, srv.URL)
	em := client.NewEmitter(c, client.EmitterOptions{BatchSize: 10, FlushInterval: time.Hour})
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(clientmetrics.New(em, map[string]string{"emitter": "audit"})))
	emit(t, em, 7, "rr-metrics")
	require.NoError(t, em.Flush(context.Background()))
	closeEmitter(t, em)
	_ = em.Emit(context.Background(), newEvent("late"))

	families, err := reg.Gather()
	require.NoError(t, err)
	got := map[string]float64{}
	for _, mf := range families {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "emitter" {
					assert.Equal(t, "audit", lp.GetValue())
					continue
				}
				key += "{" + lp.GetName() + "=" + lp.GetValue() + "}"
			}
			switch {
			case m.GetCounter() != nil:
				got[key] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				got[key] = m.GetGauge().GetValue()
			}
		}
	}
	assert.Equal(t, map[string]float64{
		"datastorage_emitter_events_queued_total":                           7,
		"datastorage_emitter_events_sent_total":                             7,
		"datastorage_emitter_events_retried_total":                          0,
		"datastorage_emitter_events_dropped_total{reason=buffer_full}":      0,
		"datastorage_emitter_events_dropped_total{reason=canceled}":         0,
		"datastorage_emitter_events_dropped_total{reason=closed}":           1,
		"datastorage_emitter_events_dropped_total{reason=invalid}":          0,
		"datastorage_emitter_events_failed_total{reason=rejected}":          0,
		"datastorage_emitter_events_failed_total{reason=retries_exhausted}": 0,
		"datastorage_emitter_events_failed_total{reason=closed}":            0,
		"datastorage_emitter_buffered_events":                               0,
		"datastorage_emitter_buffer_capacity_events":                        10000,
	}, got)
}

func TestEmitterRejectsEventsItCannotEncode(t *testing.T) {
	t.Parallel()
	srv := newBatchServer(t)
	c, _ := newSpecClient(t, srv.URL)
	em := client.NewEmitter(c, client.EmitterOptions{})
	ev := newEvent("rr-enc")
	ev.Data = map[string]any{"f": func() {}}
	err := em.Emit(context.Background(), ev)
	require.Error(t, err)
	assert.False(t, errors.Is(err, client.ErrBufferFull))
	assert.EqualValues(t, 1, em.Stats().Dropped)
	closeEmitter(t, em)
}

// TestEmitterCloseIsNotHeldUpByWaitingEmits: Emit may wait for room up to
// MaxBlock, but Close's deadline still holds.
func TestEmitterCloseIsNotHeldUpByWaitingEmits(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := newBatchServer(t, func(w http.ResponseWriter, r *http.Request, _ []map[string]any) bool {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		return false
	})
	defer close(release)
	c, _ := newSpecClient(t, srv.URL)
	em := client.NewEmitter(c, client.EmitterOptions{BatchSize: 1, BufferSize: 1, FlushInterval: time.Millisecond,
		MaxBlock: time.Minute, Logger: quietLogger()})
	errs := make(chan error, 10)
	for range 10 {
		go func() { errs <- em.Emit(context.Background(), newEvent("rr-wait")) }()
	}
	time.Sleep(100 * time.Millisecond) // the buffer fills, later Emits wait
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_ = em.Close(ctx)
	assert.Less(t, time.Since(start), 2*time.Second, "Close keeps its deadline")
	closed := 0
	for range 10 {
		if errors.Is(<-errs, client.ErrClosed) {
			closed++
		}
	}
	assert.Positive(t, closed, "the waiting Emits were told the emitter closed")
	st := em.Stats()
	assert.EqualValues(t, 10, st.Queued+st.Dropped)
	assert.EqualValues(t, st.Queued, st.Sent+st.Failed, "every accepted event is accounted for")
}
