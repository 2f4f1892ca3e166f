package readroute

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseConsistency(t *testing.T) {
	for in, want := range map[string]Consistency{"": Eventual, "eventual": Eventual, "strong": Strong} {
		c, ok := ParseConsistency(in)
		assert.True(t, ok, in)
		assert.Equal(t, want, c, in)
	}
	for _, bad := range []string{"Strong", "STRONG", "bounded", " strong", "1"} {
		_, ok := ParseConsistency(bad)
		assert.False(t, ok, bad)
	}
	assert.Equal(t, Eventual, ConsistencyFrom(context.Background()))
	assert.Equal(t, Strong, ConsistencyFrom(WithConsistency(context.Background(), Strong)))
}

// fakeProbe is a standby whose answers the test sets.
type fakeProbe struct {
	lag time.Duration
	err error
}

func (f *fakeProbe) probe(context.Context) (map[string]time.Duration, error) {
	if f.err != nil {
		return nil, f.err
	}
	return map[string]time.Duration{"s1": f.lag}, nil
}

func TestRouteFollowsTheSampledStandby(t *testing.T) {
	reg := prometheus.NewRegistry()
	fp := &fakeProbe{}
	r := New(Options{Probe: fp.probe, MaxLag: 5 * time.Second, Registerer: reg})
	ctx := context.Background()
	strong := WithConsistency(ctx, Strong)

	route := func(ctx context.Context) string {
		t, why := r.Route(ctx)
		return string(t) + "/" + string(why)
	}
	assert.Equal(t, "primary/replica_down", route(ctx), "not sampled yet: the primary")

	fp.lag = 2 * time.Second
	r.Sample(ctx)
	assert.Equal(t, "replica/replica_current", route(ctx))
	assert.Equal(t, "primary/strong", route(strong))
	assert.InDelta(t, 2.0, gaugeValue(t, r.lag.WithLabelValues("s1")), 1e-9)

	fp.lag = 5 * time.Second
	r.Sample(ctx)
	assert.Equal(t, "replica/replica_current", route(ctx), "at the maximum: still the standby")
	fp.lag = 5*time.Second + time.Millisecond
	r.Sample(ctx)
	assert.Equal(t, "primary/lag", route(ctx))

	fp.err = errors.New("connection refused")
	r.Sample(ctx)
	assert.Equal(t, "primary/replica_down", route(ctx))
	assert.Equal(t, -1.0, gaugeValue(t, r.lag.WithLabelValues("s1")))
	assert.Equal(t, 0.0, gaugeValue(t, r.up.WithLabelValues("s1")))

	fp.err, fp.lag = nil, 0
	r.Sample(ctx)
	assert.Equal(t, "replica/replica_current", route(ctx))
	r.Rerouted(errors.New("dial: refused"))
	assert.Equal(t, "primary/replica_down", route(ctx), "a refused connection counts until the next sample")

	reads := map[string]float64{}
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "datastorage_db_reads_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			key := ""
			for _, l := range m.GetLabel() {
				key += l.GetName() + "=" + l.GetValue() + " "
			}
			reads[key] = m.GetCounter().GetValue()
		}
	}
	assert.Equal(t, map[string]float64{
		"reason=lag target=primary ":             1,
		"reason=replica_current target=replica ": 3,
		"reason=replica_down target=primary ":    4,
		"reason=strong target=primary ":          1,
	}, reads)
}

