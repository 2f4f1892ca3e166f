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

	"github.com/google/uuid"
	"golang.org/x/sync/semaphore"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/store"
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
// could take the events. Nothing was accepted; the client should retry.
var ErrUnavailable = errors.New("ingest: the database and the spool are both unavailable")

// ErrBusy is returned by Submit when the write queue stayed full until the
// request's deadline. Nothing was accepted.
var ErrBusy = errors.New("ingest: write queue is full")

// ErrClosed is returned by Submit after Close has begun. Nothing was accepted.
var ErrClosed = errors.New("ingest: pipeline is shutting down")

// MissingParentsError is returned by Submit when events name a parent_event_id
// that is neither stored nor earlier in the same request.
type MissingParentsError struct {
	// Indices are the positions of those events in the submitted slice.
	Indices []int
}

func (e *MissingParentsError) Error() string {
	return fmt.Sprintf("ingest: %d event(s) name a parent event that does not exist", len(e.Indices))
}

// RejectedError is returned by Submit when PostgreSQL refused the request's
// data although it passed validation. Nothing of the request was written.
type RejectedError struct{ Err error }

func (e *RejectedError) Error() string {
	return "ingest: the database refused the events: " + e.Err.Error()
}

func (e *RejectedError) Unwrap() error { return e.Err }

// Store is the part of the PostgreSQL store the pipeline writes through.
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
	// CommitTimeout bounds one commit, and one spool append after it.
	CommitTimeout time.Duration
}

// Pipeline is the group-commit write pipeline. Create it with New, stop it
// with Close.
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
	seed   maphash.Seed
	slots  *semaphore.Weighted

	// lastLog throttles the outage messages: during an outage every commit
	// fails the same way, and one line a second says all there is to say.
	lastLog atomic.Int64

	mu     sync.RWMutex // guards closed against sends on a closed queue
	closed bool
	wg     sync.WaitGroup
}

// pending is one Submit (or Replay) call waiting for its commit.
type pending struct {
	events []*audit.Event
	done   chan result
	// replay marks events that came from the spool: on a database outage
	// they stay where they are instead of being spooled again.
	replay bool
	// part is the pending's place among its request's parts (route).
	part int
}

type result struct {
	outcome Outcome
	err     error
	part    int
}

// New starts the pipeline's writers. spool may be nil: then a database outage
// answers ErrUnavailable.
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
		seed:    maphash.MakeSeed(),
		slots:   semaphore.NewWeighted(int64(opts.QueueSize)),
	}
	p.wg.Add(opts.Writers)
	for i := range p.queues {
		// Every pending holds at least one event and the slots bound the
		// events, so a send on a queue never blocks.
		p.queues[i] = make(chan *pending, opts.QueueSize)
		go p.writer(p.queues[i])
	}
	return p
}

// Submit writes events (already validated, with their ids) and reports where
// they went: Committed when all are committed, Queued when all are committed
// or spooled and some were spooled. Events of several writers are committed
// in one transaction per writer (route). Once the events are queued for the
// writers, Submit waits for the outcome even if ctx ends, so that an answer is
// never lost for an event that was written.
func (p *Pipeline) Submit(ctx context.Context, events []*audit.Event) (Outcome, error) {
	if len(events) == 0 {
		return Committed, nil
	}
	// Parents are checked before queueing so a missing parent is the client's
	// 400, not a failed commit. If PostgreSQL is down the check is left to the
	// replay, which resolves parents again before its commit.
	if err := p.store.ResolveParents(ctx, events); err != nil {
		var missing *store.MissingParentError
		if errors.As(err, &missing) {
			return 0, &MissingParentsError{Indices: missing.Indices}
		}
		if !store.IsUnavailable(err) {
			return 0, fmt.Errorf("ingest: resolve parents: %w", err)
		}
	}
	return p.enqueue(ctx, events, false)
}

