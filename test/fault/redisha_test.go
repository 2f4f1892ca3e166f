package fault

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/testenv"
)

// haStack is a stack whose spool is a Redis master with two replicas and three Sentinels
// (issue 13). Its rdb is a failover client, so the stack's stream helpers (xlen, pending)
// follow the master through a failover as the service does.
type haStack struct {
	*stack
	ha *testenv.RedisHA
}

func newHAStack(t *testing.T) *haStack {
	t.Helper()
	if testing.Short() {
		t.Skip("fault tests need PostgreSQL and Redis; they do not run with -short")
	}
	var (
		pg           *testenv.Postgres
		h            *testenv.RedisHA
		pgErr, haErr error
		wg           sync.WaitGroup
	)
	wg.Go(func() { pg, pgErr = testenv.StartPostgres() })
	// Two replicas: after a failover one is left to confirm writes (redis.minReplicas 1), as
	// with the three Redis pods of the production overlay.
	wg.Go(func() {
		h, haErr = testenv.StartRedisHA(testenv.WithReplicas(2), testenv.WithServerOptions(testenv.WithAOF()))
	})
	wg.Wait()
	if pg != nil {
		t.Cleanup(func() { _ = pg.Close() })
	}
	if h != nil {
		t.Cleanup(func() { _ = h.Close() })
	}
	require.NoError(t, pgErr)
	require.NoError(t, haErr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url, err := pg.CreateDatabase(ctx, "datastorage")
	require.NoError(t, err)
	rdb := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName: h.MasterName, SentinelAddrs: h.SentinelAddrs(), MaxRetries: 2, DialTimeout: time.Second,
	})
	t.Cleanup(func() { _ = rdb.Close() })
	return &haStack{stack: &stack{t: t, pg: pg, redis: h.Servers[0], dbURL: url, rdb: rdb}, ha: h}
}

// sentinelEnv configures the service for the Sentinels (redis.addr is then unused).
func (s *haStack) sentinelEnv(extra ...string) []string {
	return append([]string{
		"DATASTORAGE_REDIS_SENTINEL_MASTERNAME=" + s.ha.MasterName,
		"DATASTORAGE_REDIS_SENTINEL_ADDRS=" + strings.Join(s.ha.SentinelAddrs(), ","),
		"DATASTORAGE_REDIS_WAITTIMEOUT=1s",
	}, extra...)
}

// postEvent writes one event with its id and returns the status, Retry-After and body.
func (srv *server) postEvent(t *testing.T, id uuid.UUID) (int, string, string) {
	t.Helper()
	body, err := json.Marshal(eventBody(id, "ha-probe", 0))
	require.NoError(t, err)
	resp, err := http.Post(srv.base+"/api/v1/audit/events", "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After"), string(b)
}

// With redis.minReplicas 1 (the default with Sentinel) and PostgreSQL down, a write the
// replicas cannot confirm is refused with 503 naming the cause, and is not stored later; with
// the replicas back the same write is spooled (202) and stored once.
func TestSpoolWithoutReplicasAnswers503(t *testing.T) {
	t.Parallel()
	s := newHAStack(t)
	srv := s.startServer("ds", s.sentinelEnv()...)
	require.NoError(t, s.pg.Stop())
	for _, r := range s.ha.Servers[1:] {
		require.NoError(t, r.Stop())
	}

	refused := uuid.New()
	status, retryAfter, body := srv.postEvent(t, refused)
	require.Equal(t, http.StatusServiceUnavailable, status, body)
	assert.NotEmpty(t, retryAfter)
	assert.Contains(t, body, "redis.minReplicas 1, 0 confirmed within 1s", "the problem names the cause")
	assert.Zero(t, s.xlen(eventsStream), "the unconfirmed entry was withdrawn")
	v, _ := srv.metric(`datastorage_spool_wait_shortfalls_total{stream="events"}`)
	assert.EqualValues(t, 1, v)

	for _, r := range s.ha.Servers[1:] {
		require.NoError(t, r.Start())
	}
	accepted := uuid.New()
	waitFor(t, 60*time.Second, "a spooled write confirmed by the restarted replicas", func() bool {
		status, _, _ := srv.postEvent(t, accepted)
		return status == http.StatusAccepted
	})
	require.NoError(t, s.pg.Start())
	waitFor(t, 60*time.Second, "the spool drained", func() bool { return s.xlen(eventsStream) == 0 && s.pending(eventsStream) == 0 })
	stored := s.stored()
	assert.Equal(t, 1, stored[accepted], "the accepted event is stored once (its retries included)")
	assert.Zero(t, stored[refused], "the refused event is not stored")
}