// Several standbys behind one replicaUrl: each has its own sample; the
// standbys serve while one is current, a connection on one that is behind
// or unknown is not usable, and a server no probe reaches any more goes
// stale and counts as down.
func TestEachStandbyHasItsOwnLag(t *testing.T) {
	reg := prometheus.NewRegistry()
	lags := map[string]time.Duration{"a:5432": 0, "b:5432": 9 * time.Second}
	r := New(Options{Probe: func(context.Context) (map[string]time.Duration, error) { return lags, nil },
		MaxLag: 5 * time.Second, Interval: time.Hour, Registerer: reg})
	ctx := context.Background()
	r.Sample(ctx)
	tg, why := r.Route(ctx)
	assert.Equal(t, Replica, tg, "one standby is current: the standbys serve")
	assert.Equal(t, ReasonCurrent, why)
	usable, known := r.Usable("a:5432")
	assert.True(t, usable && known)
	usable, known = r.Usable("b:5432")
	assert.True(t, known)
	assert.False(t, usable, "b is behind")
	_, known = r.Usable("c:5432")
	assert.False(t, known, "never sampled")
	assert.InDelta(t, 9.0, gaugeValue(t, r.lag.WithLabelValues("b:5432")), 1e-9)
	assert.InDelta(t, 0.0, gaugeValue(t, r.lag.WithLabelValues("a:5432")), 1e-9)

	r.Refused("b:5432")
	var m dto.Metric
	require.NoError(t, r.refused.WithLabelValues("b:5432").Write(&m))
	assert.Equal(t, 1.0, m.GetCounter().GetValue())
	require.NoError(t, r.reads.WithLabelValues("primary", "lag").Write(&m))
	assert.Equal(t, 1.0, m.GetCounter().GetValue())

	// Both behind: the primary, for lag.
	lags["a:5432"] = 6 * time.Second
	r.Sample(ctx)
	tg, why = r.Route(ctx)
	assert.Equal(t, Primary, tg)
	assert.Equal(t, ReasonLag, why)

	// A new connection's sample (Observe) makes a server usable at once.
	r.Observe("c:5432", 0)
	usable, known = r.Usable("c:5432")
	assert.True(t, usable && known)

	// A server the probe no longer reaches goes stale: unknown, gauges down.
	r.staleAfter = 0
	delete(lags, "b:5432")
	r.Sample(ctx)
	_, known = r.Usable("b:5432")
	assert.False(t, known)
	assert.Equal(t, 0.0, gaugeValue(t, r.up.WithLabelValues("b:5432")))
	assert.Equal(t, -1.0, gaugeValue(t, r.lag.WithLabelValues("b:5432")))

	// Nothing answers: every server is down.
	r.staleAfter = time.Hour
	r.Sample(ctx)
	lags = nil
	r.probe = func(context.Context) (map[string]time.Duration, error) { return nil, errors.New("refused") }
	r.Sample(ctx)
	tg, why = r.Route(ctx)
	assert.Equal(t, Primary, tg)
	assert.Equal(t, ReasonReplicaDown, why)
	assert.Equal(t, 0.0, gaugeValue(t, r.up.WithLabelValues("a:5432")))

	// Long unreachable: forgotten, its series gone.
	r.forgetAfter = 0
	r.Sample(ctx)
	assert.False(t, r.up.DeleteLabelValues("a:5432"), "a:5432's series was already deleted")
	_, known = r.Usable("a:5432")
	assert.False(t, known)
}

func TestNoReplicaReadsThePrimary(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := New(Options{MaxLag: time.Second, Registerer: reg})
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		assert.Equal(t, "datastorage_db_reads_total", mf.GetName(), "no standby gauges without a standby")
	}
	assert.False(t, r.HasReplica())
	r.Sample(context.Background())
	tg, why := r.Route(context.Background())
	assert.Equal(t, Primary, tg)
	assert.Equal(t, ReasonNoReplica, why)
	done := make(chan struct{})
	go func() { r.Run(context.Background()); close(done) }()
	<-done // returns at once without a standby
}

// A sample cut short because the service stops is not a verdict: the
// standby keeps its last state.
func TestSampleDuringShutdownKeepsState(t *testing.T) {
	fp := &fakeProbe{}
	r := New(Options{Probe: fp.probe, MaxLag: time.Second})
	r.Sample(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	fp.err = context.Canceled
	r.Sample(ctx)
	tg, _ := r.Route(context.Background())
	assert.Equal(t, Replica, tg)
}

func TestIntervalFollowsMaxLag(t *testing.T) {
	assert.Equal(t, time.Second, New(Options{MaxLag: 5 * time.Second}).interval)
	assert.Equal(t, 400*time.Millisecond, New(Options{MaxLag: 2 * time.Second}).interval)
	assert.Equal(t, 50*time.Millisecond, New(Options{MaxLag: 10 * time.Millisecond}).interval)
	assert.Equal(t, 3*time.Second, New(Options{MaxLag: time.Second, Interval: 3 * time.Second}).interval)
}

func gaugeValue(t *testing.T, g prometheus.Gauge) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, g.Write(&m))
	return m.GetGauge().GetValue()
}
