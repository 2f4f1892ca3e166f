package fault

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/testenv"
)

// Issue 13: PostgreSQL failover and switchover with a streaming standby,
// several service replicas, and reads from the standby.

// newReplicatedStack is newStack with a streaming standby of the primary
// (made after the database exists, so it has it), synchronous replication
// (synchronous_standby_names = '*': a commit is acknowledged once the standby
// has it, so a crash of the primary loses no acknowledged event, as with
// CloudNativePG's synchronous replicas in deploy/overlays/production), and
// database.url naming both servers with target_session_attrs=read-write,
// so the service finds whichever is the primary.
//
// With asynchronous replication a primary that crashes may take its last
// acknowledged commits with it: no client can prevent that, so the tests
// run what production should run.
func newReplicatedStack(t *testing.T) (*stack, *testenv.Postgres) {
	t.Helper()
	s := newStack(t, testenv.WithReplication())
	standby := testenv.NewStandby(t, s.pg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.pg.AdminURL())
	require.NoError(t, err)
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, `ALTER SYSTEM SET synchronous_standby_names = '*'`)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, `SELECT pg_reload_conf()`)
	require.NoError(t, err)
	s.dbURL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d,127.0.0.1:%d/datastorage?sslmode=disable&target_session_attrs=read-write",
		s.pg.Port, standby.Port)
	return s, standby
}

// patientConnect replaces the harness's 1 s connect timeout in these tests:
// after a failover every connection is new, and on a loaded machine (make
// test runs these beside every other package) a fresh backend's start and
// target_session_attrs check can take longer than a second, so the pool
// would never get one. 5 s is the service's default.
const patientConnect = "DATASTORAGE_DATABASE_CONNECTTIMEOUT=5s"

// verifyChains asks the service to verify the hash chain of every
// correlation stored, and fails the test for any that is not valid.
func verifyChains(t *testing.T, s *stack, srv *server) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.dbURL)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, `SELECT DISTINCT correlation_id FROM audit_events`)
	require.NoError(t, err)
	corrs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	for _, corr := range corrs {
		body, _ := json.Marshal(map[string]string{"correlation_id": corr})
		resp, err := http.Post(srv.base+"/api/v1/audit/verify-chain", "application/json", bytes.NewReader(body))
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, "verify-chain %s: %s", corr, b)
		var v struct {
			Valid bool `json:"is_valid"`
			Total int  `json:"total_events"`
		}
		require.NoError(t, json.Unmarshal(b, &v))
		assert.True(t, v.Valid, "the chain of %s is broken: %s", corr, b)
	}
	return len(corrs)
}

// firstCommitAfter is how long after at the first single write that started
// after it was answered 201 (committed: a spooled single answers 202).
func firstCommitAfter(out []outcome, at time.Time) (time.Duration, bool) {
	best, ok := time.Duration(0), false
	for _, o := range out {
		if o.batch || o.status != http.StatusCreated || o.start.Before(at) {
			continue
		}
		if d := o.end.Sub(at); !ok || d < best {
			best, ok = d, true
		}
	}
	return best, ok
}

// offeredRate is the events per second the outcomes sent, first start to
// last end: the target is ~500/s, a loaded machine may send fewer.
func offeredRate(out []outcome) float64 {
	if len(out) == 0 {
		return 0
	}
	first, last, n := out[0].start, out[0].end, 0
	for _, o := range out {
		if o.start.Before(first) {
			first = o.start
		}
		if o.end.After(last) {
			last = o.end
		}
		n += len(o.ids)
	}
	return float64(n) / last.Sub(first).Seconds()
}

// waitDrained waits until the spool is empty and nothing is pending.
func waitDrained(t *testing.T, s *stack, timeout time.Duration) time.Duration {
	t.Helper()
	return waitFor(t, timeout, "the spool to drain", func() bool {
		return s.xlen(eventsStream) == 0 && s.pending(eventsStream) == 0
	})
}

