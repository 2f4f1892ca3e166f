package ingest

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/failure"
)

// Outcome says where Submit put the events.
type Outcome int

const (
	// Committed means the events are committed to PostgreSQL.
	Committed Outcome = iota + 1
	// Queued means the events are durably in the spool and will be committed
	// exactly once, under the same ids, when PostgreSQL is back.
	Queued
)

// ErrUnavailable is returned by Submit when neither PostgreSQL nor the spool
// could take the events, wrapping the spool's error when it refused them.
// Nothing was accepted; the client should retry.
var ErrUnavailable = failure.Mark(errors.New("ingest: the database and the spool are both unavailable"), failure.Unavailable)

// ErrDatabaseUnavailable is returned (wrapping the database's error) by
// Replay when PostgreSQL could not take replayed events: they stay in the
// spool, which is not known to be down.
var ErrDatabaseUnavailable = failure.Mark(errors.New("ingest: the database is unavailable"), failure.Unavailable)

// ErrBusy is returned by Submit when the write queue stayed full until the
// request's deadline. Nothing was accepted.
var ErrBusy = failure.Mark(errors.New("ingest: write queue is full"), failure.Unavailable)

// ErrAbandoned is returned by Submit when the caller's context was canceled
// (the client went away) while the request waited for room in the write
// queue. Nothing was accepted; it is counted apart from ErrBusy, which means
// the queue stayed full for the whole deadline.
var ErrAbandoned = failure.Mark(errors.New("ingest: the caller left while waiting for the write queue"), failure.Unavailable)

// ErrClosed is returned by Submit and Replay after Stop has begun, and by
// Start after Stop. Nothing was accepted.
var ErrClosed = failure.Mark(errors.New("ingest: pipeline is shutting down"), failure.Unavailable)

// ErrNotStarted is returned by Submit and Replay before Start: nothing would
// commit the events, so nothing was accepted. It is a wiring mistake, not a
// passing condition, so it carries no failure class (internal).
var ErrNotStarted = errors.New("ingest: pipeline not started")

// ErrStarted is returned by Start on a pipeline started before: its
// writers run once.
var ErrStarted = errors.New("ingest: pipeline already started")

// MissingParentsError is returned by Submit when events name a parent_event_id
// that is neither stored nor earlier in the same request.
type MissingParentsError struct {
	// Indices are the positions of those events in the submitted slice.
	Indices []int
}

func (e *MissingParentsError) Error() string {
	return fmt.Sprintf("ingest: %d event(s) name a parent event that does not exist", len(e.Indices))
}

// FailureClass is failure.Data.
func (e *MissingParentsError) FailureClass() failure.Class { return failure.Data }

// RejectedError is returned by Submit and Replay when PostgreSQL refused the
// request's data (failure.Data) although it passed validation. Nothing of
// the request was written.
type RejectedError struct {
	// Index is the position in the request of the first event whose
	// presence made PostgreSQL refuse it; -1 when it could not be told.
	Index int
	Err   error
}

// ConflictsError is returned by Submit and Replay when events carry an
// event_id that is already stored (on any date) with other content, or that
// appears twice in the request with different content. Nothing of the
// request was written. A repeat with the same content is a retry: it
// succeeds and stores nothing new.
type ConflictsError struct {
	// Indices are the positions of those events in the submitted slice.
	Indices []int
}

func (e *ConflictsError) Error() string {
	return fmt.Sprintf("ingest: %d event(s) reuse an event_id stored with other content", len(e.Indices))
}

// FailureClass is failure.Data.
func (e *ConflictsError) FailureClass() failure.Class { return failure.Data }

func (e *RejectedError) Error() string {
	if e.Index >= 0 {
		return fmt.Sprintf("ingest: the database refused event %d of the request: %s", e.Index, e.Err.Error())
	}
	return "ingest: the database refused the events: " + e.Err.Error()
}

func (e *RejectedError) Unwrap() error { return e.Err }