// Replay commits events taken from the spool through the same group commits
// as live writes (so they get the same treatment, hash chains included). It
// never spools: while PostgreSQL is unavailable it returns ErrUnavailable and
// the caller leaves the entries in the spool. Parents are resolved inside the
// commit; a missing one yields *MissingParentsError.
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
		p.metrics.Events.WithLabelValues(resultBusy).Add(float64(len(events)))
		return 0, ErrBusy
	}
	defer p.slots.Release(weight)
	parts := p.route(events)
	done := make(chan result, len(parts))
	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		return 0, ErrClosed
	}
	p.metrics.QueueDepth.Add(float64(len(events)))
	for i, pt := range parts {
		p.queues[pt.writer] <- &pending{events: pt.events, done: done, replay: replay, part: i}
	}
	p.mu.RUnlock()

	// Combine the parts' answers: queued if any part was queued, the first
	// error if any failed (with indices into the caller's slice).
	var out result
	for range parts {
		r := <-done
		switch {
		case out.err != nil:
		case r.err != nil:
			out = r
		case r.outcome == Queued || out.outcome == 0:
			out.outcome = r.outcome
		}
	}
	var missing *MissingParentsError
	if len(parts) > 1 && errors.As(out.err, &missing) {
		out.err = parts[out.part].missing(events, missing)
	}
	return out.outcome, out.err
}

// part is the events of one request that one writer commits.
type part struct {
	writer int
	events []*audit.Event
}

// parts are a request's events by writer, each in request order.
type parts []part

// route assigns a request's events to writers by correlation, so that a
// correlation's chain is only ever extended by one writer of this process
// and concurrent commits never queue on each other's chain locks (a 500-event
// batch touches hundreds of correlations; two of them committed by
// different writers used to take turns). A request whose events belong to
// several writers is split, one transaction per writer, committed in
// parallel. An event whose parent is earlier in the request goes with the
// parent: the foreign key check cannot see the parent in another writer's
// uncommitted transaction.
//
// The price of splitting: a request is no longer one transaction. Each part
// is committed or spooled on its own, so the answer is still 201 only when
// every event is stored or spooled; but when PostgreSQL fails between two
// parts' commits and the spool is down too, the request answers 503 with
// some parts committed. A client that retries with its own event_ids (the
// SDK does) stores nothing twice; one that lets the server assign ids may.
func (p *Pipeline) route(events []*audit.Event) parts {
	w := len(p.queues)
	writerOf := func(e *audit.Event) int { return int(maphash.String(p.seed, e.CorrelationID) % uint64(w)) }
	first := writerOf(events[0])
	if w == 1 || !slices.ContainsFunc(events[1:], func(e *audit.Event) bool { return writerOf(e) != first }) {
		return parts{{writer: first, events: events}}
	}
	// group[i] is the event whose correlation decides where event i goes:
	// its own, or that of its parent's group.
	group := make([]int, len(events))
	index := make(map[uuid.UUID]int, len(events))
	byWriter := make([][]*audit.Event, w)
	for i, e := range events {
		group[i] = i
		if e.ParentID != nil {
			if j, ok := index[*e.ParentID]; ok {
				group[i] = group[j]
			}
		}
		index[e.ID] = i
		k := writerOf(events[group[i]])
		byWriter[k] = append(byWriter[k], e)
	}
	var out parts
	for k, evs := range byWriter {
		if len(evs) > 0 {
			out = append(out, part{writer: k, events: evs})
		}
	}
	return out
}

// missing turns a part's *MissingParentsError, whose indices are into the
// part, into one whose indices are into the request.
func (pt part) missing(events []*audit.Event, err *MissingParentsError) *MissingParentsError {
	at := make(map[*audit.Event]int, len(events))
	for i, e := range events {
		at[e] = i
	}
	out := &MissingParentsError{Indices: make([]int, len(err.Indices))}
	for k, i := range err.Indices {
		out.Indices[k] = at[pt.events[i]]
	}
	slices.Sort(out.Indices)
	return out
}

// Close stops accepting events, lets the writers commit (or spool) everything
// already queued, and returns when they are done or ctx ends.
func (p *Pipeline) Close(ctx context.Context) error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		for _, q := range p.queues {
			close(q)
		}
	}
	p.mu.Unlock()
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("ingest: close: %w", ctx.Err())
	}
}

