//go:build linux

package sdk

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/client"
	"kubernaut.ai/datastorage/internal/testenv"
)

// TestEmitterDeliversExactlyOnceAcrossAServerRestart drives 100,000 events
// through one emitter into the real binary, stops the server with SIGTERM
// half-way and starts a new process on the same port, as a rolling update
// does. The emitter retries through the gap; PostgreSQL must then hold each
// of the 100,000 events exactly once.
func TestEmitterDeliversExactlyOnceAcrossAServerRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary against PostgreSQL")
	}
	const (
		total     = 100_000
		producers = 4
		restartAt = total / 2
	)
	bin := testenv.ServiceBinary(t)
	dbURL := testenv.NewDatabase(t)
	redisAddr, redisDB := testenv.NewRedisDB(t)
	port, metricsPort := testenv.FreePort(t), testenv.FreePort(t)
	env := []string{
		"DATASTORAGE_DATABASE_URL=" + dbURL,
		"DATASTORAGE_REDIS_ADDR=" + redisAddr,
		"DATASTORAGE_REDIS_DB=" + strconv.Itoa(redisDB),
		"DATASTORAGE_SERVER_HOST=127.0.0.1",
		"DATASTORAGE_SERVER_PORT=" + strconv.Itoa(port),
		"DATASTORAGE_SERVER_METRICSPORT=" + strconv.Itoa(metricsPort),
		"DATASTORAGE_SERVER_ENDPOINTPROPAGATIONDELAY=0s",
		"DATASTORAGE_SERVER_SHUTDOWNTIMEOUT=20s",
		"DATASTORAGE_LOGGING_FORMAT=text",
		"DATASTORAGE_LOGGING_LEVEL=warn",
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	first := startBinary(t, bin, env, base)

	c, err := client.New(base, client.WithHTTPClient(&http.Client{Timeout: 30 * time.Second}))
	require.NoError(t, err)
	em := client.NewEmitter(c, client.EmitterOptions{
		BatchSize:      1000,
		BufferSize:     20_000,
		FlushInterval:  50 * time.Millisecond,
		MaxBlock:       time.Minute, // the producers wait through the gap rather than drop
		InitialBackoff: 50 * time.Millisecond,
		MaxBackoff:     500 * time.Millisecond,
		RequestTimeout: 20 * time.Second,
		Logger:         quietLogger(),
	})

	ids := make([][]uuid.UUID, producers)
	var emitted atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range total / producers {
				ev := newEvent(fmt.Sprintf("rr-restart-%d-%d", p, i%50))
				ev.ID = client.NewEventID()
				ev.Data = map[string]any{"producer": p, "seq": i}
				if err := em.Emit(context.Background(), ev); err != nil {
					t.Errorf("emit %d/%d: %v", p, i, err)
					return
				}
				ids[p] = append(ids[p], ev.ID)
				emitted.Add(1)
			}
		}()
	}

	// Restart once half of the events have been confirmed by the server.
	require.Eventually(t, func() bool { return em.Stats().Sent >= restartAt }, 40*time.Second, 5*time.Millisecond,
		"half of the events were not delivered in time")
	sentBefore := em.Stats().Sent
	first.stop(t)
	t.Logf("server stopped after %d events sent (%d emitted) in %v", sentBefore, emitted.Load(), time.Since(start).Round(time.Millisecond))
	startBinary(t, bin, env, base)

	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	require.NoError(t, em.Close(ctx))
	st := em.Stats()
	t.Logf("emitter: %+v in %v", st, time.Since(start).Round(time.Millisecond))
	assert.EqualValues(t, total, st.Queued)
	assert.EqualValues(t, total, st.Sent)
	assert.Zero(t, st.Dropped)
	assert.Zero(t, st.Failed)
	assert.Greater(t, st.Sent, sentBefore, "events were delivered by the second process")
	assert.Positive(t, st.Retried, "the emitter retried through the gap")

	// Count in PostgreSQL by event_id.
	conn, err := pgx.Connect(context.Background(), dbURL)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	var rows, distinct int
	require.NoError(t, conn.QueryRow(context.Background(),
		`SELECT count(*), count(DISTINCT event_id) FROM audit_events WHERE correlation_id LIKE 'rr-restart-%'`).Scan(&rows, &distinct))
	assert.Equal(t, total, distinct, "every event stored")
	assert.Equal(t, total, rows, "no event stored twice")

	want := make(map[uuid.UUID]struct{}, total)
	for _, p := range ids {
		for _, id := range p {
			want[id] = struct{}{}
		}
	}
	require.Len(t, want, total)
	got, err := conn.Query(context.Background(), `SELECT event_id FROM audit_events WHERE correlation_id LIKE 'rr-restart-%'`)
	require.NoError(t, err)
	stored, err := pgx.CollectRows(got, pgx.RowTo[uuid.UUID])
	require.NoError(t, err)
	missing := len(want)
	for _, id := range stored {
		if _, ok := want[id]; ok {
			delete(want, id)
			missing--
		}
	}
	assert.Zero(t, missing, "stored ids are exactly the emitted ids")

	// One refused event, so the per-field validation counter has a series.
	_, err = c.WriteEvent(context.Background(), client.Event{Version: "1.0"})
	require.ErrorIs(t, err, client.ErrValidation)
	checkServedMetrics(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort))
}