// FailureClass is failure.Data.
func (e *RejectedError) FailureClass() failure.Class { return failure.Data }

// Store is the part of the PostgreSQL store the pipeline writes through. Its
// errors carry their class (failure.ClassOf): unavailable ones send events to
// the spool, data ones reject the request that holds the refused event
// (a *audit.RefusedEventError names it), internal ones fail the commit's
// requests without a retry.
type Store interface {
	InsertEvents(ctx context.Context, events []*audit.Event) (int64, error)
	ResolveParents(ctx context.Context, events []*audit.Event) error
}

// Spool durably queues events that PostgreSQL could not take.
type Spool interface {
	// Append stores all events or none, and returns only once they are durable.
	Append(ctx context.Context, events []*audit.Event) error
}

// Options tune the pipeline.
type Options struct {
	// Writers is the number of concurrent commits.
	Writers int
	// MaxBatch is the number of events a writer gathers into one commit.
	MaxBatch int
	// QueueSize bounds the events waiting for a writer.
	QueueSize int
	// SmallCommits bounds the small commits (fewer than smallRequest
	// events) in flight at once across the writers; 0 means Writers (no
	// bound beyond theirs). A small commit that would exceed it waits for
	// one in flight to end, and takes along what queued for its writer
	// meanwhile (see smallTurn). Large commits are not bounded by it.
	SmallCommits int
	// CommitTimeout bounds one commit of up to MaxBatch events, and one
	// spool append after it; a commit of more events (a client batch of up
	// to server.maxBatchSize) gets CommitTimeout per MaxBatch events started
	// (commitTimeout).
	CommitTimeout time.Duration
}

// Pipeline is the group-commit write pipeline. New builds it, Start starts
// its writers and Stop drains and ends them: the Start/Stop shape of every
// background service of the server (internal/lifecycle), so serve starts it
// in its lifecycle group and waits for it on shutdown and on a failed start.
type Pipeline struct {
	store   Store
	spool   Spool
	opts    Options
	log     *slog.Logger
	metrics *Metrics

	// queues has one queue per writer. Every correlation belongs to one
	// writer (route), so two commits of this process never wait for each
	// other's chain locks.
	queues []chan *pending
	// turns has one token per writer: whoever holds it commits for that
	// writer, its goroutine or a caller that found it idle (enqueue), so a
	// writer's commits never overlap.
	turns []chan struct{}
	seed  maphash.Seed
	slots *semaphore.Weighted
	// smallTurn holds a token per small commit in flight when
	// Options.SmallCommits bounds them below Writers; nil otherwise.
	// Under load every small commit costs PostgreSQL a share that does not
	// depend on its size (the statement's set-up, the commit record and its
	// flush, per-commit rows of the chains and rollups), and on a machine
	// where the service, PostgreSQL and the clients share few CPUs two small
	// commits at once only halve each other's size: one at a time, a
	// writer's commit carries everything that queued during the other's.
	// A lone request finds no commit in flight and never waits for it.
	smallTurn chan struct{}
	// claims are the correlations of the requests each writer has queued
	// or is committing (place).
	claims *claims

	// lastLog throttles the outage messages: during an outage every commit
	// fails the same way, and one line a second says all there is to say.
	lastLog atomic.Int64

	mu      sync.RWMutex // guards started and closed against sends with no writer or on a closed queue
	started bool
	closed  bool
	wg      sync.WaitGroup
}

// pending is one Submit (or Replay) call waiting for its commit.
type pending struct {
	events []*audit.Event
	done   chan result
	// replay marks events that came from the spool: on a database outage
	// they stay where they are instead of being spooled again.
	replay bool
}

type result struct {
	outcome Outcome
	err     error
}

