package store_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/failure"
	"kubernaut.ai/datastorage/internal/query"
	"kubernaut.ai/datastorage/internal/readroute"
	"kubernaut.ai/datastorage/internal/store"
	"kubernaut.ai/datastorage/internal/testenv"
)

// replicated is a migrated database on a private primary with a streaming
// standby, and a store reading from the standby.
type replicated struct {
	primary, standby *testenv.Postgres
	st               *store.Store
	reg              *prometheus.Registry
}

func newReplicated(t *testing.T, maxLag time.Duration) *replicated {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	primary := testenv.NewPostgres(t, testenv.WithReplication())
	url, err := primary.CreateDatabase(ctx, "datastorage")
	require.NoError(t, err)
	mig, err := store.Open(ctx, url, store.Options{MaxConns: 2})
	require.NoError(t, err)
	_, err = mig.Migrate(ctx, nil)
	require.NoError(t, err)
	_, err = mig.EnsurePartitions(ctx, time.Now().AddDate(0, -1, 0), 2)
	require.NoError(t, err)
	mig.Close()
	standby := testenv.NewStandby(t, primary)
	require.NoError(t, standby.WaitReplayed(ctx, primary))

	reg := prometheus.NewRegistry()
	st, err := store.Open(ctx, url, store.Options{MaxConns: 4, ReplicaURL: standby.URL("datastorage"),
		MaxReplicaLag: maxLag, Registerer: reg, ConnectTimeout: time.Second})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	return &replicated{primary: primary, standby: standby, st: st, reg: reg}
}

func (r *replicated) reads(t *testing.T) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	mfs, err := r.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "datastorage_db_reads_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			out[labels["target"]+"/"+labels["reason"]] = m.GetCounter().GetValue()
		}
	}
	return out
}

func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			var m *dto.Metric = mf.GetMetric()[0]
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func countCorr(t *testing.T, st *store.Store, ctx context.Context, corr string) int64 {
	t.Helper()
	n, err := st.CountEvents(ctx, query.EventFilter{CorrelationID: corr}, 1000)
	require.NoError(t, err)
	return n
}

