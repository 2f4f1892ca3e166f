package spool

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/failure"
)

// DataError marks a replay failure caused by the records themselves (the
// database refused them, or a parent event does not exist) rather than by
// the database being unreachable. Sinks return it (or any error of class
// failure.Data); the worker then splits the page to isolate the bad record
// and eventually dead-letters it. An error of class failure.Unavailable means
// "try again when the database is back"; any other error is internal and
// parks the page (see the package doc).
type DataError struct{ Err error }

// Error describes the failure as a data error.
func (e *DataError) Error() string { return "spool: data error: " + e.Err.Error() }

// Unwrap returns the sink's own error.
func (e *DataError) Unwrap() error { return e.Err }

// FailureClass is failure.Data.
func (e *DataError) FailureClass() failure.Class { return failure.Data }

// ErrAlreadyStored is returned by a NotificationSink when the record is
// already in PostgreSQL (its notification_id is taken, typically by an
// earlier replay whose acknowledgement was lost). The worker acknowledges the
// entry and counts it as a duplicate.
var ErrAlreadyStored = errors.New("spool: record already stored")

// EventSink commits replayed events. The ingest pipeline's Replay, with its
// data errors wrapped in *DataError, is one.
type EventSink interface {
	// Replay commits all events or none. It must be idempotent: an event
	// already stored is not stored again.
	Replay(ctx context.Context, events []*audit.Event) error
}

// NotificationSink stores replayed notification audit records.
type NotificationSink interface {
	// ReplayNotification stores n, or returns ErrAlreadyStored when its
	// notification_id is already stored.
	ReplayNotification(ctx context.Context, n audit.Notification) error
}

// Pinger reports whether PostgreSQL answers.
type Pinger interface {
	Ping(ctx context.Context) error
}

// WorkerOptions configure a Worker.
type WorkerOptions struct {
	// Consumer is this worker's name in the consumer group; it must be
	// unique among live workers. Empty means hostname-pid-random.
	Consumer string
	// BatchSize is the most entries read and committed at once (default 500).
	BatchSize int
	// ClaimIdle is how long an entry stays delivered to another worker
	// without acknowledgement before this one claims it (default 30s).
	ClaimIdle time.Duration
	// MaxDeliveries is how many deliveries an entry failing with a data
	// error gets before it is dead-lettered (default 5).
	MaxDeliveries int
	// Events commits replayed events; required.
	Events EventSink
	// Notifications stores replayed notifications; nil leaves that stream alone.
	Notifications NotificationSink
	// Database is pinged while the database is unavailable, so replay
	// resumes as soon as it is back; nil retries the commit itself.
	Database Pinger
	// Log receives the worker's messages; nil discards them.
	Log *slog.Logger
}

// Worker replays spooled records into PostgreSQL. Create it with
// Spool.NewWorker; run it with Run (a replica's background worker) or Drain
// (a one-shot replay).
type Worker struct {
	spool *Spool
	opts  WorkerOptions
	log   *slog.Logger
}

// NewWorker returns a replay worker reading this spool.
func (s *Spool) NewWorker(opts WorkerOptions) (*Worker, error) {
	if opts.Events == nil {
		return nil, errors.New("spool: worker needs an event sink")
	}
	if opts.Consumer == "" {
		opts.Consumer = ConsumerName()
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 500
	}
	if opts.ClaimIdle <= 0 {
		opts.ClaimIdle = 30 * time.Second
	}
	if opts.MaxDeliveries <= 0 {
		opts.MaxDeliveries = 5
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Worker{spool: s, opts: opts, log: opts.Log.With("consumer", opts.Consumer)}, nil
}

// ConsumerName returns a name unique to this process: hostname, pid and a
// random suffix (a restarted pod keeps its hostname and often its pid 1).
func ConsumerName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "datastorage"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// Consumer is the worker's name in the consumer group.
func (w *Worker) Consumer() string { return w.opts.Consumer }

// Run replays until ctx ends, one page in flight per stream. It waits while
// PostgreSQL or Redis is unavailable. When ctx ends it lets a commit in
// progress finish and acknowledges it, leaves whatever it holds uncommitted
// pending (another worker claims it after ClaimIdle), and returns.
func (w *Worker) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { w.eventsConsumer().run(ctx) })
	if w.opts.Notifications != nil {
		wg.Go(func() { w.notificationsConsumer().run(ctx) })
	}
	wg.Wait()
}