// New builds a pipeline; it starts nothing (Start does). spool may be nil:
// then a database outage answers ErrUnavailable.
func New(st Store, spool Spool, opts Options, metrics *Metrics, log *slog.Logger) *Pipeline {
	if opts.Writers <= 0 {
		opts.Writers = 2
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 2000
	}
	if opts.QueueSize < opts.MaxBatch {
		opts.QueueSize = 10 * opts.MaxBatch
	}
	if opts.CommitTimeout <= 0 {
		opts.CommitTimeout = 10 * time.Second
	}
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	p := &Pipeline{
		store:   st,
		spool:   spool,
		opts:    opts,
		log:     log,
		metrics: metrics,
		queues:  make([]chan *pending, opts.Writers),
		turns:   make([]chan struct{}, opts.Writers),
		seed:    maphash.MakeSeed(),
		slots:   semaphore.NewWeighted(int64(opts.QueueSize)),
		claims:  newClaims(opts.Writers),
	}
	if opts.SmallCommits > 0 && opts.SmallCommits < opts.Writers {
		p.smallTurn = make(chan struct{}, opts.SmallCommits)
	}
	for i := range p.queues {
		// Every pending holds at least one event and the slots bound the
		// events, so a send on a queue never blocks.
		p.queues[i] = make(chan *pending, opts.QueueSize)
		p.turns[i] = make(chan struct{}, 1)
	}
	return p
}

// Start starts the writers; Submit and Replay are accepted from then until
// Stop. It returns ErrStarted when called twice and ErrClosed after Stop.
// ctx is not used by the writers, which run until Stop.
func (p *Pipeline) Start(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return ErrClosed
	case p.started:
		return ErrStarted
	}
	p.started = true
	p.wg.Add(len(p.queues))
	for i, q := range p.queues {
		go p.writer(q, p.turns[i])
	}
	return nil
}

// Submit writes events (already validated, with their ids) and reports where
// they went: Committed when all are committed, Queued when all are spooled.
// A request is one transaction whatever correlations it holds (route), so it
// is stored whole or not at all. Once the events are queued for a writer,
// Submit waits for the outcome even if ctx ends, so that an answer is never
// lost for an event that was written.
func (p *Pipeline) Submit(ctx context.Context, events []*audit.Event) (Outcome, error) {
	if len(events) == 0 {
		return Committed, nil
	}
	// Parents are checked before queueing so a missing parent is the client's
	// 400, not a failed commit. If PostgreSQL is down the check is left to the
	// replay, which resolves parents again before its commit.
	if err := p.store.ResolveParents(ctx, events); err != nil {
		var missing *audit.MissingParentError
		if errors.As(err, &missing) {
			return 0, &MissingParentsError{Indices: missing.Indices}
		}
		if failure.ClassOf(err) != failure.Unavailable {
			return 0, fmt.Errorf("ingest: resolve parents: %w", err)
		}
	}
	return p.enqueue(ctx, events, false)
}

// Replay commits events taken from the spool through the same group commits
// as live writes (so they get the same treatment, hash chains included). It
// never spools: while PostgreSQL is unavailable it returns an error wrapping
// ErrDatabaseUnavailable and the database's error, and the caller leaves the
// entries in the spool. Parents are resolved inside the commit; a missing one
// yields *MissingParentsError, a refused event *RejectedError; any other
// error is internal (failure.ClassOf).
func (p *Pipeline) Replay(ctx context.Context, events []*audit.Event) error {
	if len(events) == 0 {
		return nil
	}
	_, err := p.enqueue(ctx, events, true)
	return err
}

