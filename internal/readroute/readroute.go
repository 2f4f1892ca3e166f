// Package readroute decides, for each read, whether PostgreSQL's primary or
// its streaming standby (database.replicaUrl) answers it. The decision lives
// here, in one place: the store asks [Router.Route] before each read that
// may be served by the standby, and the HTTP layer only marks a request that
// must see its own writes ([WithConsistency]), without knowing where reads
// go.
//
// The standby is used only while a background sampler ([Router.Run]) finds
// it up and its replay lag at most the configured maximum; the lag is
// sampled, never measured per request, so a read costs no extra round trip.
// Everything else (no standby configured, not sampled yet, down, too far
// behind, or strong consistency asked) reads from the primary.
package readroute

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Consistency is what a read asks of its data.
type Consistency uint8

const (
	// Eventual accepts the standby's copy, at most the maximum lag behind.
	Eventual Consistency = iota
	// Strong reads from the primary: the caller sees every write
	// acknowledged before the read began, its own included.
	Strong
)

// ParseConsistency reads a consistency as clients send it ("strong" or
// "eventual"; empty means eventual). ok is false for anything else.
func ParseConsistency(s string) (c Consistency, ok bool) {
	switch s {
	case "", "eventual":
		return Eventual, true
	case "strong":
		return Strong, true
	}
	return Eventual, false
}

type ctxKey struct{}

// WithConsistency returns ctx marked with c for the reads made under it.
func WithConsistency(ctx context.Context, c Consistency) context.Context {
	return context.WithValue(ctx, ctxKey{}, c)
}

// ConsistencyFrom returns the consistency ctx was marked with (Eventual if
// none).
func ConsistencyFrom(ctx context.Context) Consistency {
	c, _ := ctx.Value(ctxKey{}).(Consistency)
	return c
}

// Target is where a read goes.
type Target string

// The targets, as in the target label of datastorage_db_reads_total.
const (
	Primary Target = "primary"
	Replica Target = "replica"
)

// Reason says why a read went where it went (the reason label of
// datastorage_db_reads_total).
type Reason string

// The reasons.
const (
	// ReasonCurrent: the standby is up and within the maximum lag.
	ReasonCurrent Reason = "replica_current"
	// ReasonNoReplica: no standby is configured.
	ReasonNoReplica Reason = "no_replica"
	// ReasonStrong: the request asked for strong consistency.
	ReasonStrong Reason = "strong"
	// ReasonLag: the standby's last sampled lag is above the maximum.
	ReasonLag Reason = "lag"
	// ReasonReplicaDown: the standby did not answer its last sample (or has
	// not been sampled yet), or refused a connection to this read.
	ReasonReplicaDown Reason = "replica_down"
)

// Probe measures the standby's replay lag once. An error means the standby
// is down (or not a server the reads can use).
type Probe func(ctx context.Context) (time.Duration, error)

// Options configure a Router.
type Options struct {
	// Probe samples the standby; nil means no standby (every read goes to
	// the primary).
	Probe Probe
	// MaxLag is the largest sampled lag at which the standby still serves
	// reads.
	MaxLag time.Duration
	// Interval is the time between samples; 0 means 1 s (or MaxLag/5 when
	// that is shorter, so a standby falling behind is seen well before
	// its lag doubles the maximum).
	Interval time.Duration
	// Registerer receives the metrics; nil leaves them unregistered.
	Registerer prometheus.Registerer
	// Log receives the standby's state changes; nil discards them.
	Log *slog.Logger
}

// sample is the standby's last known state.
type sample struct {
	up  bool
	lag time.Duration
}

// Router routes reads. It is safe for concurrent use.
type Router struct {
	probe    Probe
	maxLag   time.Duration
	interval time.Duration
	log      *slog.Logger

	last atomic.Pointer[sample] // nil until the first sample

	reads *prometheus.CounterVec
	lag   prometheus.Gauge
	up    prometheus.Gauge
}