// 13.1: the primary is killed under ~500 events/s from three service
// replicas and the standby is promoted: every acknowledged event is stored
// once, every chain stays valid, and the time from the promotion to the
// first commit is reported.
func TestPrimaryKilledUnderLoadFromThreeReplicas(t *testing.T) {
	t.Parallel()
	s, standby := newReplicatedStack(t)
	srvs := []*server{s.startServer("ds-1", patientConnect), s.startServer("ds-2", patientConnect), s.startServer("ds-3", patientConnect)}
	// Each replica: one worker of singles and one of batches of 4 at 33
	// requests/s, ~165 events/s; ~500 events/s in all.
	var loads []*load
	for i, srv := range srvs {
		loads = append(loads, startLoad(t, fmt.Sprintf("failover-%d", i), srv, loadSpec{singles: 1, batches: 1, batchSize: 4, perWorker: 33}))
	}
	time.Sleep(3 * time.Second)
	require.NoError(t, s.pg.Kill())
	killed := time.Now()
	time.Sleep(2 * time.Second)
	require.NoError(t, standby.Promote())
	promoted := time.Now()
	waitFor(t, 90*time.Second, "a write committed on the new primary", func() bool {
		var all []outcome
		for _, l := range loads {
			all = append(all, l.results()...)
		}
		_, ok := firstCommitAfter(all, promoted)
		return ok
	})
	time.Sleep(2 * time.Second)
	var out []outcome
	for _, l := range loads {
		l.stop()
		out = append(out, l.results()...)
	}
	took := waitDrained(t, s, 60*time.Second)

	c := check(t, s, out, checkOpts{})
	assert.Zero(t, c.rejected, "with the spool up nothing is refused")
	assert.Positive(t, c.queued202, "writes during the failover were spooled")
	first, _ := firstCommitAfter(out, promoted)
	chains := verifyChains(t, s, srvs[0])
	t.Logf("FIGURES 13.1 (primary SIGKILLed under load from 3 replicas, offered %.0f events/s, standby promoted %s later): %s",
		offeredRate(out), promoted.Sub(killed).Round(time.Millisecond), c)
	t.Logf("FIGURES 13.1: promotion -> first 201 on the new primary %s; spool drained %s after the load stopped; %d chains valid",
		first.Round(time.Millisecond), took.Round(time.Millisecond), chains)
}