// Reads go to the standby while it is current; past the maximum lag (replay
// paused), when it is down, and when strong consistency is asked, they go
// to the primary, and each read is counted by where it went.
func TestReadsFollowTheStandbysLag(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL servers")
	}
	t.Parallel()
	r := newReplicated(t, 300*time.Millisecond)
	ctx := context.Background()
	router := r.st.ReadRouter()
	require.True(t, router.HasReplica())

	// Not sampled yet: the primary.
	assert.Equal(t, int64(0), countCorr(t, r.st, ctx, "rr-lag"))
	assert.Equal(t, 1.0, r.reads(t)["primary/replica_down"])

	e1 := newEvent("rr-lag", time.Now(), 30)
	_, err := r.st.InsertEvents(ctx, []*audit.Event{e1})
	require.NoError(t, err)
	require.NoError(t, r.standby.WaitReplayed(ctx, r.primary))
	router.Sample(ctx)
	assert.Equal(t, 0.0, gauge(t, r.reg, "datastorage_db_replica_lag_seconds"), "caught up: no lag")
	assert.Equal(t, int64(1), countCorr(t, r.st, ctx, "rr-lag"))
	assert.Equal(t, 1.0, r.reads(t)["replica/replica_current"])

	// The standby stops replaying; a write lands on the primary only.
	require.NoError(t, r.standby.PauseReplay(ctx))
	e2 := newEvent("rr-lag", time.Now(), 30)
	_, err = r.st.InsertEvents(ctx, []*audit.Event{e2})
	require.NoError(t, err)
	// Wait for the standby to have received it (so the lag is the
	// replay's, not the network's) and for the lag to pass the maximum.
	deadline := time.Now().Add(30 * time.Second)
	for {
		router.Sample(ctx)
		if tg, _ := routeOf(router); tg == readroute.Primary {
			break
		}
		require.False(t, time.Now().After(deadline), "the paused standby never counted as behind")
		time.Sleep(50 * time.Millisecond)
	}
	assert.Greater(t, gauge(t, r.reg, "datastorage_db_replica_lag_seconds"), 0.3)
	assert.Equal(t, int64(2), countCorr(t, r.st, ctx, "rr-lag"), "past the maximum lag the primary answers, with the new write")
	assert.GreaterOrEqual(t, r.reads(t)["primary/lag"], 1.0)

	// Strong consistency always reads the primary.
	strong := readroute.WithConsistency(ctx, readroute.Strong)
	assert.Equal(t, int64(2), countCorr(t, r.st, strong, "rr-lag"))
	assert.Equal(t, 1.0, r.reads(t)["primary/strong"])

	// A get by id the standby lacks is answered by the primary even when the
	// standby is chosen: force the choice by resuming and then reading an
	// event written while paused.
	require.NoError(t, r.standby.ResumeReplay(ctx))
	require.NoError(t, r.standby.WaitReplayed(ctx, r.primary))
	router.Sample(ctx)
	require.NoError(t, r.standby.PauseReplay(ctx))
	e3 := newEvent("rr-lag", time.Now(), 30)
	_, err = r.st.InsertEvents(ctx, []*audit.Event{e3})
	require.NoError(t, err)
	got, err := r.st.GetEvent(ctx, e3.ID)
	require.NoError(t, err, "an id the standby has not replayed is found on the primary")
	assert.Equal(t, e3.ID, got.ID)
	_, err = r.st.GetEvent(ctx, newEvent("rr-lag", time.Now(), 30).ID)
	require.ErrorIs(t, err, query.ErrNotFound)
	require.NoError(t, r.standby.ResumeReplay(ctx))

	// The standby goes down: reads go to the primary, first because the
	// connection fails (rerouted), then because the sample says so.
	require.NoError(t, r.standby.WaitReplayed(ctx, r.primary))
	router.Sample(ctx)
	require.NoError(t, r.standby.Kill())
	before := r.reads(t)["primary/replica_down"]
	assert.Equal(t, int64(3), countCorr(t, r.st, ctx, "rr-lag"), "a dead standby does not fail the read")
	router.Sample(ctx)
	assert.Equal(t, 0.0, gauge(t, r.reg, "datastorage_db_replica_up"))
	assert.Equal(t, int64(3), countCorr(t, r.st, ctx, "rr-lag"))
	assert.GreaterOrEqual(t, r.reads(t)["primary/replica_down"], before+2)

	// Back up: the standby serves again.
	require.NoError(t, r.standby.Start())
	require.NoError(t, r.standby.WaitReplayed(ctx, r.primary))
	// Until its WAL receiver has reconnected, the restarted standby's lag
	// is the age of its last replayed commit: wait for the receiver.
	deadline = time.Now().Add(30 * time.Second)
	for {
		router.Sample(ctx)
		if tg, _ := routeOf(router); tg == readroute.Replica {
			break
		}
		require.False(t, time.Now().After(deadline), "the restarted standby never counted as current: %v", r.reads(t))
		time.Sleep(50 * time.Millisecond)
	}
	replicaBefore := r.reads(t)["replica/replica_current"]
	assert.Equal(t, int64(3), countCorr(t, r.st, ctx, "rr-lag"))
	assert.Equal(t, replicaBefore+1, r.reads(t)["replica/replica_current"])
}

func routeOf(r *readroute.Router) (readroute.Target, readroute.Reason) {
	// Route counts the read; the tests that compare counts read them after.
	return r.Route(context.Background())
}