// DrainResult counts what a Drain did.
type DrainResult struct {
	// Committed is the number of records committed (events include those
	// that were already stored).
	Committed int64
	// Duplicates is the number of notifications that were already stored.
	Duplicates int64
	// Failed is the number of records that failed with a data error and stay
	// in the spool for a later attempt.
	Failed int64
	// DeadLettered is the number of records moved to the dead-letter stream.
	DeadLettered int64
	// Parked is the number of records whose page failed with an internal
	// error; they stay in the spool, pending.
	Parked int64
}

// Done is the number of records the drain finished with, one way or another.
func (r DrainResult) Done() int64 {
	return r.Committed + r.Duplicates + r.Failed + r.DeadLettered + r.Parked
}

// Drain replays what the spool of kind k holds now, and returns when nothing
// is left that it may take: entries never delivered, and entries pending for
// longer than ClaimIdle (a dead worker's). It does not wait for the database:
// when PostgreSQL is unavailable it returns the error. progress, if not nil,
// is called after every page with the result so far and the stream's length
// when the drain started (or the records done, if more).
func (w *Worker) Drain(ctx context.Context, k Kind, progress func(r DrainResult, total int64)) (DrainResult, error) {
	switch k {
	case Events:
		return drain(ctx, w.eventsConsumer(), progress)
	case Notifications:
		if w.opts.Notifications == nil {
			return DrainResult{}, errors.New("spool: worker has no notification sink")
		}
		return drain(ctx, w.notificationsConsumer(), progress)
	default:
		return DrainResult{}, fmt.Errorf("spool: unknown kind %d", k)
	}
}

func drain[T any](ctx context.Context, c *consumer[T], progress func(DrainResult, int64)) (DrainResult, error) {
	c.oneShot = true
	defer c.release(ctx)
	total, err := c.w.spool.rdb.XLen(ctx, c.kind.Stream()).Result()
	if err != nil {
		return c.result, fmt.Errorf("spool: length of %s: %w", c.kind.Stream(), err)
	}
	for {
		msgs, err := c.fetch(ctx, -1)
		if err != nil {
			return c.result, err
		}
		if len(msgs) == 0 {
			if c.claimFrom != "" {
				continue // the claim scan goes on through the pending entries
			}
			return c.result, nil
		}
		if err := c.handle(ctx, msgs); err != nil {
			return c.result, err
		}
		if progress != nil {
			progress(c.result, max(total, c.result.Done()))
		}
	}
}

func (w *Worker) eventsConsumer() *consumer[*audit.Event] {
	return &consumer[*audit.Event]{
		w:      w,
		kind:   Events,
		log:    w.log.With("stream", Events.Stream()),
		decode: decodeEvent,
		commit: func(ctx context.Context, events []*audit.Event) (int, error) {
			return 0, w.opts.Events.Replay(ctx, events)
		},
	}
}

func (w *Worker) notificationsConsumer() *consumer[audit.Notification] {
	return &consumer[audit.Notification]{
		w:      w,
		kind:   Notifications,
		log:    w.log.With("stream", Notifications.Stream()),
		decode: decodeNotification,
		commit: func(ctx context.Context, ns []audit.Notification) (int, error) {
			// Notifications are few (a legacy path): one insert each. A retry
			// of the page after a partial failure finds the first ones stored
			// and counts them as duplicates.
			dups := 0
			for _, n := range ns {
				err := w.opts.Notifications.ReplayNotification(ctx, n)
				switch {
				case errors.Is(err, ErrAlreadyStored):
					dups++
				case err != nil:
					return 0, err
				}
			}
			return dups, nil
		},
	}
}