// 13.1b: a switchover. The old primary stays up but turns read-only (fenced,
// its sessions kept), the standby catches up and is promoted. The service's
// pooled connections to the old primary answer 25006: they must be dropped
// so that target_session_attrs=read-write finds the new primary, or the
// service spools forever while a writable primary is there.
func TestSwitchoverToTheStandby(t *testing.T) {
	t.Parallel()
	s, standby := newReplicatedStack(t)
	srv := s.startServer("ds", patientConnect)
	l := startLoad(t, "switchover", srv, steady())
	time.Sleep(2 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	require.NoError(t, s.pg.SetReadOnly(ctx, true))
	fenced := time.Now()
	// Writes are refused by the fenced primary (25006) and spooled.
	waitFor(t, 20*time.Second, "a write spooled after the fencing", func() bool {
		return count(l.results(), http.StatusAccepted, func(o outcome) bool { return o.start.After(fenced) }) > 0
	})
	require.NoError(t, standby.WaitReplayed(ctx, s.pg))
	require.NoError(t, standby.Promote())
	promoted := time.Now()
	waitFor(t, 90*time.Second, "a write committed on the new primary", func() bool {
		_, ok := firstCommitAfter(l.results(), promoted)
		return ok
	})
	time.Sleep(time.Second)
	l.stop()
	took := waitDrained(t, s, 60*time.Second)
	require.True(t, s.pg.Running(), "the old primary stayed up through the switchover")

	out := l.results()
	c := check(t, s, out, checkOpts{})
	assert.Zero(t, c.rejected)
	first, _ := firstCommitAfter(out, promoted)
	chains := verifyChains(t, s, srv)
	t.Logf("FIGURES 13.1b (switchover, old primary read-only and up): %s", c)
	t.Logf("FIGURES 13.1b: promotion -> first 201 %s; spool drained %s after the load stopped; %d chains valid",
		first.Round(time.Millisecond), took.Round(time.Millisecond), chains)
}

// 13.1c: PostgreSQL goes away, writes are spooled, it comes back and replay
// starts; while the spool is replaying the primary is killed and the standby
// promoted. Replay continues on the new primary: everything acknowledged is
// stored once, and the chains hold.
func TestFailoverWhileTheSpoolReplays(t *testing.T) {
	t.Parallel()
	s, standby := newReplicatedStack(t)
	// Small replay pages make the replay last long enough to fail over in
	// the middle of it.
	srv := s.startServer("ds", "DATASTORAGE_REDIS_REPLAYBATCH=10", patientConnect)
	l := startLoad(t, "replay-failover", srv, loadSpec{singles: 2, batches: 2, batchSize: 4, perWorker: 50})
	time.Sleep(2 * time.Second)
	require.NoError(t, s.pg.Stop())
	time.Sleep(6 * time.Second)
	depth := s.xlen(eventsStream)
	require.Positive(t, depth, "writes were spooled during the outage")
	require.NoError(t, s.pg.Start())
	// Replay has begun when the stream shrinks.
	waitFor(t, 30*time.Second, "the replay to start", func() bool { return s.xlen(eventsStream) < depth })
	require.NoError(t, s.pg.Kill())
	left := s.xlen(eventsStream)
	require.NoError(t, standby.Promote())
	promoted := time.Now()
	waitFor(t, 90*time.Second, "a write committed on the new primary", func() bool {
		_, ok := firstCommitAfter(l.results(), promoted)
		return ok
	})
	time.Sleep(time.Second)
	l.stop()
	took := waitDrained(t, s, 60*time.Second)

	out := l.results()
	c := check(t, s, out, checkOpts{})
	assert.Zero(t, c.rejected)
	assert.Positive(t, left, "the primary died with the replay unfinished")
	chains := verifyChains(t, s, srv)
	t.Logf("FIGURES 13.1c: spool depth %d when PostgreSQL came back, %d entries left when the primary was killed mid-replay; "+
		"drained %s after the load stopped; %d chains valid; %s", depth, left, took.Round(time.Millisecond), chains, c)
}

// readIDs lists the event ids of a correlation through the API, with the
// given X-Consistency ("" for none).
func readIDs(t *testing.T, srv *server, corr, consistency string) map[string]bool {
	t.Helper()
	req, err := http.NewRequest("GET", srv.base+"/api/v1/audit/events?limit=1000&correlation_id="+url.QueryEscape(corr), nil)
	require.NoError(t, err)
	if consistency != "" {
		req.Header.Set("X-Consistency", consistency)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", b)
	var list struct {
		Data []struct {
			ID string `json:"event_id"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal(b, &list))
	ids := map[string]bool{}
	for _, e := range list.Data {
		ids[e.ID] = true
	}
	return ids
}

// writeOne writes a single event and requires it committed (201).
func writeOne(t *testing.T, srv *server, corr string, n int) string {
	t.Helper()
	id := uuid.New()
	body, _ := json.Marshal(eventBody(id, corr, n))
	resp, err := http.Post(srv.base+"/api/v1/audit/events", "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode, "%s", b)
	return id.String()
}

// 13.3: reads go to the standby while it is current; with its replay paused
// they fall back to the primary once the lag passes database.maxReplicaLag;
// X-Consistency: strong always reads the write just made; /metrics counts
// reads by target.
func TestLaggingStandbySendsReadsToThePrimary(t *testing.T) {
	t.Parallel()
	s := newStack(t, testenv.WithReplication())
	standby := testenv.NewStandby(t, s.pg)
	// The lag is exported per standby, under the address it sees itself on.
	standbyServer := net.JoinHostPort(standby.Host, strconv.Itoa(standby.Port))
	srv := s.startServer("ds", "DATASTORAGE_DATABASE_REPLICAURL="+standby.URL("datastorage"),
		"DATASTORAGE_DATABASE_MAXREPLICALAG=1s", patientConnect)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const corr = "read-replica"
	replicaReads := func() float64 {
		v, _ := srv.metric(`datastorage_db_reads_total{reason="replica_current",target="replica"}`)
		return v
	}

	first := writeOne(t, srv, corr, 0)
	require.NoError(t, standby.WaitReplayed(ctx, s.pg))
	// The standby serves once the sampler has seen it current.
	waitFor(t, 30*time.Second, "a read served by the standby", func() bool {
		before := replicaReads()
		ids := readIDs(t, srv, corr, "")
		return ids[first] && replicaReads() > before
	})

	// Replay paused: the standby falls behind.
	require.NoError(t, standby.PauseReplay(ctx))
	paused := time.Now()
	var written []string
	for i := range 5 {
		id := writeOne(t, srv, corr, i+1)
		written = append(written, id)
		assert.True(t, readIDs(t, srv, corr, "strong")[id], "a strong read sees the write just made")
	}
	// Past maxReplicaLag the eventual reads go to the primary and see the
	// writes the standby lacks.
	waitFor(t, 30*time.Second, "eventual reads to see the primary's writes", func() bool {
		ids := readIDs(t, srv, corr, "")
		return ids[written[len(written)-1]]
	})
	fellBack := time.Since(paused)
	lagReads, _ := srv.metric(`datastorage_db_reads_total{reason="lag",target="primary"}`)
	assert.Positive(t, lagReads, "reads counted as sent to the primary for lag")
	lag, _ := srv.metric(`datastorage_db_replica_lag_seconds{server="` + standbyServer + `"}`)
	assert.Greater(t, lag, 1.0, "the lag seen is above the maximum")
	up, served := srv.metric(`datastorage_db_replica_up{server="` + standbyServer + `"}`)
	assert.True(t, served && up == 1, "the paused standby still answers its samples: up %v (served %v)", up, served)
	strongReads, _ := srv.metric(`datastorage_db_reads_total{reason="strong",target="primary"}`)
	assert.GreaterOrEqual(t, strongReads, 5.0)
	var standbyRows int
	conn, err := pgx.Connect(ctx, standby.URL("datastorage"))
	require.NoError(t, err)
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE correlation_id = $1`, corr).Scan(&standbyRows))
	conn.Close(context.Background())
	assert.Equal(t, 1, standbyRows, "the paused standby still lacks the new writes")

	// Resumed: the standby catches up and serves again.
	require.NoError(t, standby.ResumeReplay(ctx))
	require.NoError(t, standby.WaitReplayed(ctx, s.pg))
	waitFor(t, 30*time.Second, "reads served by the standby again", func() bool {
		before := replicaReads()
		ids := readIDs(t, srv, corr, "")
		return len(ids) == 6 && replicaReads() > before
	})
	t.Logf("FIGURES 13.3: replay paused -> eventual reads see the primary's writes within %s (maxReplicaLag 1s, sampled every 200 ms; "+
		"5 writes with strong reads in between); lag seen %.1fs", fellBack.Round(time.Millisecond), lag)
}

// 13.3 with two standbys behind one replicaUrl (a round-robin balancer, as
// CloudNativePG's -ro service in front of a 3-instance cluster's two
// standbys): one standby's replay is paused; no eventual read ever returns
// its stale copy, the other standby keeps serving, and /metrics names the
// paused one (its lag, its refused connections).
func TestOneOfTwoStandbysLagging(t *testing.T) {
	t.Parallel()
	s := newStack(t, testenv.WithReplication())
	current, paused := testenv.NewStandby(t, s.pg), testenv.NewStandby(t, s.pg)
	currentKey := net.JoinHostPort(current.Host, strconv.Itoa(current.Port))
	pausedKey := net.JoinHostPort(paused.Host, strconv.Itoa(paused.Port))
	lb := testenv.NewBalancer(t, currentKey, pausedKey)
	srv := s.startServer("ds", "DATASTORAGE_DATABASE_REPLICAURL=postgres://postgres@"+lb.Addr()+"/datastorage?sslmode=disable",
		"DATASTORAGE_DATABASE_MAXREPLICALAG=1s", "DATASTORAGE_DATABASE_MAXCONNS=6", patientConnect)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const corr = "two-standbys"
	metric := func(sample string) float64 {
		v, _ := srv.metric(sample)
		return v
	}
	replicaReads := func() float64 {
		return metric(`datastorage_db_reads_total{reason="replica_current",target="replica"}`)
	}
	// Concurrent reads, so that the pool holds connections on both standbys.
	readAll := func(n int) []map[string]bool {
		out := make([]map[string]bool, n)
		var wg sync.WaitGroup
		for i := range out {
			wg.Go(func() { out[i] = readIDs(t, srv, corr, "") })
		}
		wg.Wait()
		return out
	}

	first := writeOne(t, srv, corr, 0)
	require.NoError(t, current.WaitReplayed(ctx, s.pg))
	require.NoError(t, paused.WaitReplayed(ctx, s.pg))
	waitFor(t, 30*time.Second, "reads served by the standbys", func() bool {
		before := replicaReads()
		for _, ids := range readAll(6) {
			if !ids[first] {
				return false
			}
		}
		return replicaReads() > before
	})
	waitFor(t, 30*time.Second, "both standbys sampled", func() bool {
		_, a := srv.metric(`datastorage_db_replica_up{server="` + currentKey + `"}`)
		_, b := srv.metric(`datastorage_db_replica_up{server="` + pausedKey + `"}`)
		return a && b
	})

	require.NoError(t, paused.PauseReplay(ctx))
	second := writeOne(t, srv, corr, 1)
	require.NoError(t, current.WaitReplayed(ctx, s.pg))
	waitFor(t, 30*time.Second, "the paused standby seen behind", func() bool {
		return metric(`datastorage_db_replica_lag_seconds{server="`+pausedKey+`"}`) > 1
	})
	// From here on, no eventual read may miss the second write.
	before := replicaReads()
	stale := 0
	for range 5 {
		for _, ids := range readAll(8) {
			if !ids[second] {
				stale++
			}
		}
	}
	assert.Zero(t, stale, "eventual reads answered from the paused standby's stale copy")
	assert.Greater(t, replicaReads(), before, "the current standby kept serving")
	assert.Positive(t, metric(`datastorage_db_replica_refused_total{server="`+pausedKey+`"}`),
		"connections on the paused standby were refused, by name")
	assert.Zero(t, metric(`datastorage_db_replica_lag_seconds{server="`+currentKey+`"}`))
	require.NoError(t, paused.ResumeReplay(ctx))
}

// 13.4: three replicas write 100 correlations concurrently, every
// correlation through all three; one replica is SIGKILLed mid-stream, then
// PostgreSQL goes away briefly so the others spool and the killed one's
// entries (if it held any) must be claimed. Every chain stays unbroken and
// every acknowledged event is stored once.
func TestThreeReplicasOneKilledKeepEveryChain(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	var srvs []*server
	for i := range 3 {
		srvs = append(srvs, s.startServer(fmt.Sprintf("ds-%d", i), "DATASTORAGE_REDIS_CLAIMIDLE=1s", patientConnect))
	}
	const correlations = 100
	var (
		mu      sync.Mutex
		out     []outcome
		dead    = make([]bool, 3)
		stopc   = make(chan struct{})
		wg      sync.WaitGroup
		clients = &http.Client{Timeout: 20 * time.Second}
	)
	for w := range 6 {
		wg.Go(func() {
			tick := time.NewTicker(25 * time.Millisecond)
			defer tick.Stop()
			for n := 0; ; n++ {
				select {
				case <-stopc:
					return
				case <-tick.C:
				}
				corr := fmt.Sprintf("n3-corr-%03d", (w*7919+n)%correlations)
				target := (w + n) % 3
				mu.Lock()
				if dead[target] {
					target = (target + 1) % 3
				}
				mu.Unlock()
				batch := n%2 == 1
				o := outcome{batch: batch}
				var body []byte
				path := "/api/v1/audit/events"
				if batch {
					evs := make([]map[string]any, 3)
					for i := range evs {
						id := uuid.New()
						o.ids = append(o.ids, id)
						evs[i] = eventBody(id, corr, n)
					}
					body, _ = json.Marshal(evs)
					path += "/batch"
				} else {
					id := uuid.New()
					o.ids = []uuid.UUID{id}
					body, _ = json.Marshal(eventBody(id, corr, n))
				}
				o.start = time.Now()
				resp, err := clients.Post(srvs[target].base+path, "application/json", bytes.NewReader(body))
				if err == nil {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					o.status, o.retryAfter, o.body = resp.StatusCode, resp.Header.Get("Retry-After"), string(b)
				}
				o.end = time.Now()
				mu.Lock()
				out = append(out, o)
				mu.Unlock()
			}
		})
	}
	time.Sleep(3 * time.Second)
	// PostgreSQL away: all three spool; the victim's replay worker picks up
	// a page it cannot commit.
	require.NoError(t, s.pg.Stop())
	time.Sleep(2 * time.Second)
	victim := srvs[2]
	heldBefore := pendingOf(t, s)
	mu.Lock()
	dead[2] = true
	mu.Unlock()
	victim.kill()
	require.NoError(t, s.pg.Start())
	time.Sleep(3 * time.Second)
	close(stopc)
	wg.Wait()
	took := waitDrained(t, s, 60*time.Second)

	c := check(t, s, out, checkOpts{})
	assert.Zero(t, c.rejected)
	chains := verifyChains(t, s, srvs[0])
	assert.Equal(t, correlations, chains, "every correlation was written")
	claimed := strings.Contains(srvs[0].log()+srvs[1].log(), "claimed entries left pending by a worker")
	held := heldBefore[consumerOf(t, victim)]
	if held > 0 {
		assert.True(t, claimed, "the killed replica's %d pending entries were claimed by another", held)
	}
	t.Logf("FIGURES 13.4: 3 replicas, 100 correlations, one SIGKILLed during a PostgreSQL outage holding %d pending entries "+
		"(pending by consumer %v); claimed by another: %v; spool drained in %s; %d chains valid; %s",
		held, heldBefore, claimed, took.Round(time.Millisecond), chains, c)
}

// consumerOf reads a server's replay consumer name from its start log line.
func consumerOf(t *testing.T, srv *server) string {
	t.Helper()
	for _, line := range strings.Split(srv.log(), "\n") {
		if !strings.Contains(line, "replay worker started") {
			continue
		}
		if _, rest, ok := strings.Cut(line, "consumer="); ok {
			name, _, _ := strings.Cut(rest, " ")
			return strings.Trim(name, `"`)
		}
	}
	t.Fatalf("%s logged no replay consumer", srv.name)
	return ""
}

// pendingOf returns the pending entries of the events stream by consumer.
func pendingOf(t *testing.T, s *stack) map[string]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out := map[string]int64{}
	p, err := s.rdb.XPending(ctx, eventsStream, "data-storage-retry-workers").Result()
	if err != nil {
		return out
	}
	names := make([]string, 0, len(p.Consumers))
	for name := range p.Consumers {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		out[name] = p.Consumers[name]
	}
	return out
}
