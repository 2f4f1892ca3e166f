package spool_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/spool"
)

// buggySink fails every page with an error that carries no class (an
// internal error) while broken, and counts the attempts of each page.
type buggySink struct {
	*memSink
	broken atomic.Bool
	mu     sync.Mutex
	tries  map[uuid.UUID]int // by the page's first event
}

func (s *buggySink) Replay(ctx context.Context, events []*audit.Event) error {
	s.mu.Lock()
	s.tries[events[0].ID]++
	s.mu.Unlock()
	if s.broken.Load() {
		return errors.New("can't scan into dest[2]: cannot scan int4 into *string")
	}
	return s.memSink.Replay(ctx, events)
}

func (s *buggySink) triesOf(id uuid.UUID) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tries[id]
}

// An internal error parks the page: it stays pending (nothing lost, nothing
// dead-lettered), is not retried in a loop, the worker goes on with other
// pages, and the page commits once the cause is gone (issue 18, item 1).
func TestAnInternalErrorParksThePageWithoutLoopingOrDeadLettering(t *testing.T) {
	t.Parallel()
	sp, rdb, m := newSpool(t, 10_000)
	ctx := context.Background()
	sink := &buggySink{memSink: newMemSink(), tries: map[uuid.UUID]int{}}
	sink.broken.Store(true)
	const claimIdle = 3 * time.Second
	runWorker(t, sp, spool.WorkerOptions{Events: sink, Database: sink, BatchSize: 20, ClaimIdle: claimIdle, MaxDeliveries: 1})
	started := time.Now()

	first := newEvents(20)
	require.NoError(t, sp.Append(ctx, first))
	eventually(t, "the first page parked", func() bool { return value(t, m.Parked.WithLabelValues("events")) == 20 })
	second := newEvents(20)
	require.NoError(t, sp.Append(ctx, second))
	eventually(t, "the worker went on to the next page", func() bool { return sink.triesOf(second[0].ID) > 0 })
	eventually(t, "the second page parked", func() bool { return value(t, m.Parked.WithLabelValues("events")) == 40 })
	if time.Since(started) < claimIdle {
		// Before the claim timeout a parked page is not tried again: no loop.
		assert.Equal(t, 1, sink.triesOf(first[0].ID), "a parked page is not retried before the claim timeout")
	}
	assert.Equal(t, int64(40), pendingCount(t, rdb, "audit:dlq:events"), "parked pages stay pending")
	assert.Equal(t, int64(40), xlen(t, rdb, "audit:dlq:events"))
	assert.Zero(t, xlen(t, rdb, "audit:dead-letter:events"), "an internal error never dead-letters, even past maxDeliveries")
	assert.Zero(t, value(t, m.Replayed.WithLabelValues("events", "failed")), "an internal error is not a data error")

	sink.broken.Store(false) // the bug is fixed
	eventually(t, "the parked pages committed after a claim", func() bool { return xlen(t, rdb, "audit:dlq:events") == 0 })
	for _, e := range append(first, second...) {
		assert.Equal(t, 1, sink.count(e.ID))
	}
	assert.Zero(t, xlen(t, rdb, "audit:dead-letter:events"))
}
