package spool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"kubernaut.ai/datastorage/internal/audit"
)

// Group is the consumer group every replica's replay worker joins (CONTRACT §14).
const Group = "data-storage-retry-workers"

// Kind is one kind of spooled record, with its own streams.
type Kind int

// The kinds of spooled records.
const (
	// Events are audit events (audit:dlq:events).
	Events Kind = iota + 1
	// Notifications are legacy notification audit records (audit:dlq:notifications).
	Notifications
)

// Kinds lists every kind, in the order reports show them.
func Kinds() []Kind { return []Kind{Events, Notifications} }

// ParseKind reads a kind by its name ("events", "notifications").
func ParseKind(s string) (Kind, error) {
	for _, k := range Kinds() {
		if k.String() == s {
			return k, nil
		}
	}
	return 0, fmt.Errorf("spool: unknown kind %q (want events or notifications)", s)
}

// String is the kind's name, also the value of the stream label of the metrics.
func (k Kind) String() string {
	switch k {
	case Events:
		return "events"
	case Notifications:
		return "notifications"
	default:
		return fmt.Sprintf("kind(%d)", int(k))
	}
}

// Stream is the key of the stream that queues this kind.
func (k Kind) Stream() string { return "audit:dlq:" + k.String() }

// DeadLetters is the key of the stream that keeps this kind's dead letters.
func (k Kind) DeadLetters() string { return "audit:dead-letter:" + k.String() }

// Type is the type member of this kind's messages.
func (k Kind) Type() string {
	if k == Notifications {
		return "notification_audit"
	}
	return "audit_event"
}

// messageField is the one field of a stream entry that holds its Message.
const messageField = "message"

// Fields a dead-letter entry has beside messageField: where it came from and
// why it failed, readable even when the message itself is not valid JSON.
const (
	sourceIDField  = "source_id"
	lastErrorField = "last_error"
)

// Message is the JSON held in the message field of every spool entry
// (CONTRACT §14).
type Message struct {
	// Type is "audit_event" or "notification_audit".
	Type string `json:"type"`
	// Payload is the complete record, with its final id: an audit.Event or an
	// audit.Notification in their JSON form.
	Payload json.RawMessage `json:"payload"`
	// Timestamp is when the record was first spooled.
	Timestamp time.Time `json:"timestamp"`
	// RetryCount is how many times the record failed to replay; set when it
	// is dead-lettered, reset to 0 when it is sent back.
	RetryCount int `json:"retry_count"`
	// LastError is the error of the last failed replay.
	LastError string `json:"last_error"`
}

// ErrFull is returned (wrapped) by Append and AppendNotification when the
// stream holds redis.dlqMaxLen entries, or would with this batch. Nothing
// was added. Test with errors.Is.
var ErrFull = errors.New("spool: the stream is full")

// ErrNotReplicated is returned (wrapped, with a *NotReplicatedError that
// says how many replicas confirmed) by Append and AppendNotification when
// fewer than Options.MinReplicas replicas confirmed the entries within
// Options.WaitTimeout. The spool withdrew the entries (see
// NotReplicatedError.WithdrawErr): the write must be refused, not
// acknowledged, because a failover now could lose them. Test with errors.Is.
var ErrNotReplicated = errors.New("spool: the Redis replicas did not confirm the entries")

// NotReplicatedError details ErrNotReplicated.
type NotReplicatedError struct {
	// Want is Options.MinReplicas; Got is how many replicas WAIT counted.
	Want, Got int
	// Timeout is Options.WaitTimeout.
	Timeout time.Duration
	// WithdrawErr is why the entries could not be deleted again (nil when
	// they were): then they may still be replayed, which stores each event
	// once under its id whether or not the client retries it.
	WithdrawErr error
}

func (e *NotReplicatedError) Error() string {
	msg := fmt.Sprintf("%d of the %d Redis replicas required (redis.minReplicas) confirmed the entries within %s",
		e.Got, e.Want, e.Timeout)
	if e.WithdrawErr != nil {
		return msg + "; withdrawing them failed, they may still be replayed: " + e.WithdrawErr.Error()
	}
	return msg + "; they were withdrawn"
}

// Unwrap makes errors.Is(err, ErrNotReplicated) hold.
func (e *NotReplicatedError) Unwrap() error { return ErrNotReplicated }

// fullReply is the error the append script answers when the stream is full.
const fullReply = "SPOOLFULL"

