package spool_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/failure"
	"kubernaut.ai/datastorage/internal/spool"
	"kubernaut.ai/datastorage/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// newSpool returns a spool on a logical Redis database of the test's own.
func newSpool(t *testing.T, maxLen int64) (*spool.Spool, *redis.Client, *spool.Metrics) {
	t.Helper()
	addr, db := testenv.NewRedisDB(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr, DB: db})
	t.Cleanup(func() { _ = rdb.Close() })
	m := spool.NewMetrics(prometheus.NewRegistry())
	return spool.New(rdb, spool.Options{MaxLen: maxLen, Metrics: m}), rdb, m
}

// value reads a counter.
func value(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, c.Write(&m))
	return m.GetCounter().GetValue()
}

func newEvent(corr string) *audit.Event {
	now := audit.NewTime(time.Now())
	return &audit.Event{
		ID: uuid.New(), Version: "1.0", Type: "test.event", Timestamp: now, Date: audit.DateOf(now.Std()),
		Category: "gateway", Action: "act", Outcome: "success", CorrelationID: corr,
		Data: json.RawMessage(`{"n":1}`), ActorType: "service", ActorID: "gateway-service",
		ResourceType: "gateway", ResourceID: corr, Severity: "info", RetentionDays: 2555,
	}
}

func newEvents(n int) []*audit.Event {
	out := make([]*audit.Event, n)
	for i := range out {
		out[i] = newEvent(fmt.Sprintf("corr-%d", i%7))
	}
	return out
}

func xlen(t *testing.T, rdb *redis.Client, key string) int64 {
	t.Helper()
	n, err := rdb.XLen(context.Background(), key).Result()
	require.NoError(t, err)
	return n
}

