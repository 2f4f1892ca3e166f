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
//
// database.replicaUrl may reach several standbys (libpq multi-host, or one
// Kubernetes service in front of them), each with its own lag. So the
// router keeps a sample per server ([Router.Observe], [Router.Usable]): a
// read goes to the standbys while at least one is current, and the store
// refuses, at acquire, a connection whose server is behind or has no fresh
// sample, sending that read to the primary ([Router.Refused]).
package readroute

import (
	"context"
	"errors"
	"log/slog"
	"sync"
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
	// ReasonLag: the standby's last sampled lag is above the maximum (every
	// standby's, when there are several), or the connection the read was
	// given is on a standby that is behind or not freshly sampled.
	ReasonLag Reason = "lag"
	// ReasonReplicaDown: the standby did not answer its last sample (or has
	// not been sampled yet), or refused a connection to this read.
	ReasonReplicaDown Reason = "replica_down"
)

// Probe measures the standbys' replay lag once: the lag of each server it
// reached, by a key naming the server (as [Router.Observe] receives it). An
// error means no standby could be reached (or none is a server the reads
// can use).
type Probe func(ctx context.Context) (map[string]time.Duration, error)

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

// sample is the standbys' last known state as a whole: up if any answered,
// lag the smallest lag of those (the reads can be served by that one).
type sample struct {
	up  bool
	lag time.Duration
}

// serverSample is one standby's last sample.
type serverSample struct {
	lag  time.Duration
	at   time.Time // of the last good sample
	down bool      // a later probe reached no standby at all
}

// fresh reports whether s still describes its server at now.
func (s serverSample) fresh(now time.Time, staleAfter time.Duration) bool {
	return !s.down && now.Sub(s.at) <= staleAfter
}

// Router routes reads. It is safe for concurrent use.
type Router struct {
	probe    Probe
	maxLag   time.Duration
	interval time.Duration
	log      *slog.Logger

	last atomic.Pointer[sample] // nil until the first sample

	// staleAfter is how long a server's sample counts: past it the server
	// is unknown until sampled again. forgetAfter is how long a server
	// nothing reaches keeps its series (a standby replaced by a new pod
	// under another address would otherwise show as down forever).
	staleAfter, forgetAfter time.Duration
	mu                      sync.Mutex
	servers                 map[string]serverSample // by server key; guarded by mu

	reads   *prometheus.CounterVec
	lag     *prometheus.GaugeVec
	up      *prometheus.GaugeVec
	refused *prometheus.CounterVec
}

// New returns a Router. Until [Router.Run] (or [Router.Sample]) has seen the
// standby answer, reads go to the primary.
func New(o Options) *Router {
	r := &Router{probe: o.Probe, maxLag: o.MaxLag, interval: o.Interval, log: o.Log, servers: map[string]serverSample{}}
	if r.interval <= 0 {
		r.interval = time.Second
		if r.maxLag > 0 && r.maxLag/5 < r.interval {
			r.interval = max(r.maxLag/5, 50*time.Millisecond)
		}
	}
	// Three intervals: one sample missed (a busy pool) does not make a
	// standby unknown, and a server not sampled for that long is re-sampled
	// on the connection a read is about to use.
	r.staleAfter = 3 * r.interval
	r.forgetAfter = max(100*r.interval, 5*time.Minute)
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	r.reads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "datastorage_db_reads_total",
		Help: "Reads that may be served by the standby (lists, timelines, aggregations, exports, remediation reads), by target (primary, replica) and reason: replica_current, no_replica, strong (X-Consistency: strong), lag (standby above database.maxReplicaLag), replica_down.",
	}, []string{"target", "reason"})
	r.lag = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "datastorage_db_replica_lag_seconds",
		Help: "Each standby's replay lag at its last sample (0 when it has replayed everything it received), by server (host:port as the standby sees itself); -1 while it is down or not sampled recently. Only with database.replicaUrl.",
	}, []string{"server"})
	r.up = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "datastorage_db_replica_up",
		Help: "1 if the standby answered a sample within the last three sampling intervals, else 0, by server. Only with database.replicaUrl.",
	}, []string{"server"})
	r.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "datastorage_db_replica_refused_total",
		Help: "Standby connections refused to a read because their server was behind database.maxReplicaLag or had no fresh sample (the read went to the primary), by server.",
	}, []string{"server"})
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
			o.Registerer.MustRegister(r.lag, r.up, r.refused)
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