// appendScriptSrc adds one entry per ARGV[2..] to stream KEYS[1] unless the
// stream would then hold more than ARGV[1] entries, and returns their ids.
// Check and adds run as one step, so concurrent appends from several replicas
// can never overfill it.
const appendScriptSrc = `
local room = tonumber(ARGV[1]) - redis.call('XLEN', KEYS[1])
local n = #ARGV - 1
if n > room then
  return redis.error_reply('` + fullReply + ` the stream holds ' .. (tonumber(ARGV[1]) - room) .. ' of ' .. ARGV[1] .. ' entries')
end
local ids = {}
for i = 2, #ARGV do
  ids[#ids + 1] = redis.call('XADD', KEYS[1], '*', '` + messageField + `', ARGV[i])
end
return ids
`

// Options tune a Spool.
type Options struct {
	// MaxLen is redis.dlqMaxLen: the most entries one stream may hold.
	MaxLen int64
	// Metrics receives the counters; nil keeps them unregistered.
	Metrics *Metrics
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// MinReplicas is redis.minReplicas resolved: when above 0, an append
	// succeeds only once WAIT counts that many replicas holding it.
	MinReplicas int
	// WaitTimeout bounds that WAIT (redis.waitTimeout); 0 means 1s.
	WaitTimeout time.Duration
}

// Spool appends to the Redis streams and administers them. It is safe for
// concurrent use.
type Spool struct {
	rdb         *redis.Client
	maxLen      int64
	metrics     *Metrics
	now         func() time.Time
	minReplicas int
	waitTimeout time.Duration

	appendScript     *redis.Script
	deadLetterScript *redis.Script
	redriveScript    *redis.Script
	releaseScript    *redis.Script
}

// New returns a spool over rdb. The caller keeps ownership of rdb and closes
// it after the spool's last use.
func New(rdb *redis.Client, opts Options) *Spool {
	if opts.MaxLen <= 0 {
		opts.MaxLen = 1_000_000
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics(nil)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.WaitTimeout <= 0 {
		opts.WaitTimeout = time.Second
	}
	return &Spool{
		minReplicas:      opts.MinReplicas,
		waitTimeout:      opts.WaitTimeout,
		rdb:              rdb,
		maxLen:           opts.MaxLen,
		metrics:          opts.Metrics,
		now:              opts.Now,
		appendScript:     redis.NewScript(appendScriptSrc),
		deadLetterScript: redis.NewScript(deadLetterScriptSrc),
		redriveScript:    redis.NewScript(redriveScriptSrc),
		releaseScript:    redis.NewScript(releaseScriptSrc),
	}
}

// Ping checks that Redis answers.
func (s *Spool) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("spool: ping: %w", err)
	}
	return nil
}

// Append durably queues events, with their final ids, in one round trip: all
// of them or, on any error, none. It returns ErrFull (wrapped) when the stream
// has no room for all of them. It implements the ingest pipeline's Spool.
func (s *Spool) Append(ctx context.Context, events []*audit.Event) error {
	if len(events) == 0 {
		return nil
	}
	now := s.now().UTC()
	msgs := make([]any, len(events))
	for i, e := range events {
		payload, err := json.Marshal(spooledEvent(e))
		if err != nil {
			return fmt.Errorf("spool: encode event %s: %w", e.ID, err)
		}
		if msgs[i], err = encodeMessage(Events, payload, now); err != nil {
			return err
		}
	}
	return s.append(ctx, Events, msgs)
}

// spooledEvent is the event as it is queued: everything the client sent and
// the server decided (id, date, defaults, a resolved parent date), without the
// hash-chain members a failed commit may have left on it; the replay's commit
// computes those again.
func spooledEvent(e *audit.Event) *audit.Event {
	c := *e
	c.ChainSeq, c.Hash, c.PreviousHash, c.HashAlgorithm = 0, "", nil, ""
	return &c
}

// AppendNotification durably queues a notification audit record. It returns
// ErrFull (wrapped) when the stream is full.
func (s *Spool) AppendNotification(ctx context.Context, n audit.Notification) error {
	payload, err := json.Marshal(n)
	if err != nil {
		return fmt.Errorf("spool: encode notification %s: %w", n.NotificationID, err)
	}
	msg, err := encodeMessage(Notifications, payload, s.now().UTC())
	if err != nil {
		return err
	}
	return s.append(ctx, Notifications, []any{msg})
}

func encodeMessage(k Kind, payload []byte, now time.Time) (string, error) {
	b, err := json.Marshal(Message{Type: k.Type(), Payload: payload, Timestamp: now})
	if err != nil {
		return "", fmt.Errorf("spool: encode message: %w", err)
	}
	return string(b), nil
}