func (p *Pipeline) enqueue(ctx context.Context, events []*audit.Event, replay bool) (Outcome, error) {
	weight := int64(min(len(events), p.opts.QueueSize))
	if err := p.slots.Acquire(ctx, weight); err != nil {
		if errors.Is(err, context.Canceled) {
			// The client went away: not a sign of a full queue.
			p.metrics.Events.WithLabelValues(resultAbandoned).Add(float64(len(events)))
			return 0, ErrAbandoned
		}
		p.metrics.Events.WithLabelValues(resultBusy).Add(float64(len(events)))
		return 0, ErrBusy
	}
	defer p.slots.Release(weight)
	done := make(chan result, 1)
	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		return 0, ErrClosed
	}
	if !p.started {
		p.mu.RUnlock()
		return 0, ErrNotStarted
	}
	k, c := p.place(events)
	defer p.claims.release(c)
	pd := &pending{events: events, done: done, replay: replay}
	small := len(events) < smallRequest && p.smallTurn != nil
	if p.takeIdle(k, small) {
		// Counted like a writer, so that Stop waits for this commit too;
		// Stop cannot be waiting yet, as it sets closed before it waits.
		p.wg.Add(1)
		p.mu.RUnlock()
		p.commit([]*pending{pd}, pd.events)
		if small {
			<-p.smallTurn
		}
		<-p.turns[k]
		p.wg.Done()
		r := <-done
		return r.outcome, r.err
	}
	p.metrics.QueueDepth.Add(float64(len(events)))
	p.queues[k] <- pd
	p.mu.RUnlock()
	r := <-done
	return r.outcome, r.err
}

// takeIdle takes writer k's turn when the writer is idle and nothing waits
// in its queue, and reports whether it did: the caller then commits its
// request in its own goroutine and gives the turn back. A lone request (a
// quiet cluster) so costs no hand-over to the writer's goroutine and back,
// two wake-ups that on a busy machine each wait for a CPU. What arrives
// meanwhile queues, and the writer commits it all at once when the turn is
// free: under load, where the writer is rarely idle, group commit is
// unchanged. With small set the request also needs a small commit's turn
// (smallTurn) at once: when the small commits in flight are at their
// bound it queues, to be committed with what else queues until one of
// them ends.
func (p *Pipeline) takeIdle(k int, small bool) bool {
	select {
	case p.turns[k] <- struct{}{}:
	default:
		return false
	}
	if len(p.queues[k]) > 0 {
		<-p.turns[k]
		return false
	}
	if small {
		select {
		case p.smallTurn <- struct{}{}:
		default:
			<-p.turns[k]
			return false
		}
	}
	return true
}

// route returns the writer that commits a request: the one that owns most
// of its events' correlations. Every correlation belongs to one writer, so
// that requests of one correlation are committed by one writer and
// concurrent commits rarely queue on each other's chain locks. A request
// whose correlations belong to several writers is nevertheless committed
// whole, by one writer, in one transaction: CONTRACT §3 makes a batch atomic,
// and PostgreSQL offers no atomic commit across connections short of
// two-phase commit. Its events of other writers' correlations can then meet
// a commit of theirs on a chain lock and wait for it (the advisory locks are
// taken in one order, so they wait, never deadlock); see doc.go for what
// that costs.
func (p *Pipeline) route(events []*audit.Event) int {
	w := len(p.queues)
	if w == 1 {
		return 0
	}
	writerOf := func(e *audit.Event) int { return int(maphash.String(p.seed, e.CorrelationID) % uint64(w)) }
	first := writerOf(events[0])
	if !slices.ContainsFunc(events[1:], func(e *audit.Event) bool { return writerOf(e) != first }) {
		return first
	}
	counts := make([]int, w)
	for _, e := range events {
		counts[writerOf(e)]++
	}
	best := first
	for k, n := range counts {
		if n > counts[best] {
			best = k
		}
	}
	return best
}

// Stop stops accepting events, lets the writers commit (or spool) everything
// already queued, and returns when they are done, or ctx's error (wrapped)
// when ctx ends first. It may be called more than once, and on a pipeline
// that never started.
func (p *Pipeline) Stop(ctx context.Context) error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		for _, q := range p.queues {
			close(q)
		}
	}
	started := p.started
	p.mu.Unlock()
	if !started {
		return nil // no writer to wait for, and nothing was ever queued
	}
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("ingest: stop: %w", ctx.Err())
	}
}