// 2 (issue 13). PostgreSQL is down, so writes go to the spool; the Redis master is killed
// under that load; the Sentinels promote a replica and the service follows it; PostgreSQL
// comes back. Every event answered 201/202 is stored exactly once. A 503 answered while the
// master was dying may hide an entry that reached a replica before the master died (neither
// the service nor Redis can know): such events are reported as ambiguous, and stored once.
func TestRedisFailoverWhileSpoolingLosesNothing(t *testing.T) {
	t.Parallel()
	s := newHAStack(t)
	srv := s.startServer("ds", s.sentinelEnv()...)
	l := startLoad(t, "redis-failover", srv, loadSpec{singles: 2, batches: 2, batchSize: 4, perWorker: 25})

	time.Sleep(2 * time.Second)
	require.NoError(t, s.pg.Stop())
	waitFor(t, 30*time.Second, "writes spooled", func() bool { return s.xlen(eventsStream) > 100 })
	time.Sleep(time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	old, err := s.ha.MasterAddr(ctx)
	require.NoError(t, err)
	depthBefore := s.xlen(eventsStream)
	killed := time.Now()
	require.NoError(t, s.ha.Server(old).Kill())
	promoted, err := s.ha.WaitFailover(ctx, old)
	require.NoError(t, err)
	failedOver := time.Since(killed)

	// On a loaded machine the Sentinels' short test timings can see the new master as down
	// too and fail over a second time; the window then lasts until the service is confirmed
	// on the last master. Watch the Sentinels' answer to know.
	lastChange, changes := killed.Add(failedOver), 0
	watchCtx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		current := promoted
		for watchCtx.Err() == nil {
			if addr, err := s.ha.MasterAddr(watchCtx); err == nil && addr != current {
				current, lastChange, changes = addr, time.Now(), changes+1
			}
			select {
			case <-watchCtx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()

	// With redis.minReplicas 1, writes are refused (rightly) until the replica that is left
	// has been pointed at the new master by the Sentinels and has synchronised with it: the
	// failover window ends then, not at the first write a lucky request got confirmed.
	nm := redis.NewClient(&redis.Options{Addr: promoted, DialTimeout: time.Second})
	t.Cleanup(func() { _ = nm.Close() })
	var replicaBack time.Time
	waitFor(t, 60*time.Second, "the replica that is left online under the new master", func() bool {
		info, err := nm.Info(ctx, "replication").Result()
		if err != nil || !strings.Contains(info, "connected_slaves:1") || !strings.Contains(info, "state=online") {
			return false
		}
		replicaBack = time.Now()
		return true
	})

	// The service follows: spooled writes are confirmed again.
	var recovered time.Time
	waitFor(t, 60*time.Second, "a write accepted after the failover", func() bool {
		for _, o := range l.results() {
			if o.start.After(killed.Add(failedOver)) && (o.status == http.StatusAccepted || o.status == http.StatusCreated) {
				recovered = o.end
				return true
			}
		}
		return false
	})
	time.Sleep(2 * time.Second)
	require.NoError(t, s.pg.Start())
	pgBack := time.Now()
	time.Sleep(2 * time.Second)
	l.stop()
	waitFor(t, 90*time.Second, "the spool drained on the new master", func() bool {
		return s.xlen(eventsStream) == 0 && s.pending(eventsStream) == 0
	})

	stopWatch()
	<-watched
	outcomes := l.results()
	windowEnd := recovered
	if replicaBack.After(windowEnd) {
		windowEnd = replicaBack
	}
	if changes > 0 {
		var firstAfter time.Time
		for _, o := range outcomes {
			accepted := o.status == http.StatusAccepted || o.status == http.StatusCreated
			if accepted && o.start.After(lastChange) && (firstAfter.IsZero() || o.end.Before(firstAfter)) {
				firstAfter = o.end
			}
		}
		if firstAfter.After(windowEnd) {
			windowEnd = firstAfter
		}
		t.Logf("the Sentinels failed over %d more time(s) under load; the window ends %s after the kill",
			changes, windowEnd.Sub(killed).Round(time.Millisecond))
	}
	during := func(o outcome) bool { return !o.end.Before(killed) && !o.start.After(windowEnd) }
	c := check(t, s.stack, outcomes, checkOpts{ambiguous: during})
	refusedDuring := 0
	var outside []string
	for _, o := range outcomes {
		if o.status == http.StatusServiceUnavailable {
			if during(o) {
				refusedDuring += len(o.ids)
			} else if len(outside) < 5 {
				outside = append(outside, fmt.Sprintf("%s→%s after the kill: %s",
					o.start.Sub(killed).Round(time.Millisecond), o.end.Sub(killed).Round(time.Millisecond), o.body))
			}
		}
	}
	refusedOutside := c.rejected - refusedDuring
	assert.Zero(t, refusedOutside, "only the failover window may refuse writes; outside it: %s", strings.Join(outside, " | "))
	assert.Positive(t, c.accepted)
	assert.Zero(t, c.unanswered, "every request is answered")
	t.Logf("redis failover while spooling: master %s killed with %d entries spooled; Sentinel promoted %s after %s; "+
		"first accepted write %s and the replica online %s after the kill; PostgreSQL back %s after the kill; %d events answered 503 during the failover "+
		"(%d of them stored anyway: entries that reached a replica before the master died), %d outside it; %s",
		old, depthBefore, promoted, failedOver.Round(time.Millisecond), recovered.Sub(killed).Round(time.Millisecond),
		replicaBack.Sub(killed).Round(time.Millisecond), pgBack.Sub(killed).Round(time.Millisecond), refusedDuring, c.ambiguous, refusedOutside, c)
}