// decodeEvent reads a spooled event and checks what replay relies on: an id
// (idempotence rests on it), a timestamp and event_data that PostgreSQL can
// hold. A payload failing this can never be stored.
func decodeEvent(p json.RawMessage) (*audit.Event, error) {
	var e audit.Event
	if err := json.Unmarshal(p, &e); err != nil {
		return nil, err
	}
	if e.ID == uuid.Nil {
		return nil, errors.New("the payload has no event_id")
	}
	if e.Timestamp.Std().IsZero() {
		return nil, errors.New("the payload has no event_timestamp")
	}
	if e.Date.Std().IsZero() {
		e.Date = audit.DateOf(e.Timestamp.Std())
	}
	if len(e.Data) == 0 || e.Data[0] != '{' {
		return nil, errors.New("the payload's event_data is not a JSON object")
	}
	// Validation refuses such data on the live path; a spooled entry written
	// by anything else is checked here, where the error can be named.
	if _, err := audit.CanonicalData(e.Data); err != nil {
		return nil, fmt.Errorf("event_data: %w", err)
	}
	return &e, nil
}

func decodeNotification(p json.RawMessage) (audit.Notification, error) {
	var n audit.Notification
	if err := json.Unmarshal(p, &n); err != nil {
		return n, err
	}
	if n.NotificationID == "" {
		return n, errors.New("the payload has no notification_id")
	}
	return n, nil
}

// consumer replays one stream. It is used by one goroutine.
type consumer[T any] struct {
	w      *Worker
	kind   Kind
	log    *slog.Logger
	decode func(json.RawMessage) (T, error)
	// commit stores all items or none and returns how many were already stored.
	commit func(ctx context.Context, items []T) (duplicates int, err error)

	// oneShot makes a database outage an error instead of a wait (Drain).
	oneShot    bool
	groupReady bool
	// claimFrom is the XAUTOCLAIM cursor while a scan of the pending
	// entries is under way, "" between scans; nextClaim is when the next
	// scan starts.
	claimFrom string
	nextClaim time.Time
	nextReap  time.Time
	dbDown    bool
	result    DrainResult
}

// entry is one delivered stream entry.
type entry[T any] struct {
	id      string
	raw     string
	msg     Message
	decoded bool // msg holds the parsed envelope
	item    T
}

// Backoff bounds. The maximum also bounds how late replay notices that the
// database is back, so it is short.
const (
	backoffMin = 50 * time.Millisecond
	backoffMax = time.Second
	// redisWriteTimeout bounds an acknowledgement or a dead-lettering,
	// which are done even after ctx ended so a finished commit is not
	// replayed again needlessly.
	redisWriteTimeout = 10 * time.Second
	// reapEvery is how often a worker removes consumers of replicas that
	// are gone (with nothing pending); reapIdle is how long such a consumer
	// must have been silent.
	reapEvery = 10 * time.Minute
	reapIdle  = time.Hour
)

// claimEvery is how often the pending entries are scanned for ones to claim.
func (c *consumer[T]) claimEvery() time.Duration {
	return max(c.w.opts.ClaimIdle/2, 10*time.Millisecond)
}

func (c *consumer[T]) run(ctx context.Context) {
	defer c.release(ctx)
	// Blocking reads wake up in time for the next claim scan and for ctx.
	block := min(time.Second, c.claimEvery())
	bo := backoff{}
	failing := false
	for ctx.Err() == nil {
		msgs, err := c.fetch(ctx, block)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !failing {
				c.log.Warn("spool: cannot read the spool; retrying", "error", err)
				failing = true
			}
			if !sleep(ctx, bo.next()) {
				return
			}
			continue
		}
		if failing {
			c.log.Info("spool: reading the spool again")
			failing = false
		}
		bo.reset()
		if len(msgs) > 0 {
			if err := c.handle(ctx, msgs); err != nil {
				return
			}
		}
		c.reap(ctx)
	}
}