func (s *Spool) append(ctx context.Context, k Kind, msgs []any) error {
	args := make([]any, 0, len(msgs)+1)
	args = append(args, s.maxLen)
	args = append(args, msgs...)
	var err error
	if s.minReplicas > 0 {
		err = s.appendReplicated(ctx, k, args)
	} else {
		err = s.appendScript.Run(ctx, s.rdb, []string{k.Stream()}, args...).Err()
	}
	switch {
	case err == nil:
		s.metrics.Enqueued.WithLabelValues(k.String()).Add(float64(len(msgs)))
		return nil
	case errors.Is(err, ErrNotReplicated):
		s.metrics.Refused.WithLabelValues(k.String(), refusedUnreplicated).Add(float64(len(msgs)))
		return fmt.Errorf("spool: append %d %s: %w", len(msgs), k, err)
	case strings.HasPrefix(err.Error(), fullReply):
		s.metrics.Refused.WithLabelValues(k.String(), refusedFull).Add(float64(len(msgs)))
		return fmt.Errorf("spool: append %d %s: %w (%s)", len(msgs), k, ErrFull, strings.TrimPrefix(err.Error(), fullReply+" "))
	default:
		s.metrics.Refused.WithLabelValues(k.String(), refusedUnavailable).Add(float64(len(msgs)))
		return fmt.Errorf("spool: append %d %s: %w", len(msgs), k, err)
	}
}

// appendReplicated runs the append script and WAIT in one pipeline: one
// round trip on one connection, which WAIT needs (it counts the replicas
// that have this connection's writes). When too few replicas confirm, the
// entries are deleted again, so a 503 does not leave behind events that the
// replay would store anyway: a client retrying without an event_id of its
// own would get them twice. If the deletion fails too, what is left is
// replayed under the events' ids, and a retry with the same ids is stored
// once.
func (s *Spool) appendReplicated(ctx context.Context, k Kind, args []any) error {
	start := time.Now()
	ids, got, err := s.appendAndWait(ctx, k, args, true)
	if redis.HasErrorPrefix(err, "NOSCRIPT") {
		// A new, restarted or newly promoted master: send the script
		// itself, which also caches it there.
		ids, got, err = s.appendAndWait(ctx, k, args, false)
	}
	if err != nil && len(ids) == 0 {
		return err
	}
	s.metrics.WaitSeconds.WithLabelValues(k.String()).Observe(time.Since(start).Seconds())
	if err == nil && got >= s.minReplicas {
		return nil
	}
	s.metrics.WaitShortfalls.WithLabelValues(k.String()).Inc()
	nre := &NotReplicatedError{Want: s.minReplicas, Got: got, Timeout: s.waitTimeout}
	// The caller's deadline may be spent on the WAIT; the withdrawal gets
	// its own short one.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := s.rdb.XDel(wctx, k.Stream(), ids...).Err(); err != nil {
		nre.WithdrawErr = err
	}
	return nre
}

// appendAndWait sends the script (by its hash when cached) and WAIT in one
// pipeline. It returns the ids of the entries added even when WAIT failed,
// so that the caller can withdraw them.
func (s *Spool) appendAndWait(ctx context.Context, k Kind, args []any, cached bool) (ids []string, replicas int, err error) {
	keys := []string{k.Stream()}
	pipe := s.rdb.Pipeline()
	var script *redis.Cmd
	if cached {
		script = pipe.EvalSha(ctx, s.appendScript.Hash(), keys, args...)
	} else {
		script = pipe.Eval(ctx, appendScriptSrc, keys, args...)
	}
	// A pipeline reads with the client's ReadTimeout, which must exceed
	// WaitTimeout (the service's client sees to it).
	wait := pipe.Do(ctx, "WAIT", s.minReplicas, s.waitTimeout.Milliseconds())
	_, _ = pipe.Exec(ctx) // each command's error is read below
	if ids, err = script.StringSlice(); err != nil {
		return nil, 0, err
	}
	n, err := wait.Int()
	if err != nil {
		return ids, 0, fmt.Errorf("spool: wait for replicas: %w", err)
	}
	return ids, int(n), nil
}

// ensureGroup creates the consumer group (and the stream) if missing. The
// group starts at the beginning of the stream, so entries spooled before any
// worker existed are replayed too.
func (s *Spool) ensureGroup(ctx context.Context, k Kind) error {
	err := s.rdb.XGroupCreateMkStream(ctx, k.Stream(), Group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("spool: create consumer group on %s: %w", k.Stream(), err)
	}
	return nil
}

// isNoGroup reports the error Redis gives when the stream or its group is
// gone (deleted by hand, or a Redis restarted without persistence).
func isNoGroup(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOGROUP")
}

// idTime is the time encoded in a stream entry id (milliseconds-sequence).
func idTime(id string) time.Time {
	ms, _, ok := strings.Cut(id, "-")
	if !ok {
		return time.Time{}
	}
	var v int64
	for _, c := range ms {
		if c < '0' || c > '9' {
			return time.Time{}
		}
		v = v*10 + int64(c-'0')
	}
	return time.UnixMilli(v)
}
