package ingest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
)

// stamped gives each event an event_timestamp age before now.
func stamped(events []*audit.Event, age time.Duration) []*audit.Event {
	for _, e := range events {
		e.Timestamp = audit.Time(time.Now().Add(-age))
	}
	return events
}

func lagOf(t *testing.T, m *Metrics, path string) (count uint64, sum float64) {
	t.Helper()
	return histogram(t, m.Lag.WithLabelValues(path).(prometheus.Histogram))
}

func TestLagIsObservedPerCommittedEventByPath(t *testing.T) {
	t.Parallel()
	st := &fakeStore{}
	p, m := start(t, st, &fakeSpool{}, Options{})

	_, err := p.Submit(context.Background(), stamped(newEvents(3, "rr-live"), 2*time.Minute))
	require.NoError(t, err)
	n, sum := lagOf(t, m, "live")
	assert.EqualValues(t, 3, n)
	assert.GreaterOrEqual(t, sum, 3*120.0, "each event is two minutes old at its commit")
	assert.Less(t, sum, 3*150.0)

	require.NoError(t, p.Replay(context.Background(), stamped(newEvents(2, "rr-replay"), time.Hour)))
	n, sum = lagOf(t, m, "replayed")
	assert.EqualValues(t, 2, n)
	assert.GreaterOrEqual(t, sum, 2*3600.0)
	n, _ = lagOf(t, m, "live")
	assert.EqualValues(t, 3, n, "replayed events are not live ones")
}

func TestLagIsNotObservedForEventsThatWereNotCommitted(t *testing.T) {
	t.Parallel()
	st := &fakeStore{insert: func(context.Context, int, []*audit.Event) (int64, error) {
		return 0, &pgconn.PgError{Code: "08006"}
	}}
	p, m := start(t, st, &fakeSpool{}, Options{})
	o, err := p.Submit(context.Background(), stamped(newEvents(2, "rr"), time.Minute))
	require.NoError(t, err)
	require.Equal(t, Queued, o)
	n, _ := lagOf(t, m, "live")
	assert.Zero(t, n, "a spooled event reaches the trail later; its lag is observed when it is replayed")
}

func TestLagOfAnEventStampedInTheFutureIsZero(t *testing.T) {
	t.Parallel()
	p, m := start(t, &fakeStore{}, nil, Options{})
	_, err := p.Submit(context.Background(), stamped(newEvents(1, "rr"), -30*time.Minute))
	require.NoError(t, err)
	n, sum := lagOf(t, m, "live")
	assert.EqualValues(t, 1, n)
	assert.Zero(t, sum, "clock skew is not negative lag")
}