// fetch returns the next page: claimed entries while a claim scan is under
// way, otherwise new entries (waiting up to block for them; block < 0 does
// not wait).
func (c *consumer[T]) fetch(ctx context.Context, block time.Duration) ([]redis.XMessage, error) {
	if !c.groupReady {
		if err := c.w.spool.ensureGroup(ctx, c.kind); err != nil {
			return nil, err
		}
		c.groupReady = true
	}
	msgs, err := c.fetchPage(ctx, block)
	if isNoGroup(err) {
		c.groupReady = false
	}
	return msgs, err
}

func (c *consumer[T]) fetchPage(ctx context.Context, block time.Duration) ([]redis.XMessage, error) {
	if c.claimFrom == "" && !time.Now().Before(c.nextClaim) && !c.databaseAnswers(ctx) {
		// While the database is down here, claiming would only move pages
		// from one waiting replica to another, counting deliveries that
		// are no failures of theirs.
		c.nextClaim = time.Now().Add(c.claimEvery())
	}
	if c.claimFrom != "" || !time.Now().Before(c.nextClaim) {
		msgs, err := c.claim(ctx)
		if err != nil || len(msgs) > 0 || c.claimFrom != "" {
			return msgs, err
		}
	}
	res, err := c.w.spool.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group:    Group,
		Consumer: c.w.opts.Consumer,
		Streams:  []string{c.kind.Stream(), ">"},
		Count:    int64(c.w.opts.BatchSize),
		Block:    block,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("spool: read %s: %w", c.kind.Stream(), err)
	}
	var msgs []redis.XMessage
	for _, s := range res {
		msgs = append(msgs, s.Messages...)
	}
	return msgs, nil
}

// databaseAnswers pings the database once (true when there is no pinger).
func (c *consumer[T]) databaseAnswers(ctx context.Context) bool {
	if c.w.opts.Database == nil {
		return true
	}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return c.w.opts.Database.Ping(pctx) == nil
}

// claim takes over entries that have been pending for longer than
// ClaimIdle: those of a worker that died, and this worker's own failed ones,
// which are retried this way.
func (c *consumer[T]) claim(ctx context.Context) ([]redis.XMessage, error) {
	start := c.claimFrom
	if start == "" {
		start = "0-0"
	}
	msgs, next, err := c.w.spool.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{
		Stream:   c.kind.Stream(),
		Group:    Group,
		Consumer: c.w.opts.Consumer,
		MinIdle:  c.w.opts.ClaimIdle,
		Start:    start,
		Count:    int64(c.w.opts.BatchSize),
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("spool: claim from %s: %w", c.kind.Stream(), err)
	}
	if next == "0-0" {
		c.claimFrom = ""
		c.nextClaim = time.Now().Add(c.claimEvery())
	} else {
		c.claimFrom = next
	}
	if len(msgs) > 0 {
		c.log.Info("spool: claimed entries left pending by a worker", "entries", len(msgs), "min_idle", c.w.opts.ClaimIdle)
	}
	return msgs, nil
}

