package e2e

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/testenv"
)

func TestServeWritesAndReadsBackAndExportsMetrics(t *testing.T) {
	t.Parallel()
	s := start(t)
	status, ready := s.get("/readyz")
	require.Equal(t, 200, status)
	assert.Equal(t, "up", ready["database"])

	corr := "rr-" + uuid.NewString()
	status, body, err := s.post("/api/v1/audit/events", event(corr, nil))
	require.NoError(t, err)
	require.Equal(t, 201, status, "%v", body)
	status, body, err = s.post("/api/v1/audit/events/batch", []any{event(corr, nil), event(corr, nil)})
	require.NoError(t, err)
	require.Equal(t, 201, status, "%v", body)

	status, list := s.get("/api/v1/audit/events?correlation_id=" + corr)
	require.Equal(t, 200, status)
	data := list["data"].([]any)
	require.Len(t, data, 3)
	first := data[2].(map[string]any)
	assert.Equal(t, "", first["previous_event_hash"], "the first event starts the chain")
	assert.Equal(t, first["event_hash"], data[1].(map[string]any)["previous_event_hash"])

	resp, err := http.Get(s.metrics)
	require.NoError(t, err)
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{
		`datastorage_http_requests_total{code="201",method="POST",route="POST /api/v1/audit/events"} 1`,
		`datastorage_ingest_events_total{result="committed"} 3`,
		"datastorage_http_request_duration_seconds_bucket",
		"datastorage_ingest_batch_size_bucket",
		"datastorage_db_pool_connections",
		"go_goroutines",
		"process_resident_memory_bytes",
	} {
		assert.Contains(t, string(m), name)
	}
	assert.NotContains(t, string(m), corr, "no client string becomes a label")
	assert.Contains(t, s.output(), "request_id=", "one log line per request")
}

func TestVersionAndUsage(t *testing.T) {
	t.Parallel()
	code, out := run(t, nil, "version")
	assert.Equal(t, 0, code)
	assert.True(t, strings.HasPrefix(out, "datastorage "), out)
	code, out = run(t, nil, "frobnicate")
	assert.Equal(t, 2, code)
	assert.Contains(t, out, "unknown command")
	code, _ = run(t, nil)
	assert.Equal(t, 2, code)
}

func TestConfigErrorsStopTheStartAndNameTheKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := dir + "/" + name
		require.NoError(t, writeFile(p, content))
		return p
	}
	db := "DATASTORAGE_DATABASE_URL=postgres://nobody@127.0.0.1:1/x"
	cases := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"unknown key in file", []string{db}, []string{"serve", "--config", write("a.yaml", "server:\n  maxBatchSise: 10\n")}, "server.maxBatchSise"},
		{"bad duration in file", []string{db}, []string{"serve", "--config", write("b.yaml", "server:\n  shutdownTimeout: 5 minutes\n")}, "server.shutdownTimeout"},
		{"config path from CONFIG_PATH", []string{db, "CONFIG_PATH=" + write("c.yaml", "ingest:\n  maxEventAge: 300\n")}, []string{"serve"}, "ingest.maxEventAge"},
		{"bad env override", []string{db, "DATASTORAGE_SERVER_PORT=eighty"}, []string{"serve"}, "server.port"},
		{"unknown env variable", []string{db, "DATASTORAGE_SERVER_PROT=80"}, []string{"serve"}, "DATASTORAGE_SERVER_PROT"},
		{"static auth without a token file", []string{db, "DATASTORAGE_AUTH_MODE=static"}, []string{"serve"}, "auth.tokenFile"},
		{"missing database", nil, []string{"serve"}, "database.url"},
		{"missing config file", []string{db}, []string{"serve", "--config", dir + "/nope.yaml"}, "nope.yaml"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out := run(t, tc.env, tc.args...)
			assert.NotEqual(t, 0, code, out)
			assert.Contains(t, out, tc.want)
		})
	}
}

