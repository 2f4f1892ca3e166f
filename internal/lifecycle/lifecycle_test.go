package lifecycle_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/lifecycle"
)

// recorder notes the order in which services start and stop.
type recorder struct {
	mu  sync.Mutex
	log []string
}

func (r *recorder) note(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log = append(r.log, s)
}

func (r *recorder) events() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.log...)
}

type fakeService struct {
	name     string
	rec      *recorder
	startErr error
	stopErr  error
}

func (f *fakeService) Start(context.Context) error {
	if f.startErr != nil {
		return f.startErr
	}
	f.rec.note("start " + f.name)
	return nil
}

func (f *fakeService) Stop(context.Context) error {
	f.rec.note("stop " + f.name)
	return f.stopErr
}

func TestGroupStopsInReverseOrderOfStart(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	var g lifecycle.Group
	ctx := context.Background()
	require.NoError(t, g.Start(ctx, "a", &fakeService{name: "a", rec: rec}))
	g.Add("b", &fakeService{name: "b", rec: rec})
	require.NoError(t, g.Start(ctx, "c", &fakeService{name: "c", rec: rec}))
	require.NoError(t, g.Stop(ctx))
	assert.Equal(t, []string{"start a", "start c", "stop c", "stop b", "stop a"}, rec.events())

	require.NoError(t, g.Stop(ctx), "a stopped group stops nothing twice")
	assert.Len(t, rec.events(), 5)
}

func TestGroupAfterAFailedStartStopsWhatStarted(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	var g lifecycle.Group
	ctx := context.Background()
	require.NoError(t, g.Start(ctx, "a", &fakeService{name: "a", rec: rec}))
	refused := errors.New("refused")
	err := g.Start(ctx, "b", &fakeService{name: "b", rec: rec, startErr: refused})
	require.ErrorIs(t, err, refused)
	assert.ErrorContains(t, err, "start b")

	require.NoError(t, g.Stop(ctx))
	assert.Equal(t, []string{"start a", "stop a"}, rec.events(), "the service that failed to start is not stopped")
}

func TestGroupStopsEveryServiceAndJoinsTheirErrors(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	var g lifecycle.Group
	ctx := context.Background()
	stuck := errors.New("stuck")
	g.Add("a", &fakeService{name: "a", rec: rec})
	g.Add("b", &fakeService{name: "b", rec: rec, stopErr: stuck})
	err := g.Stop(ctx)
	require.ErrorIs(t, err, stuck)
	assert.ErrorContains(t, err, "stop b")
	assert.Equal(t, []string{"stop b", "stop a"}, rec.events(), "a failing stop does not spare the others")
}

func TestLoopStopWaitsForRunToReturn(t *testing.T) {
	t.Parallel()
	entered := make(chan struct{})
	release := make(chan struct{})
	var returned bool
	l := &lifecycle.Loop{Run: func(ctx context.Context) {
		close(entered)
		<-ctx.Done()
		<-release // cleanup that takes a while
		returned = true
	}}
	startCtx, cancelStart := context.WithCancel(context.Background())
	require.NoError(t, l.Start(startCtx))
	cancelStart() // the start's context does not bound the work
	<-entered

	ended, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, l.Stop(ended), context.Canceled, "Run has not returned yet, so Stop cannot say it has stopped")

	close(release)
	require.NoError(t, l.Stop(context.Background()))
	assert.True(t, returned, "Stop returns only after Run")
	assert.ErrorIs(t, l.Start(context.Background()), lifecycle.ErrStarted)
}

func TestLoopNeverStartedStopsAtOnce(t *testing.T) {
	t.Parallel()
	l := &lifecycle.Loop{Run: func(context.Context) { t.Error("Run must not be called") }}
	require.NoError(t, l.Stop(context.Background()))
}

// A SIGTERM during serve's start must lead to the usual shutdown, not to a
// refused start: a loop started with an ended context runs until Stop.
func TestLoopStartedWithAnEndedContextRunsUntilStop(t *testing.T) {
	t.Parallel()
	ran := make(chan struct{})
	l := &lifecycle.Loop{Run: func(ctx context.Context) {
		close(ran)
		<-ctx.Done()
	}}
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	require.NoError(t, l.Start(ended))
	<-ran
	require.NoError(t, l.Stop(context.Background()))
}