func TestAppendWritesTheContractFormat(t *testing.T) {
	t.Parallel()
	sp, rdb, m := newSpool(t, 100)
	ctx := context.Background()
	ev := newEvent("rr-1")
	parent := uuid.New()
	ev.ParentID = &parent // unresolved: the database was down
	ev.Hash, ev.ChainSeq = "left over from a failed commit", 7
	require.NoError(t, sp.Append(ctx, []*audit.Event{ev}))

	msgs, err := rdb.XRange(ctx, "audit:dlq:events", "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	require.Len(t, msgs[0].Values, 1, "one field, message")
	var msg map[string]any
	require.NoError(t, json.Unmarshal([]byte(msgs[0].Values["message"].(string)), &msg))
	assert.Equal(t, "audit_event", msg["type"])
	assert.Equal(t, float64(0), msg["retry_count"])
	assert.Equal(t, "", msg["last_error"])
	_, err = time.Parse(time.RFC3339Nano, msg["timestamp"].(string))
	require.NoError(t, err)

	var back audit.Event
	payload, err := json.Marshal(msg["payload"])
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(payload, &back))
	assert.Equal(t, ev.ID, back.ID)
	assert.Equal(t, ev.Timestamp, back.Timestamp)
	assert.Equal(t, ev.Date, back.Date)
	assert.Equal(t, parent, *back.ParentID)
	assert.Nil(t, back.ParentDate)
	assert.JSONEq(t, `{"n":1}`, string(back.Data))
	assert.Empty(t, back.Hash, "chain members are computed by the replay's commit")
	assert.Zero(t, back.ChainSeq)
	assert.Equal(t, 1.0, value(t, m.Enqueued.WithLabelValues("events")))

	require.NoError(t, sp.AppendNotification(ctx, audit.Notification{NotificationID: "n-1", Channel: "slack"}))
	msgs, err = rdb.XRange(ctx, "audit:dlq:notifications", "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	require.NoError(t, json.Unmarshal([]byte(msgs[0].Values["message"].(string)), &msg))
	assert.Equal(t, "notification_audit", msg["type"])
	assert.Equal(t, "n-1", msg["payload"].(map[string]any)["notification_id"])
}

func TestAppendChecksMaxLenAtomically(t *testing.T) {
	t.Parallel()
	sp, rdb, m := newSpool(t, 10)
	ctx := context.Background()
	require.NoError(t, sp.Append(ctx, newEvents(4)))
	require.NoError(t, sp.Append(ctx, newEvents(4)))
	err := sp.Append(ctx, newEvents(3))
	require.ErrorIs(t, err, spool.ErrFull)
	assert.Contains(t, err.Error(), "8 of 10")
	assert.Equal(t, int64(8), xlen(t, rdb, "audit:dlq:events"), "a refused batch adds nothing")
	require.NoError(t, sp.Append(ctx, newEvents(2)))
	require.ErrorIs(t, sp.Append(ctx, newEvents(1)), spool.ErrFull)
	assert.Equal(t, int64(10), xlen(t, rdb, "audit:dlq:events"))
	assert.Equal(t, 4.0, value(t, m.Refused.WithLabelValues("events", "full")))

	// Many writers racing for the last places never overfill the stream.
	sp2, rdb2, _ := newSpool(t, 30)
	var ok atomic.Int64
	var wg sync.WaitGroup
	for range 40 {
		wg.Go(func() {
			err := sp2.Append(ctx, newEvents(3))
			if err == nil {
				ok.Add(1)
			} else {
				assert.ErrorIs(t, err, spool.ErrFull)
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int64(10), ok.Load())
	assert.Equal(t, int64(30), xlen(t, rdb2, "audit:dlq:events"))
}

func TestAppendFailsWhenRedisIsDown(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1, DialerRetries: 1})
	t.Cleanup(func() { _ = rdb.Close() })
	sp := spool.New(rdb, spool.Options{MaxLen: 10})
	require.NoError(t, r.Stop())
	err := sp.Append(context.Background(), newEvents(1))
	require.Error(t, err)
	assert.NotErrorIs(t, err, spool.ErrFull)
	require.Error(t, sp.Ping(context.Background()))
}

// memSink stands in for the pipeline and the database.
type memSink struct {
	mu       sync.Mutex
	stored   map[uuid.UUID]int
	notes    map[string]int
	poison   map[uuid.UUID]bool
	attempts map[uuid.UUID]int
	pages    []int
	down     atomic.Bool
}

func newMemSink() *memSink {
	return &memSink{stored: map[uuid.UUID]int{}, notes: map[string]int{}, poison: map[uuid.UUID]bool{}, attempts: map[uuid.UUID]int{}}
}

func (s *memSink) Replay(_ context.Context, events []*audit.Event) error {
	if s.down.Load() {
		return failure.Mark(errors.New("dial tcp: connection refused"), failure.Unavailable)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range events {
		if s.poison[e.ID] {
			if len(events) == 1 {
				s.attempts[e.ID]++ // tried alone: once per delivery
			}
			return &spool.DataError{Err: fmt.Errorf("event %s refused", e.ID)}
		}
	}
	s.pages = append(s.pages, len(events))
	for _, e := range events {
		s.stored[e.ID]++
	}
	return nil
}

func (s *memSink) ReplayNotification(_ context.Context, n audit.Notification) error {
	if s.down.Load() {
		return failure.Mark(errors.New("dial tcp: connection refused"), failure.Unavailable)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notes[n.NotificationID]++
	if s.notes[n.NotificationID] > 1 {
		return spool.ErrAlreadyStored
	}
	return nil
}

func (s *memSink) Ping(context.Context) error {
	if s.down.Load() {
		return failure.Mark(errors.New("dial tcp: connection refused"), failure.Unavailable)
	}
	return nil
}

func (s *memSink) count(id uuid.UUID) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stored[id]
}

func (s *memSink) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.stored)
}

func (s *memSink) setPoison(id uuid.UUID, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.poison[id] = on
}

func runWorker(t *testing.T, sp *spool.Spool, opts spool.WorkerOptions) (stop func()) {
	t.Helper()
	w, err := sp.NewWorker(opts)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Error("worker did not stop within 10 s")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func pendingCount(t *testing.T, rdb *redis.Client, stream string) int64 {
	t.Helper()
	p, err := rdb.XPending(context.Background(), stream, spool.Group).Result()
	if err != nil && strings.HasPrefix(err.Error(), "NOGROUP") {
		return 0
	}
	require.NoError(t, err)
	return p.Count
}

func TestWorkerReplaysInPagesAndDeletesWhatItCommitted(t *testing.T) {
	t.Parallel()
	sp, rdb, m := newSpool(t, 10_000)
	ctx := context.Background()
	events := newEvents(1234)
	for i := 0; i < len(events); i += 100 {
		require.NoError(t, sp.Append(ctx, events[i:min(i+100, len(events))]))
	}
	sink := newMemSink()
	runWorker(t, sp, spool.WorkerOptions{Events: sink, Database: sink, BatchSize: 500})
	eventually(t, "all replayed", func() bool { return sink.total() == len(events) })
	eventually(t, "stream empty", func() bool { return xlen(t, rdb, "audit:dlq:events") == 0 })
	for _, e := range events {
		require.Equal(t, 1, sink.count(e.ID))
	}
	sink.mu.Lock()
	for _, p := range sink.pages {
		assert.LessOrEqual(t, p, 500)
	}
	sink.mu.Unlock()
	assert.Zero(t, pendingCount(t, rdb, "audit:dlq:events"))
	eventually(t, "counted", func() bool {
		return value(t, m.Replayed.WithLabelValues("events", "committed")) == float64(len(events))
	})
}

func TestWorkerWaitsForTheDatabaseAndKeepsEntries(t *testing.T) {
	t.Parallel()
	sp, rdb, _ := newSpool(t, 10_000)
	ctx := context.Background()
	sink := newMemSink()
	sink.down.Store(true)
	runWorker(t, sp, spool.WorkerOptions{Events: sink, Database: sink, BatchSize: 50})
	events := newEvents(300)
	require.NoError(t, sp.Append(ctx, events))
	// The worker takes at most one page while the database is down; the
	// rest stays undelivered for whichever replica sees the database first.
	eventually(t, "one page held", func() bool { return pendingCount(t, rdb, "audit:dlq:events") == 50 })
	time.Sleep(300 * time.Millisecond)
	assert.Equal(t, int64(50), pendingCount(t, rdb, "audit:dlq:events"))
	assert.Equal(t, int64(300), xlen(t, rdb, "audit:dlq:events"), "nothing is acknowledged before its commit")
	assert.Zero(t, sink.total())

	sink.down.Store(false)
	eventually(t, "drained", func() bool { return xlen(t, rdb, "audit:dlq:events") == 0 })
	assert.Equal(t, 300, sink.total())
}

func TestWorkerClaimsEntriesOfADeadConsumer(t *testing.T) {
	t.Parallel()
	sp, rdb, _ := newSpool(t, 10_000)
	ctx := context.Background()
	events := newEvents(40)
	require.NoError(t, sp.Append(ctx, events))
	// A replica reads a page and dies before committing it.
	require.NoError(t, rdb.XGroupCreateMkStream(ctx, "audit:dlq:events", spool.Group, "0").Err())
	res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: spool.Group, Consumer: "dead-replica", Streams: []string{"audit:dlq:events", ">"}, Count: 25, Block: -1,
	}).Result()
	require.NoError(t, err)
	require.Len(t, res[0].Messages, 25)

	sink := newMemSink()
	runWorker(t, sp, spool.WorkerOptions{Events: sink, Database: sink, ClaimIdle: 300 * time.Millisecond})
	eventually(t, "the 15 undelivered ones replayed", func() bool { return sink.total() >= 15 })
	eventually(t, "the dead replica's 25 claimed and replayed", func() bool { return sink.total() == 40 })
	eventually(t, "stream empty", func() bool { return xlen(t, rdb, "audit:dlq:events") == 0 })
	assert.Zero(t, pendingCount(t, rdb, "audit:dlq:events"))
	for _, e := range events {
		assert.Equal(t, 1, sink.count(e.ID))
	}
}

