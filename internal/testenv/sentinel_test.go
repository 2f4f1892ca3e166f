package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// TestRedisHAFailsOverToTheReplica kills the master and checks that the Sentinels promote the
// replica, that what the master had replicated is there, and that a go-redis failover client
// (what the service uses) finds and writes to the new master.
func TestRedisHAFailsOverToTheReplica(t *testing.T) {
	integration(t)
	h := NewRedisHA(t)
	require.Len(t, h.Servers, 2)
	require.Len(t, h.Sentinels, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	old, err := h.MasterAddr(ctx)
	require.NoError(t, err)
	require.Equal(t, h.Servers[0].Addr(), old, "the first server starts as the master")

	fc := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName: h.MasterName, SentinelAddrs: h.SentinelAddrs(), MaxRetries: -1, DialTimeout: time.Second,
	})
	defer fc.Close()
	require.NoError(t, fc.Set(ctx, "k", "before", 0).Err())
	n, err := fc.Wait(ctx, 1, 5*time.Second).Result()
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "the replica acknowledges the write")

	require.NoError(t, h.Servers[0].Kill())
	promoted, err := h.WaitFailover(ctx, old)
	require.NoError(t, err)
	require.Equal(t, h.Servers[1].Addr(), promoted)
	require.Same(t, h.Servers[1], h.Server(promoted))

	// The client follows the Sentinels to the new master; its first tries may still hit the
	// dead one, so retry until the write lands (bounded by ctx).
	for {
		err = fc.Set(ctx, "k2", "after", 0).Err()
		if err == nil || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	require.NoError(t, err)
	direct := redis.NewClient(&redis.Options{Addr: promoted})
	defer direct.Close()
	require.Equal(t, "before", direct.Get(ctx, "k").Val())
	require.Equal(t, "after", direct.Get(ctx, "k2").Val())
}

// TestRedisHAStoppedReplicaShortensWait shows the replica can be taken away and brought back,
// which the WAIT tests of the spool rely on: WAIT counts it only while it runs.
func TestRedisHAStoppedReplicaShortensWait(t *testing.T) {
	integration(t)
	h := NewRedisHA(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := redis.NewClient(&redis.Options{Addr: h.Servers[0].Addr()})
	defer c.Close()

	require.NoError(t, h.Servers[1].Stop())
	require.NoError(t, c.Set(ctx, "k", "v", 0).Err())
	n, err := c.Wait(ctx, 1, 200*time.Millisecond).Result()
	require.NoError(t, err)
	require.EqualValues(t, 0, n, "no replica runs")

	require.NoError(t, h.Servers[1].Start())
	require.NoError(t, WaitReplicasOnline(h.Servers[0].Addr(), 1, time.Now().Add(haReadyTimeout)))
	require.NoError(t, c.Set(ctx, "k", "v2", 0).Err())
	n, err = c.Wait(ctx, 1, 10*time.Second).Result()
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "the restarted replica resynced and acknowledges")
}
