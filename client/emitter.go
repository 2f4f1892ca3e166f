package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// OverflowPolicy says what Emit does when the buffer is full.
type OverflowPolicy int

const (
	// OverflowBlock makes Emit wait for room, at most EmitterOptions.MaxBlock,
	// then drop the event with ErrBufferFull. The default.
	OverflowBlock OverflowPolicy = iota
	// OverflowDrop makes Emit drop the event at once with ErrBufferFull.
	OverflowDrop
)

// Errors of [Emitter.Emit], [Emitter.Flush] and [Emitter.Close].
var (
	// ErrBufferFull: the buffer stayed full (OverflowBlock: for MaxBlock);
	// the event was dropped and counted.
	ErrBufferFull = errors.New("datastorage: emitter buffer full; event dropped")
	// ErrClosed: the emitter is closed; the event was dropped and counted.
	ErrClosed = errors.New("datastorage: emitter closed")
)

// EmitterOptions configures an [Emitter]. Zero fields take the defaults.
//
// Memory is bounded: at most BufferSize events wait in the buffer, plus one
// batch being filled and one batch per sender in flight, so
// BufferSize + (Senders+1)×BatchSize events at most, each held as its
// encoded JSON.
type EmitterOptions struct {
	// BatchSize is the most events sent in one request (default 500; the
	// server takes up to its server.maxBatchSize, default 10000). If the
	// server answers that a batch is too large the emitter halves it, and
	// sends smaller batches from then on.
	BatchSize int
	// FlushInterval is the longest an event waits for its batch to fill
	// before the partial batch is sent (default 1 s).
	FlushInterval time.Duration
	// BufferSize is the number of events that may wait to be sent
	// (default 10000).
	BufferSize int
	// Overflow is what Emit does when the buffer is full (default
	// OverflowBlock).
	Overflow OverflowPolicy
	// MaxBlock bounds how long Emit waits for room under OverflowBlock
	// (default 100 ms). Emit never blocks longer, whatever the server does.
	MaxBlock time.Duration
	// Senders is the number of batches in flight at once (default 1). With
	// one sender, batches reach the server in Emit order, so a parent event
	// emitted before its child is always stored first; with more, a child
	// may arrive before its parent and be refused.
	Senders int
	// RequestTimeout bounds each attempt to send a batch (default 30 s).
	RequestTimeout time.Duration
	// InitialBackoff and MaxBackoff bound the exponential backoff between
	// attempts (defaults 200 ms and 30 s); each wait is drawn at random
	// between half and all of the current step (jitter). A Retry-After from
	// the server (429, 503) is waited out in full, up to 5 minutes.
	InitialBackoff, MaxBackoff time.Duration
	// MaxAttempts is the most attempts per batch before its events are
	// given up and counted as failed; 0 (the default) retries until the
	// batch is delivered or Close's deadline passes. Retried: transport
	// errors, 429 and 5xx. Never retried: 400 and other 4xx.
	MaxAttempts int
	// Logger receives what the emitter has to say (default slog.Default()):
	// an error for every event the server refused, with its field errors,
	// and a warning for every retried attempt.
	Logger *slog.Logger
	// OnFailure, if set, is called with the events that were accepted by
	// Emit but will not be delivered, and why. It runs on the emitter's own
	// goroutines, possibly several at once: keep it quick and safe for
	// concurrent use, e.g. append the events to a file for a later replay.
	OnFailure func(events []EncodedEvent, err error)
}