func TestPoisonIsIsolatedDeadLetteredAndRedriven(t *testing.T) {
	t.Parallel()
	sp, rdb, m := newSpool(t, 10_000)
	ctx := context.Background()
	events := newEvents(200)
	poison := events[77]
	sink := newMemSink()
	sink.setPoison(poison.ID, true)
	require.NoError(t, sp.Append(ctx, events))
	// An entry that is not even JSON, and one of the wrong type.
	require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: "audit:dlq:events", Values: []any{"message", "{not json"}}).Err())
	require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: "audit:dlq:events", Values: []any{"message", `{"type":"something_else","payload":{}}`}}).Err())

	stop := runWorker(t, sp, spool.WorkerOptions{Events: sink, Database: sink, BatchSize: 500, MaxDeliveries: 3, ClaimIdle: 200 * time.Millisecond})
	eventually(t, "the good ones committed", func() bool { return sink.total() == 199 })
	eventually(t, "three dead letters", func() bool { return xlen(t, rdb, "audit:dead-letter:events") == 3 })
	eventually(t, "stream empty", func() bool { return xlen(t, rdb, "audit:dlq:events") == 0 })
	stop()
	sink.mu.Lock()
	assert.Equal(t, 3, sink.attempts[poison.ID], "isolated, then tried alone once per delivery, MaxDeliveries times")
	sink.mu.Unlock()
	assert.Zero(t, pendingCount(t, rdb, "audit:dlq:events"))
	assert.Equal(t, 3.0, value(t, m.DeadLettered.WithLabelValues("events")))
	assert.Equal(t, 2.0, value(t, m.Replayed.WithLabelValues("events", "failed")))

	letters, err := sp.DeadLetters(ctx, spool.Events, "", 10)
	require.NoError(t, err)
	require.Len(t, letters, 3)
	byRecord := map[string]spool.DeadLetter{}
	for _, d := range letters {
		byRecord[d.RecordID] = d
		assert.NotEmpty(t, d.LastError)
		assert.NotEmpty(t, d.SourceID)
	}
	d := byRecord[poison.ID.String()]
	require.NotEmpty(t, d.ID, "the poison event is among the dead letters: %+v", letters)
	assert.Contains(t, d.LastError, "refused")
	assert.Equal(t, 3, d.Message.RetryCount)
	assert.Equal(t, d.LastError, d.Message.LastError)
	assert.Contains(t, letters[0].LastError+letters[1].LastError+letters[2].LastError, "undecodable")

	stats, err := sp.Stats(ctx, spool.Events)
	require.NoError(t, err)
	assert.Equal(t, int64(3), stats[0].DeadLetters)
	assert.Equal(t, int64(0), stats[0].Depth)

	// After the fix, the operator sends the event back; it is replayed.
	sink.setPoison(poison.ID, false)
	n, err := sp.Redrive(ctx, spool.Events, []string{d.ID, "1-1"})
	require.NoError(t, err)
	assert.Equal(t, 1, n, "unknown ids are skipped")
	assert.Equal(t, int64(2), xlen(t, rdb, "audit:dead-letter:events"))
	msgs, err := rdb.XRange(ctx, "audit:dlq:events", "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	var back spool.Message
	require.NoError(t, json.Unmarshal([]byte(msgs[0].Values["message"].(string)), &back))
	assert.Zero(t, back.RetryCount, "a redriven entry gets its attempts afresh")

	stop = runWorker(t, sp, spool.WorkerOptions{Events: sink, Database: sink, MaxDeliveries: 3, ClaimIdle: 200 * time.Millisecond})
	eventually(t, "redriven event replayed", func() bool { return sink.count(poison.ID) == 1 })
	stop()

	// With no worker running, the rest goes back and waits in the stream.
	n, err = sp.RedriveAll(ctx, spool.Events)
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	assert.Equal(t, int64(0), xlen(t, rdb, "audit:dead-letter:events"))
	assert.Equal(t, int64(2), xlen(t, rdb, "audit:dlq:events"))
}