// checkServedMetrics checks that the running server serves every
// datastorage_* metric that the alert rules and the Grafana dashboard in
// deploy/ use. The deploy module checks the same names, with their labels,
// against the metric declarations in the Go sources; this catches what
// reading the sources cannot: a collector that is declared but never
// registered by `serve`.
func checkServedMetrics(t *testing.T, url string) {
	t.Helper()
	used := map[string]bool{}
	for _, f := range []string{"../../deploy/prometheus/rules.yaml", "../../deploy/grafana/datastorage.json"} {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, m := range regexp.MustCompile(`datastorage_[a-z0-9_]+`).FindAllString(string(data), -1) {
			used[m] = true
		}
	}
	require.NotEmpty(t, used)
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	served := map[string]bool{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, _, _ := strings.Cut(line, "{")
		name, _, _ = strings.Cut(name, " ")
		served[name] = true
	}
	for name := range used {
		if why, ok := servedOnlyWith[name]; ok {
			t.Logf("%s is served only with %s, which this server does not have", name, why)
			continue
		}
		assert.True(t, served[name], "deploy/ uses %s, which the server does not serve", name)
	}
}

// servedOnlyWith are the metrics deploy/ uses that a server without a
// standby does not serve at all (readroute registers them only with
// database.replicaUrl, so that "no standby" never reads as "standby down"),
// with the setting they need. test/fault's TestLaggingStandbySendsReadsToThePrimary
// reads them from a server that has a standby; the deploy module checks
// their names and labels against the sources.
var servedOnlyWith = map[string]string{
	"datastorage_db_replica_lag_seconds":   "database.replicaUrl",
	"datastorage_db_replica_up":            "database.replicaUrl",
	"datastorage_db_replica_refused_total": "database.replicaUrl (and a standby behind)",
}

// process is a running `datastorage serve`.
type process struct {
	cmd    *exec.Cmd
	out    *lockedBuffer
	exited chan struct{}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startBinary runs `datastorage serve` with env (and no other DATASTORAGE_
// variable: the service refuses ones it does not know) and waits until it
// is ready.
func startBinary(t *testing.T, bin string, env []string, base string) *process {
	t.Helper()
	p := &process{out: &lockedBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, "serve")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DATASTORAGE_") {
			p.cmd.Env = append(p.cmd.Env, kv)
		}
	}
	p.cmd.Env = append(p.cmd.Env, env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	require.NoError(t, testenv.StartChild(p.cmd))
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("server output (pid %d):\n%s", p.cmd.Process.Pid, p.out.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case <-p.exited:
			t.Fatalf("the server exited during start:\n%s", p.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server was not ready within 30 s:\n%s", p.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (p *process) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("the server did not stop within 30 s of SIGTERM:\n%s", p.out.String())
	}
	assert.Equal(t, 0, p.cmd.ProcessState.ExitCode(), "a clean shutdown:\n%s", p.out.String())
}