// A primary fenced read-only for a switchover keeps its sessions open; the
// store must drop the connections that answered 25006, or the pool hands
// them out forever. With the primary writable again (as a new primary
// would be, under the next host of database.url), writes go through at once.
func TestReadOnlyConnectionsAreDropped(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL servers")
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pg := testenv.NewPostgres(t)
	url, err := pg.CreateDatabase(ctx, "datastorage")
	require.NoError(t, err)
	st, err := store.Open(ctx, url, store.Options{MaxConns: 1})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	_, err = st.Migrate(ctx, nil)
	require.NoError(t, err)
	_, err = st.EnsurePartitions(ctx, time.Now().AddDate(0, -1, 0), 2)
	require.NoError(t, err)

	pidOf := func() int32 {
		var pid int32
		require.NoError(t, st.Pool().QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid))
		return pid
	}
	first := pidOf()
	require.NoError(t, pg.SetReadOnly(ctx, true))
	// The one pooled session sees the reload at its next statement.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var ro string
		require.NoError(t, st.Pool().QueryRow(ctx, `SHOW default_transaction_read_only`).Scan(&ro))
		if ro == "on" {
			break
		}
		require.False(t, time.Now().After(deadline))
		time.Sleep(20 * time.Millisecond)
	}
	assert.Equal(t, first, pidOf(), "the session survived the fencing")
	_, err = st.InsertEvents(ctx, []*audit.Event{newEvent("rr-fenced", time.Now(), 30)})
	var pgErr *pgconn.PgError
	require.True(t, errors.As(err, &pgErr), "%v", err)
	assert.Equal(t, "25006", pgErr.Code)
	assert.Equal(t, failure.Unavailable, failure.ClassOf(err))

	require.NoError(t, pg.SetReadOnly(ctx, false))
	assert.NotEqual(t, first, pidOf(), "the connection that answered 25006 was dropped")
	_, err = st.InsertEvents(ctx, []*audit.Event{newEvent("rr-fenced", time.Now(), 30)})
	require.NoError(t, err, "a new connection writes")
}