func TestNotificationsReplayAndRepeatsCountAsStored(t *testing.T) {
	t.Parallel()
	sp, rdb, m := newSpool(t, 100)
	ctx := context.Background()
	sink := newMemSink()
	for _, id := range []string{"n-1", "n-2", "n-1"} {
		require.NoError(t, sp.AppendNotification(ctx, audit.Notification{NotificationID: id, Channel: "email"}))
	}
	runWorker(t, sp, spool.WorkerOptions{Events: sink, Notifications: sink, Database: sink})
	eventually(t, "stream empty", func() bool { return xlen(t, rdb, "audit:dlq:notifications") == 0 })
	eventually(t, "counted", func() bool {
		return value(t, m.Replayed.WithLabelValues("notifications", "duplicate")) == 1
	})
	assert.Equal(t, 2.0, value(t, m.Replayed.WithLabelValues("notifications", "committed")))
	assert.Equal(t, 1.0, value(t, m.Replayed.WithLabelValues("notifications", "duplicate")))
}

func TestDrainReplaysOnceAndReports(t *testing.T) {
	t.Parallel()
	sp, rdb, _ := newSpool(t, 10_000)
	ctx := context.Background()
	events := newEvents(1100)
	require.NoError(t, sp.Append(ctx, events))
	sink := newMemSink()
	w, err := sp.NewWorker(spool.WorkerOptions{Events: sink, Notifications: sink, Database: sink, BatchSize: 500})
	require.NoError(t, err)
	var calls int
	res, err := w.Drain(ctx, spool.Events, func(r spool.DrainResult, total int64) {
		calls++
		assert.Equal(t, int64(1100), total)
	})
	require.NoError(t, err)
	assert.Equal(t, spool.DrainResult{Committed: 1100}, res)
	assert.Equal(t, 3, calls)
	assert.Equal(t, int64(0), xlen(t, rdb, "audit:dlq:events"))
	consumers, err := rdb.XInfoConsumers(ctx, "audit:dlq:events", spool.Group).Result()
	require.NoError(t, err)
	assert.Empty(t, consumers, "a drain that holds nothing leaves the group")

	// With the database down a drain stops with the error and keeps everything.
	require.NoError(t, sp.Append(ctx, newEvents(10)))
	sink.down.Store(true)
	_, err = w.Drain(ctx, spool.Events, nil)
	require.Error(t, err)
	assert.Equal(t, int64(10), xlen(t, rdb, "audit:dlq:events"))
}

