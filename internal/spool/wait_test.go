package spool_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/spool"
	"kubernaut.ai/datastorage/internal/testenv"
)

// haSpool returns a spool on a master with one replica, watched by Sentinels, reached through
// a failover client as the service does, requiring minReplicas confirmations.
func haSpool(t *testing.T, h *testenv.RedisHA, minReplicas int) (*spool.Spool, *redis.Client, *spool.Metrics) {
	t.Helper()
	rdb := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName: h.MasterName, SentinelAddrs: h.SentinelAddrs(),
		DialTimeout: time.Second, ReadTimeout: 5 * time.Second, MaxRetries: 1,
	})
	t.Cleanup(func() { _ = rdb.Close() })
	m := spool.NewMetrics(prometheus.NewRegistry())
	return spool.New(rdb, spool.Options{
		MaxLen: 1000, Metrics: m, MinReplicas: minReplicas, WaitTimeout: 300 * time.Millisecond,
	}), rdb, m
}

func histogramCount(t *testing.T, o prometheus.Observer) uint64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, o.(prometheus.Metric).Write(&m))
	return m.GetHistogram().GetSampleCount()
}

// TestAppendWaitsForReplicas checks the three answers of an append with redis.minReplicas:
// confirmed (the replica holds the entries when Append returns), a shortfall with the replica
// stopped (ErrNotReplicated naming the counts, the entries withdrawn so no replay stores what
// was refused), and a shortfall when more replicas are required than exist.
func TestAppendWaitsForReplicas(t *testing.T) {
	t.Parallel()
	h := testenv.NewRedisHA(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sp, rdb, m := haSpool(t, h, 1)
	stream := spool.Events.Stream()
	replica := redis.NewClient(&redis.Options{Addr: h.Servers[1].Addr()})
	defer replica.Close()

	require.NoError(t, sp.Append(ctx, newEvents(3)))
	assert.EqualValues(t, 3, replica.XLen(ctx, stream).Val(), "WAIT returned only once the replica had the entries")
	assert.EqualValues(t, 1, histogramCount(t, m.WaitSeconds.WithLabelValues("events")))
	assert.Zero(t, value(t, m.WaitShortfalls.WithLabelValues("events")))

	// The script is cached per server: a master that lost it (restarted, or a promoted
	// replica) gets it sent in full.
	require.NoError(t, rdb.ScriptFlush(ctx).Err())
	require.NoError(t, sp.AppendNotification(ctx, audit.Notification{NotificationID: "n-1"}))

	require.NoError(t, h.Servers[1].Stop())
	err := sp.Append(ctx, newEvents(2))
	require.ErrorIs(t, err, spool.ErrNotReplicated)
	var nre *spool.NotReplicatedError
	require.True(t, errors.As(err, &nre))
	assert.Equal(t, 1, nre.Want)
	assert.Equal(t, 0, nre.Got)
	assert.NoError(t, nre.WithdrawErr)
	assert.Contains(t, err.Error(), "0 of the 1 Redis replicas required (redis.minReplicas) confirmed the entries within 300ms; they were withdrawn")
	assert.EqualValues(t, 3, xlen(t, rdb, stream), "the unconfirmed entries are withdrawn")
	assert.EqualValues(t, 1, value(t, m.WaitShortfalls.WithLabelValues("events")))
	assert.EqualValues(t, 2, value(t, m.Refused.WithLabelValues("events", "unreplicated")))
	assert.EqualValues(t, 3, value(t, m.Enqueued.WithLabelValues("events")), "refused entries are not counted as enqueued")

	// Without the requirement the same Redis takes the write.
	plain, _, _ := haSpool(t, h, 0)
	require.NoError(t, plain.Append(ctx, newEvents(1)))
	assert.EqualValues(t, 4, xlen(t, rdb, stream))

	require.NoError(t, h.Servers[1].Start())
	two, _, _ := haSpool(t, h, 2)
	err = two.Append(ctx, newEvents(1))
	require.ErrorAs(t, err, &nre)
	assert.Equal(t, 2, nre.Want)
	assert.LessOrEqual(t, nre.Got, 1, "there is one replica to count")
	assert.EqualValues(t, 4, xlen(t, rdb, stream))
}

// TestWorkerSkipsEntriesWithdrawnWhileWaiting: a page the worker holds while the database is
// down may contain entries an unreplicated append withdrew (their writes were answered 503);
// when the database returns they are not stored, and they leave the pending list.
func TestWorkerSkipsEntriesWithdrawnWhileWaiting(t *testing.T) {
	t.Parallel()
	addr, db := testenv.NewRedisDB(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr, DB: db})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	stream := spool.Events.Stream()
	// Appended without WAIT (this Redis has no replica); replayed by a worker of a spool that
	// requires one, as in the service.
	require.NoError(t, spool.New(rdb, spool.Options{}).Append(ctx, newEvents(10)))
	sp := spool.New(rdb, spool.Options{MinReplicas: 1})
	sink := newMemSink()
	sink.down.Store(true)
	runWorker(t, sp, spool.WorkerOptions{Events: sink, Database: sink, BatchSize: 10})
	eventually(t, "the page held", func() bool { return pendingCount(t, rdb, stream) == 10 })

	entries, err := rdb.XRange(ctx, stream, "-", "+").Result()
	require.NoError(t, err)
	withdrawn := map[uuid.UUID]bool{}
	for _, e := range entries[:3] {
		var msg spool.Message
		require.NoError(t, json.Unmarshal([]byte(e.Values["message"].(string)), &msg))
		var ev audit.Event
		require.NoError(t, json.Unmarshal(msg.Payload, &ev))
		withdrawn[ev.ID] = true
		require.NoError(t, rdb.XDel(ctx, stream, e.ID).Err())
	}

	sink.down.Store(false)
	eventually(t, "the rest stored", func() bool { return sink.total() == 7 })
	eventually(t, "nothing pending", func() bool { return pendingCount(t, rdb, stream) == 0 })
	for id := range withdrawn {
		assert.Zero(t, sink.count(id), "a withdrawn entry is not replayed")
	}
	assert.Equal(t, 7, sink.total())
}