// writer gathers whatever is queued into one batch and commits it, until the
// queue is closed and empty.
func (p *Pipeline) writer(queue chan *pending, turn chan struct{}) {
	defer p.wg.Done()
	var batch []*pending
	var events []*audit.Event
	for first := range queue {
		turn <- struct{}{} // wait for a caller's commit (commitIdle) to end
		batch = append(batch[:0], first)
		n := p.gather(queue, &batch, len(first.events))
		small := n < smallRequest && p.smallTurn != nil
		if small {
			// Wait for a small commit in flight to end, then take along
			// what queued meanwhile.
			p.smallTurn <- struct{}{}
			n = p.gather(queue, &batch, n)
		}
		p.metrics.QueueDepth.Sub(float64(n))
		events = events[:0]
		for _, pd := range batch {
			events = append(events, pd.events...)
		}
		p.commit(batch, events)
		if small {
			<-p.smallTurn
		}
		<-turn
		clear(batch) // drop references so finished requests can be collected
		clear(events)
	}
}

// gather appends to batch what is queued, without waiting, until it holds
// MaxBatch events or more, and returns the events it holds (n before).
func (p *Pipeline) gather(queue chan *pending, batch *[]*pending, n int) int {
	for n < p.opts.MaxBatch {
		select {
		case next, ok := <-queue:
			if !ok {
				return n
			}
			*batch = append(*batch, next)
			n += len(next.events)
		default:
			return n
		}
	}
	return n
}

// commit writes the events of batch (events is their concatenation) and
// answers every waiter. What a failure means is failure.ClassOf's rule:
// unavailable spools the batch (fallback), data rejects the request that
// holds the refused event and commits the others, internal fails every
// request of the commit at once (no retry: the same commit would fail the
// same way, and nothing says which request is at fault).
func (p *Pipeline) commit(batch []*pending, events []*audit.Event) {
	ctx, cancel := context.WithTimeout(context.Background(), p.commitTimeout(len(events)))
	start := time.Now()
	inserted, err := p.store.InsertEvents(ctx, events)
	cancel()
	p.metrics.CommitSeconds.Observe(time.Since(start).Seconds())
	switch failure.ClassOf(err) {
	case failure.None:
		p.metrics.BatchSize.Observe(float64(len(events)))
		committedAt := time.Now()
		for _, pd := range batch {
			p.metrics.observeLag(pd.events, pd.replay, committedAt)
		}
		p.metrics.committed.Add(float64(inserted))
		if dup := int64(len(events)) - inserted; dup > 0 {
			p.metrics.duplicate.Add(float64(dup))
		}
		finish(batch, Committed, nil)
	case failure.Unavailable:
		p.fallback(batch, events, err)
	case failure.Data:
		p.refused(batch, events, err)
	default:
		p.metrics.Events.WithLabelValues(resultInternal).Add(float64(len(events)))
		p.throttled(slog.LevelError, "commit failed with an internal error; its requests are answered 500, nothing was written",
			"requests", len(batch), "events", len(events), "error", err)
		finish(batch, 0, fmt.Errorf("ingest: commit: %w", err))
	}
}

// refused handles a commit the database refused for its data. When the
// store named the refused event, its request is rejected and the others are
// committed without it; otherwise the batch is split in halves until the
// refused request is isolated. Either way one bad request never fails its
// neighbours.
func (p *Pipeline) refused(batch []*pending, events []*audit.Event, err error) {
	var at *audit.RefusedEventError
	if len(batch) > 1 && errors.As(err, &at) && at.Index >= 0 {
		offset := 0
		for k, pd := range batch {
			if at.Index < offset+len(pd.events) {
				p.reject(pd, &audit.RefusedEventError{Index: at.Index - offset, Err: at.Err})
				rest := append(slices.Clip(batch[:k]), batch[k+1:]...)
				if len(rest) > 0 {
					p.commit(rest, flatten(rest))
				}
				return
			}
			offset += len(pd.events)
		}
	}
	if len(batch) > 1 {
		half := len(batch) / 2
		p.commit(batch[:half], flatten(batch[:half]))
		p.commit(batch[half:], flatten(batch[half:]))
		return
	}
	p.reject(batch[0], err)
}