// New returns a Router. Until [Router.Run] (or [Router.Sample]) has seen the
// standby answer, reads go to the primary.
func New(o Options) *Router {
	r := &Router{probe: o.Probe, maxLag: o.MaxLag, interval: o.Interval, log: o.Log}
	if r.interval <= 0 {
		r.interval = time.Second
		if r.maxLag > 0 && r.maxLag/5 < r.interval {
			r.interval = max(r.maxLag/5, 50*time.Millisecond)
		}
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	r.reads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "datastorage_db_reads_total",
		Help: "Reads that may be served by the standby (lists, timelines, aggregations, exports, remediation reads), by target (primary, replica) and reason: replica_current, no_replica, strong (X-Consistency: strong), lag (standby above database.maxReplicaLag), replica_down.",
	}, []string{"target", "reason"})
	r.lag = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "datastorage_db_replica_lag_seconds",
		Help: "The standby's replay lag at its last sample (0 when it has replayed everything it received); -1 while it is down. Only with database.replicaUrl.",
	})
	r.up = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "datastorage_db_replica_up",
		Help: "1 if the standby (database.replicaUrl) answered its last sample, else 0. Only with database.replicaUrl.",
	})
	r.lag.Set(-1)
	for _, c := range []struct {
		t Target
		r Reason
	}{{Replica, ReasonCurrent}, {Primary, ReasonNoReplica}, {Primary, ReasonStrong}, {Primary, ReasonLag}, {Primary, ReasonReplicaDown}} {
		if c.r == ReasonNoReplica && r.probe != nil || c.r != ReasonNoReplica && r.probe == nil {
			continue
		}
		r.reads.WithLabelValues(string(c.t), string(c.r))
	}
	if o.Registerer != nil {
		o.Registerer.MustRegister(r.reads)
		// Without a standby the gauges would only say 0 or -1, which an
		// alert on a down standby would take for one.
		if r.probe != nil {
			o.Registerer.MustRegister(r.lag, r.up)
		}
	}
	return r
}

// HasReplica reports whether a standby is configured.
func (r *Router) HasReplica() bool { return r.probe != nil }

// Route decides where one read goes and counts it.
func (r *Router) Route(ctx context.Context) (Target, Reason) {
	t, why := r.decide(ctx)
	r.reads.WithLabelValues(string(t), string(why)).Inc()
	return t, why
}

func (r *Router) decide(ctx context.Context) (Target, Reason) {
	if r.probe == nil {
		return Primary, ReasonNoReplica
	}
	if ConsistencyFrom(ctx) == Strong {
		return Primary, ReasonStrong
	}
	s := r.last.Load()
	switch {
	case s == nil || !s.up:
		return Primary, ReasonReplicaDown
	case s.lag > r.maxLag:
		return Primary, ReasonLag
	}
	return Replica, ReasonCurrent
}

// Rerouted counts a read that was sent to the standby, failed there before
// anything was read, and is served by the primary instead; the standby
// counts as down until its next good sample.
func (r *Router) Rerouted(err error) {
	r.MarkDown(err)
	r.reads.WithLabelValues(string(Primary), string(ReasonReplicaDown)).Inc()
}

// MarkDown makes the standby count as down until its next good sample,
// after a read failed on it mid-way (that read fails; the next ones go to
// the primary).
func (r *Router) MarkDown(err error) { r.set(sample{up: false}, err) }

// Sample probes the standby once and records what it found.
func (r *Router) Sample(parent context.Context) {
	if r.probe == nil {
		return
	}
	ctx, cancel := context.WithTimeout(parent, max(r.interval, time.Second))
	defer cancel()
	lag, err := r.probe(ctx)
	if err != nil {
		if parent.Err() != nil {
			return // stopping, not a verdict on the standby
		}
		r.set(sample{up: false}, err)
		return
	}
	r.set(sample{up: true, lag: max(lag, 0)}, nil)
}

func (r *Router) set(s sample, err error) {
	prev := r.last.Swap(&s)
	if s.up {
		r.up.Set(1)
		r.lag.Set(s.lag.Seconds())
	} else {
		r.up.Set(0)
		r.lag.Set(-1)
	}
	wasUsable := prev != nil && prev.up && prev.lag <= r.maxLag
	usable := s.up && s.lag <= r.maxLag
	switch {
	case wasUsable && !usable && !s.up:
		r.log.Warn("standby down: reads go to the primary", "error", err)
	case wasUsable && !usable:
		r.log.Warn("standby behind: reads go to the primary", "lag", s.lag, "max", r.maxLag)
	case !wasUsable && usable:
		r.log.Info("standby current: reads go to it", "lag", s.lag)
	}
}

// Run samples the standby every interval until ctx ends. It returns at once
// when no standby is configured.
func (r *Router) Run(ctx context.Context) {
	if r.probe == nil {
		return
	}
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		r.Sample(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