func TestCollectorReportsDepthAgeAndDeadLetters(t *testing.T) {
	t.Parallel()
	sp, rdb, _ := newSpool(t, 100)
	ctx := context.Background()
	require.NoError(t, sp.Append(ctx, newEvents(7)))
	require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: "audit:dead-letter:events", Values: []any{"message", "x"}}).Err())
	time.Sleep(20 * time.Millisecond)
	reg := prometheus.NewRegistry()
	reg.MustRegister(spool.NewCollector(sp))
	families, err := reg.Gather()
	require.NoError(t, err)
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			key := f.GetName()
			for _, l := range m.GetLabel() {
				key += "/" + l.GetValue()
			}
			got[key] = m.GetGauge().GetValue()
		}
	}
	assert.Equal(t, 1.0, got["datastorage_spool_up"])
	assert.Equal(t, 7.0, got["datastorage_spool_depth/events"])
	assert.Equal(t, 0.0, got["datastorage_spool_depth/notifications"])
	assert.Equal(t, 1.0, got["datastorage_spool_dead_letters/events"])
	assert.Greater(t, got["datastorage_spool_oldest_age_seconds/events"], 0.0)
	assert.Less(t, got["datastorage_spool_oldest_age_seconds/events"], 10.0)
	assert.Equal(t, 0.0, got["datastorage_spool_oldest_age_seconds/notifications"])
}