// handle replays one page. It returns an error only when ctx ended (or, for
// a one-shot drain, when the database is unavailable); the entries not
// committed then stay pending.
func (c *consumer[T]) handle(ctx context.Context, msgs []redis.XMessage) error {
	entries := make([]entry[T], 0, len(msgs))
	var gone []string
	for _, m := range msgs {
		raw, ok := m.Values[messageField].(string)
		if !ok && len(m.Values) == 0 {
			// Deleted while pending (its commit was acknowledged by another
			// worker): nothing left to replay, only the delivery to clear.
			gone = append(gone, m.ID)
			continue
		}
		e := entry[T]{id: m.ID, raw: raw}
		var err error
		if ok {
			err = c.decodeEntry(&e)
		} else {
			err = errors.New("the entry has no message field")
		}
		if err != nil {
			c.deadLetter(ctx, e, 0, fmt.Errorf("undecodable entry: %w", err))
			continue
		}
		entries = append(entries, e)
	}
	if len(gone) > 0 {
		c.ack(ctx, gone)
	}
	if len(entries) == 0 {
		return nil
	}
	return c.commitAll(ctx, entries)
}

func (c *consumer[T]) decodeEntry(e *entry[T]) error {
	if err := json.Unmarshal([]byte(e.raw), &e.msg); err != nil {
		e.msg = Message{}
		return fmt.Errorf("message: %w", err)
	}
	e.decoded = true
	if e.msg.Type != c.kind.Type() {
		return fmt.Errorf("message type is %q, want %q", e.msg.Type, c.kind.Type())
	}
	item, err := c.decode(e.msg.Payload)
	if err != nil {
		return fmt.Errorf("payload: %w", err)
	}
	e.item = item
	return nil
}

// commitAll commits entries and acknowledges them. What a failure means is
// failure.ClassOf's rule: on a data error it commits the halves on their own,
// down to the single bad entry; while the database is unavailable it waits
// for it and tries again; on an internal error it parks the page (park).
func (c *consumer[T]) commitAll(ctx context.Context, entries []entry[T]) error {
	items := make([]T, len(entries))
	for i, e := range entries {
		items[i] = e.item
	}
	bo := backoff{}
	for {
		dups, err := c.commit(ctx, items)
		switch failure.ClassOf(err) {
		case failure.None:
			ids := make([]string, len(entries))
			for i, e := range entries {
				ids[i] = e.id
			}
			c.ack(ctx, ids)
			c.count(resultCommitted, len(entries)-dups)
			c.count(resultDuplicate, dups)
			c.dbDown = false
			return nil
		case failure.Data:
			if len(entries) == 1 {
				var dataErr *DataError
				if errors.As(err, &dataErr) {
					err = dataErr.Err
				}
				c.failed(ctx, entries[0], err)
				return nil
			}
			half := len(entries) / 2
			if err := c.commitAll(ctx, entries[:half]); err != nil {
				return err
			}
			return c.commitAll(ctx, entries[half:])
		case failure.Internal:
			return c.park(entries, err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if c.oneShot {
			return fmt.Errorf("spool: replay %d entries of %s: %w", len(entries), c.kind.Stream(), err)
		}
		if !c.dbDown {
			c.log.Warn("spool: replay waits: the database cannot take the entries", "entries", len(entries), "error", err)
			c.dbDown = true
		}
		if !sleep(ctx, bo.next()) || !c.waitDatabase(ctx) {
			return ctx.Err()
		}
		// While this page waited, an append that its replicas did not
		// confirm may have withdrawn some of its entries (the write was
		// answered 503): they must not be stored now.
		if entries = c.present(ctx, entries); len(entries) == 0 {
			return nil
		}
		items = items[:0]
		for _, e := range entries {
			items = append(items, e.item)
		}
	}
}

// present returns the entries still in the stream, acknowledging the others
// (withdrawn by appendReplicated) so they leave the group's pending list. If
// Redis cannot tell, all entries are kept: storing a withdrawn event under
// its id is the lesser harm than dropping an acknowledged one.
func (c *consumer[T]) present(ctx context.Context, entries []entry[T]) []entry[T] {
	if c.w.spool.minReplicas == 0 {
		return entries // nothing is ever withdrawn
	}
	cmds := make([]*redis.XMessageSliceCmd, len(entries))
	_, err := c.w.spool.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, e := range entries {
			cmds[i] = p.XRangeN(ctx, c.kind.Stream(), e.id, e.id, 1)
		}
		return nil
	})
	if err != nil {
		return entries
	}
	kept := entries[:0:0]
	var gone []string
	for i, e := range entries {
		if len(cmds[i].Val()) == 0 {
			gone = append(gone, e.id)
		} else {
			kept = append(kept, e)
		}
	}
	if len(gone) > 0 {
		c.log.Info("spool: entries withdrawn while their page waited for the database are not replayed", "entries", len(gone))
		c.ack(ctx, gone)
	}
	return kept
}