func (o EmitterOptions) withDefaults() EmitterOptions {
	if o.BatchSize <= 0 {
		o.BatchSize = 500
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = time.Second
	}
	if o.BufferSize <= 0 {
		o.BufferSize = 10000
	}
	if o.MaxBlock <= 0 {
		o.MaxBlock = 100 * time.Millisecond
	}
	if o.Senders <= 0 {
		o.Senders = 1
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 30 * time.Second
	}
	if o.InitialBackoff <= 0 {
		o.InitialBackoff = 200 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.MaxBackoff < o.InitialBackoff {
		o.MaxBackoff = o.InitialBackoff
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// maxRetryAfter caps a server's Retry-After.
const maxRetryAfter = 5 * time.Minute

// EncodedEvent is an event as the emitter holds it: its id and its JSON.
type EncodedEvent struct {
	ID   uuid.UUID
	JSON json.RawMessage
}

// NewEventID returns a new event id (a UUIDv7, ordered by time), for events
// that must be referred to, e.g. as another event's ParentEventID.
func NewEventID() uuid.UUID {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.New()
	}
	return id
}

// Emitter sends audit events in the background, in batches, with retries.
// Create it with [NewEmitter], send with [Emitter.Emit], and call
// [Emitter.Close] when the host stops. It is safe for concurrent use.
type Emitter struct {
	c    *Client
	opts EmitterOptions
	log  *slog.Logger

	queue chan item
	work  chan []EncodedEvent

	mu      sync.RWMutex // Emit holds it shared; Close exclusively, to set closed
	closed  bool
	closing chan struct{} // closed when Close begins: ends every Emit's wait

	closeOnce sync.Once
	abort     context.CancelFunc // ends every attempt and wait at once
	aborted   context.Context
	stopped   chan struct{} // closed when the dispatcher and senders are done
	inflight  sync.WaitGroup
	senders   sync.WaitGroup

	batchLimit atomic.Int64 // lowered when the server says a batch is too large

	stats    emitterCounters
	failedAt atomic.Uint64 // failed count when Close began
}

// item is one entry of the queue: an event or a marker.
type item struct {
	ev     EncodedEvent
	marker *marker
}

type marker struct {
	close bool
	done  chan struct{}
}

// NewEmitter starts an emitter that sends through c. Call Close to stop it.
func NewEmitter(c *Client, opts EmitterOptions) *Emitter {
	opts = opts.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	e := &Emitter{
		c:       c,
		opts:    opts,
		log:     opts.Logger,
		queue:   make(chan item, opts.BufferSize),
		work:    make(chan []EncodedEvent),
		abort:   cancel,
		aborted: ctx,
		stopped: make(chan struct{}),
		closing: make(chan struct{}),
	}
	e.batchLimit.Store(int64(opts.BatchSize))
	for range opts.Senders {
		e.senders.Add(1)
		go e.sender()
	}
	go e.dispatch()
	return e
}

// Emit queues ev for sending and returns; it never waits for the network.
// It fills ID (a new UUIDv7), Timestamp (now) and Data when
// they are zero, and encodes the event at once, so the caller may reuse
// what it passed.
//
// When the buffer is full, Emit waits up to MaxBlock (OverflowBlock) or not
// at all (OverflowDrop), then drops the event and returns ErrBufferFull.
// It returns ErrClosed after Close, ctx.Err() if ctx ends while it waits,
// and an encoding error for an event that cannot be encoded as JSON. Every
// event not queued is counted as dropped.
func (e *Emitter) Emit(ctx context.Context, ev Event) error {
	req, err := ev.prepare(time.Now())
	if err != nil {
		e.stats.drop(dropInvalid, 1)
		return err
	}
	b, err := json.Marshal(req)
	if err != nil {
		e.stats.drop(dropInvalid, 1)
		return fmt.Errorf("datastorage: encoding the event: %w", err)
	}
	it := item{ev: EncodedEvent{ID: req.ID, JSON: b}}

	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		e.stats.drop(dropClosed, 1)
		return ErrClosed
	}
	select {
	case e.queue <- it:
		e.stats.queue()
		return nil
	default:
	}
	if e.opts.Overflow == OverflowDrop {
		e.stats.drop(dropFull, 1)
		return ErrBufferFull
	}
	t := time.NewTimer(e.opts.MaxBlock)
	defer t.Stop()
	select {
	case e.queue <- it:
		e.stats.queue()
		return nil
	case <-t.C:
		e.stats.drop(dropFull, 1)
		return ErrBufferFull
	case <-e.closing:
		e.stats.drop(dropClosed, 1)
		return ErrClosed
	case <-ctx.Done():
		e.stats.drop(dropCanceled, 1)
		return ctx.Err()
	}
}

// Flush sends every event emitted before it and waits until each one has
// been delivered or given up (counted as failed), or until ctx ends.
func (e *Emitter) Flush(ctx context.Context) error {
	e.mu.RLock()
	closed := e.closed
	e.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	m := &marker{done: make(chan struct{})}
	select {
	case e.queue <- item{marker: m}:
	case <-e.stopped:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-m.done:
		return nil
	case <-e.stopped:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops accepting events, sends everything buffered, and waits until
// it is delivered or until ctx ends. At the deadline the attempts in flight
// are abandoned and every event not yet delivered is counted as failed
// (and given to OnFailure); Close then returns an error saying how many.
// Calling Close again waits for the first call's work and returns nil.
func (e *Emitter) Close(ctx context.Context) error {
	first := false
	e.closeOnce.Do(func() {
		first = true
		close(e.closing) // waiting Emits give up now, so the lock below is quick
		e.mu.Lock()
		e.closed = true
		e.mu.Unlock()
		e.failedAt.Store(e.stats.failedTotal())
		select {
		case e.queue <- item{marker: &marker{close: true, done: make(chan struct{})}}:
		case <-ctx.Done():
			e.abort()
		}
	})
	select {
	case <-e.stopped:
	case <-ctx.Done():
		e.abort()
		<-e.stopped
	}
	if !first {
		return nil
	}
	if n := e.stats.failedTotal() - e.failedAt.Load(); n > 0 {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("datastorage: emitter closed with %d events not delivered: %w", n, err)
		}
		return fmt.Errorf("datastorage: emitter closed; %d events were not delivered", n)
	}
	return nil
}

// dispatch moves events from the queue into batches and hands full (or
// timed-out) batches to the senders.
func (e *Emitter) dispatch() {
	defer func() {
		close(e.work)
		e.senders.Wait()
		close(e.stopped)
	}()
	var (
		batch  []EncodedEvent
		timer  = time.NewTimer(time.Hour)
		timerC <-chan time.Time
	)
	timer.Stop()
	flush := func() {
		if len(batch) == 0 {
			return
		}
		b := batch
		batch = nil
		timer.Stop()
		timerC = nil
		e.inflight.Add(1)
		select {
		case e.work <- b:
		case <-e.aborted.Done():
			e.inflight.Done()
			e.fail(b, errAborted)
		}
	}
	for {
		select {
		case it := <-e.queue:
			if it.marker != nil {
				flush()
				e.inflight.Wait()
				close(it.marker.done)
				if it.marker.close {
					return
				}
				continue
			}
			batch = append(batch, it.ev)
			if len(batch) == 1 {
				timer.Reset(e.opts.FlushInterval)
				timerC = timer.C
			}
			if int64(len(batch)) >= e.batchLimit.Load() {
				flush()
			}
		case <-timerC:
			timerC = nil
			flush()
		case <-e.aborted.Done():
			// Close's deadline passed: give up everything still here.
			e.fail(batch, errAborted)
			batch = nil
			for {
				select {
				case it := <-e.queue:
					if it.marker != nil {
						close(it.marker.done)
						continue
					}
					e.fail([]EncodedEvent{it.ev}, errAborted)
					continue
				default:
				}
				break
			}
			e.inflight.Wait()
			return
		}
	}
}

var errAborted = errors.New("datastorage: emitter closed before the events could be delivered")

// sender delivers the batches handed to it.
func (e *Emitter) sender() {
	defer e.senders.Done()
	for b := range e.work {
		e.deliver(b)
		e.inflight.Done()
	}
}

// deliver sends one batch until it is stored, refused, or given up.
func (e *Emitter) deliver(batch []EncodedEvent) {
	backoff := e.opts.InitialBackoff
	for attempt := 1; ; attempt++ {
		if e.aborted.Err() != nil {
			e.fail(batch, errAborted)
			return
		}
		err := e.post(batch)
		if err == nil {
			e.stats.send(len(batch))
			return
		}
		var p *Problem
		if errors.As(err, &p) && !p.Retryable() {
			e.refused(batch, p)
			return
		}
		if e.aborted.Err() != nil {
			e.fail(batch, errAborted)
			return
		}
		if e.opts.MaxAttempts > 0 && attempt >= e.opts.MaxAttempts {
			e.log.Error("datastorage emitter: giving up a batch", "events", len(batch), "attempts", attempt, "error", err)
			e.fail(batch, fmt.Errorf("datastorage: giving up after %d attempts: %w", attempt, err))
			return
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		if p != nil && p.RetryAfter > 0 {
			wait = min(p.RetryAfter, maxRetryAfter) + rand.N(backoff/4+1)
		}
		backoff = min(backoff*2, e.opts.MaxBackoff)
		e.log.Warn("datastorage emitter: sending a batch failed; retrying", "events", len(batch), "attempt", attempt, "retry_in", wait, "error", err)
		e.stats.retry(len(batch))
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-e.aborted.Done():
			t.Stop()
			e.fail(batch, errAborted)
			return
		}
	}
}

// post sends one attempt.
func (e *Emitter) post(batch []EncodedEvent) error {
	var body bytes.Buffer
	body.Grow(len(batch) * 512)
	body.WriteByte('[')
	for i, ev := range batch {
		if i > 0 {
			body.WriteByte(',')
		}
		body.Write(ev.JSON)
	}
	body.WriteByte(']')
	ctx, cancel := context.WithTimeout(e.aborted, e.opts.RequestTimeout)
	defer cancel()
	_, err := e.c.do(ctx, http.MethodPost, auditEndpoint(e.c, nil, "events", "batch"), body.Bytes(), "")
	return err
}

var elementKey = regexp.MustCompile(`^\[([0-9]+)\]`)

// refused handles a 4xx other than 429: never retried as it is. A batch
// too large is split; a validation error that names elements gives up
// those elements and sends the others again; anything else gives up the
// batch.
func (e *Emitter) refused(batch []EncodedEvent, p *Problem) {
	tooLarge := p.Status == http.StatusRequestEntityTooLarge || errors.Is(p, ErrBatchTooLarge)
	if tooLarge && len(batch) > 1 {
		half := len(batch) / 2
		if lim := e.batchLimit.Load(); int64(half) < lim {
			e.batchLimit.CompareAndSwap(lim, int64(max(half, 1)))
		}
		e.log.Warn("datastorage emitter: the server refused a batch as too large; splitting it", "events", len(batch), "status", p.Status)
		e.deliver(batch[:half])
		e.deliver(batch[half:])
		return
	}
	if p.Status == http.StatusBadRequest && len(p.FieldErrors) > 0 {
		bad := map[int]map[string]string{}
		whole := false
		for k, msg := range p.FieldErrors {
			m := elementKey.FindStringSubmatch(k)
			if m == nil {
				whole = true
				break
			}
			i, err := strconv.Atoi(m[1])
			if err != nil || i >= len(batch) {
				whole = true
				break
			}
			if bad[i] == nil {
				bad[i] = map[string]string{}
			}
			bad[i][k[len(m[0]):]] = msg
		}
		if !whole && len(bad) > 0 {
			idx := make([]int, 0, len(bad))
			for i := range bad {
				idx = append(idx, i)
			}
			sort.Ints(idx)
			var rejected, good []EncodedEvent
			for i, ev := range batch {
				if _, ok := bad[i]; ok {
					rejected = append(rejected, ev)
				} else {
					good = append(good, ev)
				}
			}
			for _, i := range idx {
				e.log.Error("datastorage emitter: the server refused an event; it will not be sent again",
					"event_id", batch[i].ID.String(), "status", p.Status, "type", p.Type,
					"field_errors", trimFieldKeys(bad[i]), "request_id", p.RequestID)
			}
			e.fail(rejected, p)
			if len(good) > 0 {
				e.deliver(good)
			}
			return
		}
	}
	e.log.Error("datastorage emitter: the server refused a batch; it will not be sent again",
		"events", len(batch), "status", p.Status, "type", p.Type, "title", p.Title, "detail", p.Detail,
		"field_errors", p.FieldErrors, "request_id", p.RequestID)
	e.fail(batch, p)
}

// trimFieldKeys turns {".event_type": …} into {"event_type": …}.
func trimFieldKeys(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		if len(k) > 0 && k[0] == '.' {
			k = k[1:]
		}
		if k == "" {
			k = "event"
		}
		out[k] = v
	}
	return out
}

// fail gives up events and reports them.
func (e *Emitter) fail(batch []EncodedEvent, err error) {
	if len(batch) == 0 {
		return
	}
	reason := failedClosed
	var p *Problem
	switch {
	case errors.As(err, &p):
		reason = failedRejected
	case !errors.Is(err, errAborted):
		reason = failedRetries
	}
	e.stats.fail(reason, len(batch))
	if e.opts.OnFailure != nil {
		e.opts.OnFailure(batch, err)
	}
}

// Stats returns the emitter's counters.
func (e *Emitter) Stats() EmitterStats { return e.stats.snapshot() }

// StatsByReason splits the Dropped and Failed counts of [Emitter.Stats] by
// reason. dropped has the keys "buffer_full", "closed", "canceled" and
// "invalid"; failed has "rejected" (4xx), "retries_exhausted" and "closed"
// (Close's deadline passed). Every key is present, 0 or not.
func (e *Emitter) StatsByReason() (dropped, failed map[string]uint64) {
	dropped = make(map[string]uint64, len(dropReasons))
	for i, r := range dropReasons {
		dropped[r] = e.stats.dropped[i].Load()
	}
	failed = make(map[string]uint64, len(failReasons))
	for i, r := range failReasons {
		failed[r] = e.stats.failed[i].Load()
	}
	return dropped, failed
}

// BufferSize is the most events the emitter's buffer holds
// (EmitterOptions.BufferSize, or its default).
func (e *Emitter) BufferSize() int { return e.opts.BufferSize }

// EmitterStats are an emitter's counters since it started.
type EmitterStats struct {
	// Queued counts events Emit accepted into the buffer.
	Queued uint64
	// Sent counts events the server confirmed (committed or durably spooled).
	Sent uint64
	// Retried counts events sent again after a failed attempt (once per
	// event per retry).
	Retried uint64
	// Dropped counts events Emit did not accept: buffer full, closed,
	// canceled, or not encodable.
	Dropped uint64
	// Failed counts accepted events given up: refused by the server,
	// attempts exhausted, or Close's deadline passed.
	Failed uint64
	// Buffered is the number of accepted events not yet sent or failed.
	Buffered int64
}

// Reasons of dropped and failed events (metric labels).
const (
	dropFull     = "buffer_full"
	dropClosed   = "closed"
	dropCanceled = "canceled"
	dropInvalid  = "invalid"

	failedRejected = "rejected"
	failedRetries  = "retries_exhausted"
	failedClosed   = "closed"
)

var (
	dropReasons = []string{dropFull, dropClosed, dropCanceled, dropInvalid}
	failReasons = []string{failedRejected, failedRetries, failedClosed}
)

type emitterCounters struct {
	queued, sent, retried atomic.Uint64
	buffered              atomic.Int64
	dropped               [4]atomic.Uint64 // by dropReasons
	failed                [3]atomic.Uint64 // by failReasons
}

func (s *emitterCounters) queue() {
	s.queued.Add(1)
	s.buffered.Add(1)
}

func (s *emitterCounters) send(n int) {
	s.sent.Add(uint64(n))
	s.buffered.Add(-int64(n))
}

func (s *emitterCounters) retry(n int) { s.retried.Add(uint64(n)) }

func (s *emitterCounters) drop(reason string, n int) {
	for i, r := range dropReasons {
		if r == reason {
			s.dropped[i].Add(uint64(n))
		}
	}
}

func (s *emitterCounters) fail(reason string, n int) {
	for i, r := range failReasons {
		if r == reason {
			s.failed[i].Add(uint64(n))
		}
	}
	s.buffered.Add(-int64(n))
}

func (s *emitterCounters) failedTotal() uint64 {
	var n uint64
	for i := range s.failed {
		n += s.failed[i].Load()
	}
	return n
}

func (s *emitterCounters) snapshot() EmitterStats {
	st := EmitterStats{
		Queued:   s.queued.Load(),
		Sent:     s.sent.Load(),
		Retried:  s.retried.Load(),
		Failed:   s.failedTotal(),
		Buffered: s.buffered.Load(),
	}
	for i := range s.dropped {
		st.Dropped += s.dropped[i].Load()
	}
	return st
}