// writer gathers whatever is queued into one batch and commits it, until the
// queue is closed and empty.
func (p *Pipeline) writer(queue chan *pending) {
	defer p.wg.Done()
	var batch []*pending
	var events []*audit.Event
	for first := range queue {
		batch = append(batch[:0], first)
		n := len(first.events)
	gather:
		for n < p.opts.MaxBatch {
			select {
			case next, ok := <-queue:
				if !ok {
					break gather
				}
				batch = append(batch, next)
				n += len(next.events)
			default:
				break gather
			}
		}
		p.metrics.QueueDepth.Sub(float64(n))
		events = events[:0]
		for _, pd := range batch {
			events = append(events, pd.events...)
		}
		p.commit(batch, events)
		clear(batch) // drop references so finished requests can be collected
		clear(events)
	}
}

// commit writes the events of batch (events is their concatenation) and
// answers every waiter.
func (p *Pipeline) commit(batch []*pending, events []*audit.Event) {
	ctx, cancel := context.WithTimeout(context.Background(), p.opts.CommitTimeout)
	start := time.Now()
	inserted, err := p.store.InsertEvents(ctx, events)
	cancel()
	p.metrics.CommitSeconds.Observe(time.Since(start).Seconds())
	switch {
	case err == nil:
		p.metrics.BatchSize.Observe(float64(len(events)))
		committedAt := time.Now()
		for _, pd := range batch {
			p.metrics.observeLag(pd.events, pd.replay, committedAt)
		}
		p.metrics.Events.WithLabelValues(resultCommitted).Add(float64(inserted))
		if dup := int64(len(events)) - inserted; dup > 0 {
			p.metrics.Events.WithLabelValues(resultDuplicate).Add(float64(dup))
		}
		finish(batch, Committed, nil)
	case store.IsUnavailable(err):
		p.fallback(batch, events, err)
	case len(batch) > 1:
		// The database refused something: commit the halves on their own so
		// only the request that holds the bad event fails.
		half := len(batch) / 2
		p.commit(batch[:half], flatten(batch[:half]))
		p.commit(batch[half:], flatten(batch[half:]))
	default:
		p.metrics.Events.WithLabelValues(resultRejected).Add(float64(len(events)))
		var missing *store.MissingParentError
		if errors.As(err, &missing) {
			finish(batch, 0, &MissingParentsError{Indices: missing.Indices})
			return
		}
		p.log.Warn("database refused a validated request", "events", len(events), "error", err)
		finish(batch, 0, &RejectedError{Err: err})
	}
}

// fallback spools a batch PostgreSQL could not take. Replayed events are
// already in the spool: they are answered ErrUnavailable and stay there.
func (p *Pipeline) fallback(batch []*pending, events []*audit.Event, cause error) {
	if slices.ContainsFunc(batch, func(pd *pending) bool { return pd.replay }) {
		var live []*pending
		for _, pd := range batch {
			if pd.replay {
				finish([]*pending{pd}, 0, ErrUnavailable)
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
	ctx, cancel := context.WithTimeout(context.Background(), p.opts.CommitTimeout)
	defer cancel()
	if err := p.spool.Append(ctx, events); err != nil {
		// The spool says why it refused (down, or full at redis.dlqMaxLen).
		p.throttled(slog.LevelError, "database unavailable and the spool refused the events", "events", len(events), "db_error", cause, "spool_error", err)
		p.metrics.Events.WithLabelValues(resultUnavailable).Add(float64(len(events)))
		finish(batch, 0, ErrUnavailable)
		return
	}
	p.throttled(slog.LevelWarn, "database unavailable, events spooled", "events", len(events), "error", cause)
	p.metrics.Events.WithLabelValues(resultQueued).Add(float64(len(events)))
	finish(batch, Queued, nil)
}

func finish(batch []*pending, o Outcome, err error) {
	for _, pd := range batch {
		pd.done <- result{outcome: o, err: err, part: pd.part}
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