// reject answers one request the database refused.
func (p *Pipeline) reject(pd *pending, err error) {
	p.metrics.Events.WithLabelValues(resultRejected).Add(float64(len(pd.events)))
	var missing *audit.MissingParentError
	if errors.As(err, &missing) {
		finish([]*pending{pd}, 0, &MissingParentsError{Indices: missing.Indices})
		return
	}
	var conflict *audit.ConflictError
	if errors.As(err, &conflict) {
		finish([]*pending{pd}, 0, &ConflictsError{Indices: conflict.Indices})
		return
	}
	index := -1
	var at *audit.RefusedEventError
	if errors.As(err, &at) {
		index = at.Index
	}
	p.log.Warn("database refused a validated request", "events", len(pd.events), "index", index, "error", err)
	finish([]*pending{pd}, 0, &RejectedError{Index: index, Err: err})
}

// fallback spools a batch PostgreSQL could not take. Replayed events are
// already in the spool: they are answered ErrDatabaseUnavailable and stay
// there.
func (p *Pipeline) fallback(batch []*pending, events []*audit.Event, cause error) {
	if slices.ContainsFunc(batch, func(pd *pending) bool { return pd.replay }) {
		var live []*pending
		for _, pd := range batch {
			if pd.replay {
				finish([]*pending{pd}, 0, fmt.Errorf("%w: %w", ErrDatabaseUnavailable, cause))
			} else {
				live = append(live, pd)
			}
		}
		if len(live) == 0 {
			return
		}
		batch, events = live, flatten(live)
	}
	if p.spool == nil {
		p.throttled(slog.LevelError, "database unavailable and no spool configured", "events", len(events), "error", cause)
		p.metrics.Events.WithLabelValues(resultUnavailable).Add(float64(len(events)))
		finish(batch, 0, ErrUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.commitTimeout(len(events)))
	defer cancel()
	if err := p.spool.Append(ctx, events); err != nil {
		// The spool says why it refused (down, or full at redis.dlqMaxLen).
		p.throttled(slog.LevelError, "database unavailable and the spool refused the events", "events", len(events), "db_error", cause, "spool_error", err)
		p.metrics.Events.WithLabelValues(resultUnavailable).Add(float64(len(events)))
		// The spool's reason travels with ErrUnavailable so that the answer
		// can name it (full, unreplicated, down).
		finish(batch, 0, fmt.Errorf("%w: %w", ErrUnavailable, err))
		return
	}
	p.throttled(slog.LevelWarn, "database unavailable, events spooled", "events", len(events), "error", cause)
	p.metrics.Events.WithLabelValues(resultQueued).Add(float64(len(events)))
	finish(batch, Queued, nil)
}

// commitTimeout bounds a commit (or spool append) of n events: CommitTimeout
// per MaxBatch events started. A 10,000-event client batch is one
// transaction and cannot be split to fit a bound sized for group commits;
// held to it, it timed out on a busy machine and answered 503 every time
// the client retried.
func (p *Pipeline) commitTimeout(n int) time.Duration {
	return p.opts.CommitTimeout * time.Duration(max(1, (n+p.opts.MaxBatch-1)/p.opts.MaxBatch))
}

func finish(batch []*pending, o Outcome, err error) {
	for _, pd := range batch {
		pd.done <- result{outcome: o, err: err}
	}
}

func flatten(batch []*pending) []*audit.Event {
	var out []*audit.Event
	for _, pd := range batch {
		out = append(out, pd.events...)
	}
	return out
}

// throttled logs msg at most once a second; the metrics count every event.
func (p *Pipeline) throttled(level slog.Level, msg string, args ...any) {
	now := time.Now().UnixNano()
	last := p.lastLog.Load()
	if now-last < int64(time.Second) || !p.lastLog.CompareAndSwap(last, now) {
		return
	}
	p.log.Log(context.Background(), level, msg, args...)
}