// Two standbys behind one replicaUrl (a balancer in front of both, as
// CloudNativePG's -ro service): the lag is known per server, and while one
// standby's replay is paused no read sees its staleness. Its connections
// are refused at acquire (the read goes to the primary), the current one
// serves, and the metrics say which server was behind.
func TestEachStandbyIsJudgedByItsOwnLag(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL servers")
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	primary := testenv.NewPostgres(t, testenv.WithReplication())
	url, err := primary.CreateDatabase(ctx, "datastorage")
	require.NoError(t, err)
	mig, err := store.Open(ctx, url, store.Options{MaxConns: 2})
	require.NoError(t, err)
	_, err = mig.Migrate(ctx, nil)
	require.NoError(t, err)
	_, err = mig.EnsurePartitions(ctx, time.Now().AddDate(0, -1, 0), 2)
	require.NoError(t, err)
	mig.Close()
	current, paused := testenv.NewStandby(t, primary), testenv.NewStandby(t, primary)
	require.NoError(t, current.WaitReplayed(ctx, primary))
	require.NoError(t, paused.WaitReplayed(ctx, primary))
	lb := testenv.NewBalancer(t, net.JoinHostPort(current.Host, strconv.Itoa(current.Port)),
		net.JoinHostPort(paused.Host, strconv.Itoa(paused.Port)))

	reg := prometheus.NewRegistry()
	const conns = 6
	st, err := store.Open(ctx, url, store.Options{MaxConns: conns, MaxReplicaLag: 300 * time.Millisecond,
		ReplicaURL: "postgres://postgres@" + lb.Addr() + "/datastorage?sslmode=disable", Registerer: reg, ConnectTimeout: 2 * time.Second})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	router := st.ReadRouter()
	pausedKey := "127.0.0.1:" + strconv.Itoa(paused.Port)
	currentKey := "127.0.0.1:" + strconv.Itoa(current.Port)

	// Open every connection of the replica pool: the balancer alternates,
	// so half are on each standby.
	held := make([]*pgxpool.Conn, 0, conns)
	for range conns {
		c, err := st.ReplicaPool().Acquire(ctx)
		require.NoError(t, err)
		held = append(held, c)
	}
	for _, c := range held {
		c.Release()
	}
	_, err = st.InsertEvents(ctx, []*audit.Event{newEvent("rr-two", time.Now(), 30)})
	require.NoError(t, err)
	require.NoError(t, current.WaitReplayed(ctx, primary))
	require.NoError(t, paused.WaitReplayed(ctx, primary))
	router.Sample(ctx)
	for _, key := range []string{currentKey, pausedKey} {
		usable, known := router.Usable(key)
		require.True(t, usable && known, "%s: both standbys current and sampled", key)
	}

	// One standby stops replaying; the next write reaches the other only.
	require.NoError(t, paused.PauseReplay(ctx))
	_, err = st.InsertEvents(ctx, []*audit.Event{newEvent("rr-two", time.Now(), 30)})
	require.NoError(t, err)
	require.NoError(t, current.WaitReplayed(ctx, primary))
	deadline := time.Now().Add(30 * time.Second)
	for {
		router.Sample(ctx)
		usable, known := router.Usable(pausedKey)
		if known && !usable {
			break
		}
		require.False(t, time.Now().After(deadline), "the paused standby never counted as behind")
		time.Sleep(50 * time.Millisecond)
	}
	tg, _ := routeOf(router)
	require.Equal(t, readroute.Replica, tg, "the other standby is current: the standbys still serve")

	// Reads from several goroutines at once take every pooled connection,
	// those on the paused standby included: none may answer from it.
	before := r2reads(t, reg)
	var wg sync.WaitGroup
	counts := make([]int64, 4*conns)
	for i := range counts {
		wg.Go(func() {
			n, err := st.CountEvents(ctx, query.EventFilter{CorrelationID: "rr-two"}, 1000)
			assert.NoError(t, err)
			counts[i] = n
		})
	}
	wg.Wait()
	for i, n := range counts {
		assert.Equal(t, int64(2), n, "read %d saw the paused standby's stale copy", i)
	}
	after := r2reads(t, reg)
	assert.Greater(t, after["replica/replica_current"], before["replica/replica_current"], "the current standby served reads")
	assert.Greater(t, after["primary/lag"], before["primary/lag"], "reads refused the paused standby went to the primary")
	assert.Positive(t, labeled(t, reg, "datastorage_db_replica_refused_total", pausedKey), "the refusals name the paused standby")
	assert.Zero(t, labeled(t, reg, "datastorage_db_replica_refused_total", currentKey))
	assert.Greater(t, labeled(t, reg, "datastorage_db_replica_lag_seconds", pausedKey), 0.3)
	assert.Zero(t, labeled(t, reg, "datastorage_db_replica_lag_seconds", currentKey))

	// A replicaUrl that lists both hosts, the paused one first: pgx tries
	// the hosts in order (it has no load_balance_hosts), so every
	// connection lands on the paused standby, is refused, and the reads go
	// to the primary, fresh.
	reg2 := prometheus.NewRegistry()
	multi, err := store.Open(ctx, url, store.Options{MaxConns: 2, MaxReplicaLag: 300 * time.Millisecond, Registerer: reg2,
		ReplicaURL: "postgres://postgres@" + pausedKey + "," + currentKey + "/datastorage?sslmode=disable", ConnectTimeout: 2 * time.Second})
	require.NoError(t, err)
	t.Cleanup(multi.Close)
	for range 3 {
		multi.ReadRouter().Sample(ctx)
		n, err := multi.CountEvents(ctx, query.EventFilter{CorrelationID: "rr-two"}, 1000)
		require.NoError(t, err)
		assert.Equal(t, int64(2), n, "a read saw the paused standby's stale copy")
	}
	assert.Positive(t, labeled(t, reg2, "datastorage_db_replica_lag_seconds", pausedKey))
	assert.Zero(t, r2reads(t, reg2)["replica/replica_current"], "the only standby reached is behind: no read served by it")
	require.NoError(t, paused.ResumeReplay(ctx))
}

// r2reads is datastorage_db_reads_total by "target/reason".
func r2reads(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	return (&replicated{reg: reg}).reads(t)
}

// labeled is the value of name's series whose server label is server (0
// when there is none).
func labeled(t *testing.T, reg *prometheus.Registry, name, server string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "server" && l.GetValue() == server {
					return m.GetGauge().GetValue() + m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
