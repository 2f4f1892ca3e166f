package store

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/testenv"
)

// lookupGate holds every parent lookup (recentParentsSQL) at its start
// until the test lets it go, and counts those that finished.
type lookupGate struct {
	entered chan int
	release []chan struct{}

	mu       sync.Mutex
	started  int
	finished int
}

// gatedLookup marks the context of a held lookup for TraceQueryEnd.
type gatedLookup struct{}

func (g *lookupGate) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if data.SQL != recentParentsSQL {
		return ctx
	}
	g.mu.Lock()
	g.started++
	n := g.started
	g.mu.Unlock()
	g.entered <- n
	<-g.release[n-1]
	return context.WithValue(ctx, gatedLookup{}, true)
}

func (g *lookupGate) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryEndData) {
	if ctx.Value(gatedLookup{}) == nil {
		return
	}
	g.mu.Lock()
	g.finished++
	g.mu.Unlock()
}

func (g *lookupGate) finishedLookups() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.finished
}

// Issue 18 item 5: a lookup round handed to a goroutine outlives the request
// that queued it; shutdown closed the pool under it. Stop waits for it.
func TestStopWaitsForParentLookupsStillRunning(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	gate := &lookupGate{entered: make(chan int, 2), release: []chan struct{}{make(chan struct{}), make(chan struct{})}}
	st, err := Open(ctx, testenv.NewDatabase(t), Options{MaxConns: 4, Tracer: gate})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	_, err = st.Migrate(ctx, nil)
	require.NoError(t, err)
	_, err = st.EnsurePartitions(ctx, time.Now().AddDate(0, -1, 0), 2)
	require.NoError(t, err)
	orphan := func() []*audit.Event { return []*audit.Event{childOf(recentEvent(time.Now(), 30))} }

	// The first caller leads: its round runs on its own goroutine, held at
	// the start of its query.
	first := make(chan error, 1)
	go func() { first <- st.ResolveParents(ctx, orphan()) }()
	require.Equal(t, 1, <-gate.entered)

	// The second queues behind it.
	secondCtx, cancelSecond := context.WithCancel(ctx)
	second := make(chan error, 1)
	go func() { second <- st.ResolveParents(secondCtx, orphan()) }()
	deadline := time.Now().Add(time.Minute)
	for queued := 0; queued == 0; {
		st.parents.mu.Lock()
		queued = len(st.parents.queue)
		st.parents.mu.Unlock()
		require.True(t, time.Now().Before(deadline), "the second lookup never queued")
		time.Sleep(time.Millisecond)
	}

	// The first round ends; the second goes to a goroutine of the store's
	// and is held in turn. Its caller gives up: the round goes on.
	close(gate.release[0])
	var missing *audit.MissingParentError
	require.ErrorAs(t, <-first, &missing)
	require.Equal(t, 2, <-gate.entered)
	cancelSecond()
	require.ErrorIs(t, <-second, context.Canceled)

	ended, cancel := context.WithCancel(ctx)
	cancel()
	require.ErrorIs(t, st.Stop(ended), context.Canceled, "a lookup is still running, so the store has not stopped")
	require.Equal(t, 1, gate.finishedLookups())

	close(gate.release[1])
	require.NoError(t, st.Stop(ctx))
	require.Equal(t, 2, gate.finishedLookups(), "Stop returned only after the last lookup ended")
}