// Observe records a sample of one standby taken outside [Router.Sample]:
// on a connection just made to it, or re-sampled before a read uses it.
// It informs [Router.Usable] and the server's gauges; the standbys' state
// as a whole changes only at the next Sample.
func (r *Router) Observe(server string, lag time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.observeLocked(server, lag, time.Now())
}

func (r *Router) observeLocked(server string, lag time.Duration, at time.Time) {
	lag = max(lag, 0)
	r.servers[server] = serverSample{lag: lag, at: at}
	r.up.WithLabelValues(server).Set(1)
	if lag == Unknown {
		r.lag.WithLabelValues(server).Set(-1)
	} else {
		r.lag.WithLabelValues(server).Set(lag.Seconds())
	}
}

// Unknown is the lag of a standby whose lag cannot be told (it never
// replayed a commit and is not current): larger than any maximum.
const Unknown = time.Duration(1<<63 - 1)

// Usable reports whether a read may run on a connection to server: known
// is whether the server has a sample from the last three sampling
// intervals, usable whether that sample is within the maximum lag.
func (r *Router) Usable(server string) (usable, known bool) {
	r.mu.Lock()
	s, ok := r.servers[server]
	r.mu.Unlock()
	if !ok || !s.fresh(time.Now(), r.staleAfter) {
		return false, false
	}
	return s.lag <= r.maxLag, true
}

// Refused counts a standby connection refused to a read because its
// server is behind or unknown; the read goes to the primary and is counted
// there with reason lag.
func (r *Router) Refused(server string) {
	r.refused.WithLabelValues(server).Inc()
	r.reads.WithLabelValues(string(Primary), string(ReasonLag)).Inc()
}

// Sample probes the standbys once and records what it found.
func (r *Router) Sample(parent context.Context) {
	if r.probe == nil {
		return
	}
	ctx, cancel := context.WithTimeout(parent, max(r.interval, time.Second))
	defer cancel()
	lags, err := r.probe(ctx)
	if err == nil && len(lags) == 0 {
		err = errNoStandby
	}
	if err != nil && parent.Err() != nil {
		return // stopping, not a verdict on the standbys
	}
	now := time.Now()
	r.mu.Lock()
	if err != nil {
		// None answered: every server counts as down.
		for server, s := range r.servers {
			s.down = true
			r.servers[server] = s
		}
	}
	for server, lag := range lags {
		r.observeLocked(server, lag, now)
	}
	// The standbys as a whole: up if any has a fresh sample, behind by the
	// least lag among them. Servers not sampled for too long count as down,
	// and are forgotten after a while.
	all := sample{}
	for server, s := range r.servers {
		if now.Sub(s.at) > r.forgetAfter {
			delete(r.servers, server)
			r.up.DeleteLabelValues(server)
			r.lag.DeleteLabelValues(server)
			continue
		}
		if !s.fresh(now, r.staleAfter) {
			r.up.WithLabelValues(server).Set(0)
			r.lag.WithLabelValues(server).Set(-1)
			continue
		}
		if !all.up || s.lag < all.lag {
			all = sample{up: true, lag: s.lag}
		}
	}
	r.mu.Unlock()
	r.set(all, err)
}

// errNoStandby is a probe that reached no server.
var errNoStandby = errors.New("readroute: no standby answered")

func (r *Router) set(s sample, err error) {
	prev := r.last.Swap(&s)
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
