package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/ingest"
	"kubernaut.ai/datastorage/internal/spool"
	"kubernaut.ai/datastorage/internal/store"
	"kubernaut.ai/datastorage/internal/store/storetest"
	"kubernaut.ai/datastorage/internal/testenv"
)

// Spool replay stays idempotent with unique event ids (issue 18 item 7): an
// event spooled again after it was committed is stored once; a spooled
// event whose id was taken meanwhile by other content is a data error,
// dead-lettered, never retried as an outage, and the original stays.
func TestSpoolReplayOfAnEventIDIsIdempotentAndNeverForges(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, _ := storetest.New(t, store.Options{}, 1)
	addr, db := testenv.NewRedisDB(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr, DB: db})
	t.Cleanup(func() { _ = rdb.Close() })
	sp := spool.New(rdb, spool.Options{MaxLen: 1000, Metrics: spool.NewMetrics(prometheus.NewRegistry())})
	pipe := ingest.New(st, nil, ingest.Options{Writers: 1}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, pipe.Start(context.Background()))
	t.Cleanup(func() { _ = pipe.Stop(context.Background()) })
	w, err := sp.NewWorker(spool.WorkerOptions{Events: eventReplayer{pipe}, Database: st, BatchSize: 100, MaxDeliveries: 1})
	require.NoError(t, err)

	id := uuid.New()
	ts := time.Now().UTC().Add(-time.Hour).Format(time.RFC3339Nano)
	decode := func(outcome string) *audit.Event {
		v := &audit.Validator{MaxAge: 7 * 24 * time.Hour, MaxSkew: time.Hour, DefaultRetentionDays: 2555}
		ev, fe, err := v.DecodeOne(fmt.Appendf(nil, `{"version":"1.0","event_id":%q,"event_type":"gateway.signal.received",
			"event_timestamp":%q,"event_category":"gateway","event_action":"received","event_outcome":%q,
			"correlation_id":"rr-replay","event_data":{"n":1}}`, id, ts, outcome))
		require.NoError(t, err)
		require.Empty(t, fe)
		return ev
	}
	count := func() int {
		var n int
		require.NoError(t, st.Pool().QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE event_id = $1`, id).Scan(&n))
		return n
	}
	_, err = pipe.Submit(ctx, []*audit.Event{decode("success")})
	require.NoError(t, err)

	require.NoError(t, sp.Append(ctx, []*audit.Event{decode("success"), decode("success")}))
	res, err := w.Drain(ctx, spool.Events, nil)
	require.NoError(t, err)
	assert.EqualValues(t, 2, res.Committed)
	assert.Equal(t, 1, count(), "replayed twice, stored once")

	require.NoError(t, sp.Append(ctx, []*audit.Event{decode("failure")}))
	res, err = w.Drain(ctx, spool.Events, nil)
	require.NoError(t, err, "a conflict is the data's fault, not an outage")
	assert.Zero(t, res.Committed)
	assert.EqualValues(t, 1, res.Failed+res.DeadLettered)
	assert.Equal(t, 1, count())
	got, err := st.GetEvent(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, "success", got.Outcome, "the original stays")
}