func TestMigrateUpAndStatusAndConcurrentReplicas(t *testing.T) {
	t.Parallel()
	env := []string{"DATASTORAGE_DATABASE_URL=" + testenv.NewDatabase(t)}
	code, out := run(t, env, "migrate", "status")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "pending")

	// Replicas starting together must not race on the schema.
	var wg sync.WaitGroup
	codes := make([]int, 4)
	outs := make([]string, 4)
	for i := range codes {
		wg.Add(1)
		go func() { defer wg.Done(); codes[i], outs[i] = run(t, env, "migrate", "up") }()
	}
	wg.Wait()
	for i := range codes {
		assert.Equal(t, 0, codes[i], outs[i])
	}
	code, out = run(t, env, "migrate", "status")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "applied")
	assert.NotContains(t, out, "pending")
	code, _ = run(t, env, "migrate", "sideways")
	assert.Equal(t, 2, code)
}

// TestSIGTERMDrainsInFlightRequests sends SIGTERM while many writes are in
// flight: every request that was accepted completes, and everything that got
// 201 is stored.
func TestSIGTERMDrainsInFlightRequests(t *testing.T) {
	t.Parallel()
	s := start(t, "DATASTORAGE_SERVER_ENDPOINTPROPAGATIONDELAY=1s")
	corr := "drain-" + uuid.NewString()
	type result struct {
		status int
		ids    []string
		err    error
	}
	// Collected under a lock rather than through a bounded channel: how many
	// requests complete before the server exits depends only on its speed.
	var (
		resultsMu sync.Mutex
		results   []result
	)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				batch := make([]any, 50)
				ids := make([]string, 50)
				for i := range batch {
					ids[i] = uuid.NewString()
					batch[i] = event(corr, map[string]any{"event_id": ids[i]})
				}
				status, _, err := s.post("/api/v1/audit/events/batch", batch)
				resultsMu.Lock()
				results = append(results, result{status, ids, err})
				resultsMu.Unlock()
				if err != nil {
					return // the server has closed its listener
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	sawReady503 := make(chan bool, 1)
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGTERM))
	go func() {
		// During the propagation delay readiness says shutting_down while
		// requests are still served.
		for range 40 {
			resp, err := http.Get(s.base + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 503 {
					sawReady503 <- true
					return
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		sawReady503 <- false
	}()
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("server did not stop within 30 s of SIGTERM")
	}
	close(stop)
	wg.Wait()
	assert.True(t, <-sawReady503, "readiness turned 503 during the drain")
	assert.Equal(t, 0, s.cmd.ProcessState.ExitCode(), s.output())

	// Count in PostgreSQL through a new server on the same database.
	var accepted []string
	var sent int
	for _, r := range results {
		sent++
		if r.err == nil {
			require.Equal(t, 201, r.status, "an accepted request completes")
			accepted = append(accepted, r.ids...)
		}
	}
	require.NotEmpty(t, accepted)
	conn, err := pgx.Connect(context.Background(), s.databaseURL())
	require.NoError(t, err)
	defer conn.Close(context.Background())
	var stored int
	require.NoError(t, conn.QueryRow(context.Background(),
		"SELECT count(DISTINCT event_id) FROM audit_events WHERE event_id = ANY($1::uuid[])", accepted).Scan(&stored))
	assert.Equal(t, len(accepted), stored, "every event that got 201 before shutdown is stored")
	t.Logf("%d requests, %d events acknowledged and stored", sent, len(accepted))
	assert.Contains(t, s.output(), "shutdown complete")
}

// databaseURL returns the database the server was started on.
func (s *server) databaseURL() string {
	var url string
	for _, kv := range s.cmd.Env {
		if v, ok := strings.CutPrefix(kv, "DATASTORAGE_DATABASE_URL="); ok {
			url = v // the last one wins, as in exec
		}
	}
	return url
}