// park handles a page whose commit failed with an internal error: neither
// the database's absence nor the records' fault, so neither waiting nor
// dead-lettering is right. The page is left as it is, delivered and not
// acknowledged: nothing is lost, nothing is dead-lettered, and the worker goes
// on with other pages. It is tried again only when a claim scan takes it
// over, after ClaimIdle, so a bug costs one attempt per page per ClaimIdle
// instead of a loop; once the bug (or the schema) is fixed, the next claim
// commits it. datastorage_replay_parked_total counts the records and the
// DataStorageReplayParked alert fires. A one-shot drain stops with the error.
func (c *consumer[T]) park(entries []entry[T], err error) error {
	c.count(resultParked, len(entries))
	c.w.spool.metrics.Parked.WithLabelValues(c.kind.String()).Add(float64(len(entries)))
	c.log.Error("spool: replay of a page failed with an internal error; the page is parked (left pending) and tried again after the claim timeout",
		"entries", len(entries), "first", entries[0].id, "claim_idle", c.w.opts.ClaimIdle, "error", err)
	if c.oneShot {
		return fmt.Errorf("spool: replay %d entries of %s: internal error: %w", len(entries), c.kind.Stream(), err)
	}
	return nil
}

// waitDatabase pings the database with backoff until it answers (true) or
// ctx ends (false).
func (c *consumer[T]) waitDatabase(ctx context.Context) bool {
	if c.w.opts.Database == nil {
		return ctx.Err() == nil
	}
	bo := backoff{}
	for {
		if c.databaseAnswers(ctx) {
			if c.dbDown {
				c.log.Info("spool: the database answers; replay resumes")
			}
			c.dbDown = false
			return true
		}
		c.dbDown = true
		if !sleep(ctx, bo.next()) {
			return false
		}
	}
}

// failed handles an entry that failed alone with a data error: it stays
// pending, to be claimed again after ClaimIdle, until it has been delivered
// MaxDeliveries times; then it is dead-lettered.
func (c *consumer[T]) failed(ctx context.Context, e entry[T], cause error) {
	n, err := c.deliveries(ctx, e.id)
	if err == nil && n >= int64(c.w.opts.MaxDeliveries) {
		c.deadLetter(ctx, e, n, cause)
		return
	}
	c.count(resultFailed, 1)
	c.log.Warn("spool: replay of an entry failed; it is retried after the claim timeout",
		"id", e.id, "deliveries", n, "max_deliveries", c.w.opts.MaxDeliveries, "error", cause)
}

// deliveries is how many times the group has delivered entry id.
func (c *consumer[T]) deliveries(ctx context.Context, id string) (int64, error) {
	p, err := c.w.spool.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{
		Stream: c.kind.Stream(), Group: Group, Start: id, End: id, Count: 1,
	}).Result()
	if err != nil {
		return 0, fmt.Errorf("spool: delivery count of %s: %w", id, err)
	}
	if len(p) == 0 {
		return 0, nil
	}
	return p[0].RetryCount, nil
}

