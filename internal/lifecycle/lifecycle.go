// Package lifecycle gives the server's background work one shape: every
// piece of it (the ingest pipeline's writers, the spool replay worker,
// partition upkeep, retention, the store's parent lookups) is a [Service]
// that starts and stops the same way, and a [Group] starts them in order and
// stops them in reverse, waiting for each, whether the server shuts down or
// fails half-way through its start.
//
// The shape is deliberately small. Start returns once the work runs (or has
// failed to start); Stop asks it to end and returns once it has, or when the
// caller's context ends first. A service owns its goroutines: when Stop
// returns nil, none of them is left, so the resources they use (the pool,
// Redis) can be closed after it.
//
// A [Loop] is the common case: one function that runs until its context is
// cancelled.
//
//	var g lifecycle.Group
//	defer g.Stop(context.WithoutCancel(ctx)) // also on a failed start
//	if err := g.Start(ctx, "retention", &lifecycle.Loop{Run: job.Run}); err != nil {
//		return err
//	}
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Service is background work with a lifecycle.
type Service interface {
	// Start starts the work and returns once it runs, or with an error when
	// it could not start (then nothing of it runs). ctx bounds the start
	// only, not the work: the work runs until Stop.
	Start(ctx context.Context) error
	// Stop asks the work to end and waits until it has. It returns ctx's
	// error if ctx ends first (the work is still asked to end). Stop may be
	// called more than once, and on a service that never started.
	Stop(ctx context.Context) error
}

// Stopper is the half of a [Service] that a Group needs for work that was
// already running when it was handed over (the store's parent lookups start
// with store.Open).
type Stopper interface {
	Stop(ctx context.Context) error
}

// Loop is a [Service] that runs Run in a goroutine of its own from Start
// until Stop. Run's context is cancelled by Stop; Run must return soon after.
type Loop struct {
	// Run is the work. It must return when its context is cancelled.
	Run func(ctx context.Context)

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// ErrStarted is returned by [Loop.Start] when the loop was started before:
// a Loop runs once.
var ErrStarted = errors.New("lifecycle: already started")

// Start starts Run; it fails only when the loop was started before. The
// work's context carries ctx's values but not its cancellation: only Stop
// ends it.
func (l *Loop) Start(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done != nil {
		return ErrStarted
	}
	// An ended ctx does not refuse the start: starting costs nothing, and the
	// caller (serve, on SIGTERM during its start) then stops the loop the
	// usual way.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	l.cancel, l.done = cancel, done
	go func() {
		defer close(done)
		l.Run(runCtx)
	}()
	return nil
}

// Stop cancels Run's context and waits for Run to return.
func (l *Loop) Stop(ctx context.Context) error {
	l.mu.Lock()
	cancel, done := l.cancel, l.done
	l.mu.Unlock()
	if done == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Group starts services one after the other and stops them in the reverse
// order, so that what feeds another service stops before it (register the
// consumer first). The zero value is ready to use; it is safe for concurrent
// use.
type Group struct {
	mu      sync.Mutex
	running []member
}

type member struct {
	name string
	s    Stopper
}

// Start starts s and, once it runs, adds it to the group. When s fails to
// start, the error names it and the group is unchanged: the caller stops
// the group, which stops what did start.
func (g *Group) Start(ctx context.Context, name string, s Service) error {
	if err := s.Start(ctx); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	g.Add(name, s)
	return nil
}

// Add hands the group work that is already running, to be stopped with the
// rest.
func (g *Group) Add(name string, s Stopper) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.running = append(g.running, member{name: name, s: s})
}

// Stop stops every service of the group, last added first, each waited for
// before the next is asked, and returns their errors joined. A service that
// does not stop before ctx ends is reported and the rest are still asked to
// stop (with the same, ended, ctx: they stop without being waited for). The
// group is empty afterwards, so Stop may be called again.
func (g *Group) Stop(ctx context.Context) error {
	g.mu.Lock()
	running := g.running
	g.running = nil
	g.mu.Unlock()
	var errs []error
	for i := len(running) - 1; i >= 0; i-- {
		if err := running[i].s.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", running[i].name, err))
		}
	}
	return errors.Join(errs...)
}