// deadLetter moves an entry to the dead-letter stream with its last error.
// If Redis refuses, the entry stays pending and meets the same fate later.
func (c *consumer[T]) deadLetter(ctx context.Context, e entry[T], deliveries int64, cause error) {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), redisWriteTimeout)
	defer cancel()
	if deliveries == 0 {
		deliveries, _ = c.deliveries(wctx, e.id)
	}
	msg := e.raw
	if e.decoded {
		m := e.msg
		m.RetryCount = int(deliveries)
		m.LastError = cause.Error()
		if b, err := json.Marshal(m); err == nil {
			msg = string(b)
		}
	}
	moved, err := c.w.spool.deadLetterScript.Run(wctx, c.w.spool.rdb,
		[]string{c.kind.Stream(), c.kind.DeadLetters()}, Group, e.id, msg, cause.Error()).Int()
	if err != nil {
		c.log.Error("spool: could not dead-letter an entry; it stays pending", "id", e.id, "error", err)
		return
	}
	if moved == 0 {
		return // already handled by another worker
	}
	c.count(resultDeadLettered, 1)
	c.w.spool.metrics.DeadLettered.WithLabelValues(c.kind.String()).Inc()
	c.log.Error("spool: entry moved to the dead-letter stream", "id", e.id, "dead_letters", c.kind.DeadLetters(),
		"deliveries", deliveries, "error", cause)
}

// ack acknowledges and deletes committed entries in one MULTI. It insists
// for a while even after ctx ended: the commit is done, and an entry left
// behind is replayed once more (harmless, the insert is idempotent, but
// wasted work).
func (c *consumer[T]) ack(ctx context.Context, ids []string) {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), redisWriteTimeout)
	defer cancel()
	bo := backoff{}
	for {
		_, err := c.w.spool.rdb.TxPipelined(wctx, func(p redis.Pipeliner) error {
			p.XAck(wctx, c.kind.Stream(), Group, ids...)
			p.XDel(wctx, c.kind.Stream(), ids...)
			return nil
		})
		if err == nil {
			return
		}
		if !sleep(wctx, bo.next()) {
			c.log.Error("spool: could not acknowledge committed entries; they will be replayed again", "entries", len(ids), "error", err)
			return
		}
	}
}

// release removes this worker from the group when it holds nothing, so the
// group does not collect the names of every process that ever ran.
func (c *consumer[T]) release(ctx context.Context) {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_ = c.w.spool.releaseScript.Run(wctx, c.w.spool.rdb, []string{c.kind.Stream()}, Group, c.w.opts.Consumer).Err()
}

// reap removes, now and then, consumers of replicas that are gone: silent for
// reapIdle and holding nothing.
func (c *consumer[T]) reap(ctx context.Context) {
	if time.Now().Before(c.nextReap) {
		return
	}
	c.nextReap = time.Now().Add(reapEvery)
	consumers, err := c.w.spool.rdb.XInfoConsumers(ctx, c.kind.Stream(), Group).Result()
	if err != nil {
		return
	}
	for _, cs := range consumers {
		if cs.Name != c.w.opts.Consumer && cs.Pending == 0 && cs.Idle > reapIdle {
			_ = c.w.spool.releaseScript.Run(ctx, c.w.spool.rdb, []string{c.kind.Stream()}, Group, cs.Name).Err()
		}
	}
}

func (c *consumer[T]) count(result string, n int) {
	if n <= 0 {
		return
	}
	c.w.spool.metrics.Replayed.WithLabelValues(c.kind.String(), result).Add(float64(n))
	switch result {
	case resultCommitted:
		c.result.Committed += int64(n)
	case resultDuplicate:
		c.result.Duplicates += int64(n)
	case resultFailed:
		c.result.Failed += int64(n)
	case resultDeadLettered:
		c.result.DeadLettered += int64(n)
	case resultParked:
		c.result.Parked += int64(n)
	}
}

// backoff doubles a wait from backoffMin up to backoffMax.
type backoff struct{ d time.Duration }

func (b *backoff) next() time.Duration {
	b.d = min(max(2*b.d, backoffMin), backoffMax)
	return b.d
}

func (b *backoff) reset() { b.d = 0 }

// sleep waits d or until ctx ends, and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
