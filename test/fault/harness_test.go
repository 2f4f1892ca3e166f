// Package fault holds fault-injection tests of the built datastorage binary:
// each test runs its own PostgreSQL and Redis (AOF on), starts the service as
// a subprocess, writes events with client-chosen ids at a steady rate, breaks
// something (stops PostgreSQL, Redis or both, kills or stops the service,
// fills the spool, plants poison entries) and then checks in PostgreSQL, by
// id, that every event answered 201 or 202 is stored exactly once and that no
// event answered 503 is stored at all.
package fault

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/testenv"
)

// defaultParallel is how many of these tests run at once unless -parallel
// says otherwise. They spend their time waiting on servers and clocks, not
// on the CPU, so running them all together keeps the suite short even on a
// two-core machine (go test's default is GOMAXPROCS).
const defaultParallel = 8

func TestMain(m *testing.M) {
	flag.Parse()
	parallelSet := false
	flag.Visit(func(f *flag.Flag) { parallelSet = parallelSet || f.Name == "test.parallel" })
	if !parallelSet {
		_ = flag.Set("test.parallel", strconv.Itoa(defaultParallel))
	}
	if testing.Short() {
		// Every test here needs real servers and skips under -short.
		os.Exit(m.Run())
	}
	testenv.Main(m)
}

// stack is one test's PostgreSQL and Redis.
type stack struct {
	t     *testing.T
	pg    *testenv.Postgres
	redis *testenv.Redis
	dbURL string
	rdb   *redis.Client // the test's own client, for looking at the streams
}

// newStack starts PostgreSQL (with pgOpts) and Redis side by side (initdb is
// the slow part).
func newStack(t *testing.T, pgOpts ...testenv.PostgresOption) *stack {
	t.Helper()
	if testing.Short() {
		t.Skip("fault tests need PostgreSQL and Redis; they do not run with -short")
	}
	var (
		pg     *testenv.Postgres
		r      *testenv.Redis
		pgErr  error
		redErr error
		wg     sync.WaitGroup
	)
	wg.Go(func() { pg, pgErr = testenv.StartPostgres(pgOpts...) })
	wg.Go(func() { r, redErr = testenv.StartRedis(testenv.WithAOF()) })
	wg.Wait()
	if pg != nil {
		t.Cleanup(func() { _ = pg.Close() })
	}
	if r != nil {
		t.Cleanup(func() { _ = r.Close() })
	}
	require.NoError(t, pgErr)
	require.NoError(t, redErr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url, err := pg.CreateDatabase(ctx, "datastorage")
	require.NoError(t, err)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: 2})
	t.Cleanup(func() { _ = rdb.Close() })
	return &stack{t: t, pg: pg, redis: r, dbURL: url, rdb: rdb}
}

// env is the service's environment for this stack, then extra settings.
func (s *stack) env(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DATASTORAGE_") && !strings.HasPrefix(kv, "CONFIG_PATH=") {
			env = append(env, kv)
		}
	}
	env = append(env,
		"DATASTORAGE_DATABASE_URL="+s.dbURL,
		"DATASTORAGE_DATABASE_CONNECTTIMEOUT=1s",
		"DATASTORAGE_DATABASE_MAXCONNS=8",
		"DATASTORAGE_REDIS_ADDR="+s.redis.Addr(),
		"DATASTORAGE_REDIS_CLAIMIDLE=2s",
		"DATASTORAGE_SERVER_HOST=127.0.0.1",
		"DATASTORAGE_SERVER_ENDPOINTPROPAGATIONDELAY=0s",
		"DATASTORAGE_SERVER_SHUTDOWNTIMEOUT=20s",
		"DATASTORAGE_SERVER_REQUESTTIMEOUT=10s",
		"DATASTORAGE_LOGGING_FORMAT=text",
	)
	return append(env, extra...)
}

// server is one datastorage process.
type server struct {
	t       *testing.T
	name    string
	cmd     *exec.Cmd
	base    string
	metrics string
	logPath string
	exited  chan struct{}
}

// startServer runs `datastorage serve` on the stack and waits for /healthz.
func (s *stack) startServer(name string, extra ...string) *server {
	s.t.Helper()
	for attempt := 0; ; attempt++ {
		srv, err := s.tryStart(name, extra)
		if err == nil {
			return srv
		}
		// Another process may take a port between our check and the
		// server's bind; anything else is a real failure.
		if attempt < 3 && strings.Contains(err.Error(), "address already in use") {
			continue
		}
		s.t.Fatal(err)
	}
}

func (s *stack) tryStart(name string, extra []string) (*server, error) {
	port, mport := testenv.FreePort(s.t), testenv.FreePort(s.t)
	srv := &server{
		t:       s.t,
		name:    name,
		base:    fmt.Sprintf("http://127.0.0.1:%d", port),
		metrics: fmt.Sprintf("http://127.0.0.1:%d/metrics", mport),
		logPath: filepath.Join(s.t.TempDir(), name+".log"),
		exited:  make(chan struct{}),
	}
	logf, err := os.Create(srv.logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own copy
	srv.cmd = exec.Command(testenv.ServiceBinary(s.t), "serve")
	srv.cmd.Env = s.env(append([]string{
		"DATASTORAGE_SERVER_PORT=" + strconv.Itoa(port),
		"DATASTORAGE_SERVER_METRICSPORT=" + strconv.Itoa(mport),
	}, extra...)...)
	srv.cmd.Stdout, srv.cmd.Stderr = logf, logf
	if err := testenv.StartChild(srv.cmd); err != nil {
		return nil, err
	}
	go func() { _ = srv.cmd.Wait(); close(srv.exited) }()
	s.t.Cleanup(func() {
		srv.kill()
		// FAULT_LOGS=1 shows the logs of passing tests too.
		if s.t.Failed() || os.Getenv("FAULT_LOGS") != "" {
			s.t.Logf("--- last lines of %s's log ---\n%s", name, srv.logTail(60))
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(srv.base + "/healthz")
		if err == nil {
			resp.Body.Close()
			return srv, nil
		}
		select {
		case <-srv.exited:
			return nil, fmt.Errorf("%s exited during start:\n%s", name, srv.logTail(30))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s did not answer /healthz within 60 s:\n%s", name, srv.logTail(30))
		}
	}
}

// kill sends SIGKILL (as a crash would) and waits for the process to go.
func (srv *server) kill() {
	_ = srv.cmd.Process.Kill()
	<-srv.exited
}

// terminate sends SIGTERM and waits up to timeout for a clean exit.
func (srv *server) terminate(timeout time.Duration) (exitCode int) {
	srv.t.Helper()
	require.NoError(srv.t, srv.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-srv.exited:
	case <-time.After(timeout):
		srv.t.Fatalf("%s did not stop within %s of SIGTERM", srv.name, timeout)
	}
	return srv.cmd.ProcessState.ExitCode()
}

func (srv *server) log() string {
	b, _ := os.ReadFile(srv.logPath)
	return string(b)
}

func (srv *server) logTail(n int) string {
	lines := strings.Split(strings.TrimRight(srv.log(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ready returns /readyz's status and body.
func (srv *server) ready() (int, map[string]any) {
	srv.t.Helper()
	resp, err := http.Get(srv.base + "/readyz")
	require.NoError(srv.t, err)
	defer resp.Body.Close()
	var v map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&v)
	return resp.StatusCode, v
}

// metric returns the value of one sample of the metrics endpoint (name with
// its labels as exposed, e.g. `datastorage_spool_depth{stream="events"}`),
// and whether it was present.
func (srv *server) metric(sample string) (float64, bool) {
	resp, err := http.Get(srv.metrics)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}

// runCLI runs a datastorage command to completion.
func (s *stack) runCLI(extraEnv []string, args ...string) (code int, stdout, stderr string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.ServiceBinary(s.t), args...)
	cmd.Env = s.env(extraEnv...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		s.t.Fatalf("running datastorage %v: %v", args, err)
	}
	return code, out.String(), errOut.String()
}

// xlen is the length of a stream.
func (s *stack) xlen(key string) int64 {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := s.rdb.XLen(ctx, key).Result()
	require.NoError(s.t, err)
	return n
}

// pending is the number of delivered, unacknowledged entries of a stream.
func (s *stack) pending(key string) int64 {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p, err := s.rdb.XPending(ctx, key, "data-storage-retry-workers").Result()
	if err != nil && strings.HasPrefix(err.Error(), "NOGROUP") {
		return 0
	}
	require.NoError(s.t, err)
	return p.Count
}

// waitFor polls cond every 50 ms until it holds or timeout passes, and
// returns how long it took.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

// stored returns how many rows each event id has in audit_events.
func (s *stack) stored() map[uuid.UUID]int {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.dbURL)
	require.NoError(s.t, err)
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, `SELECT event_id, count(*) FROM audit_events GROUP BY event_id`)
	require.NoError(s.t, err)
	out := map[uuid.UUID]int{}
	var id uuid.UUID
	var n int
	_, err = pgx.ForEachRow(rows, []any{&id, &n}, func() error {
		out[id] = n
		return nil
	})
	require.NoError(s.t, err)
	return out
}

// outcome is one write request and its answer.
type outcome struct {
	ids        []uuid.UUID
	batch      bool
	status     int // 0: no answer (connection refused or broken)
	retryAfter string
	body       string
	start, end time.Time
}

// loadSpec describes a steady load: singles workers each sending one event
// per request, batch workers each sending batchSize events per request, every
// worker at perWorker requests per second (0: back to back).
type loadSpec struct {
	singles, batches int
	batchSize        int
	perWorker        float64
}

// load writes events until stopped and records every request.
type load struct {
	t    *testing.T
	name string

	mu       sync.Mutex
	outcomes []outcome
	target   string

	stopc chan struct{}
	wg    sync.WaitGroup
}

// startLoad begins writing to srv.
func startLoad(t *testing.T, name string, srv *server, spec loadSpec) *load {
	l := &load{t: t, name: name, target: srv.base, stopc: make(chan struct{})}
	client := &http.Client{
		Timeout:   20 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: spec.singles + spec.batches, DisableCompression: true},
	}
	t.Cleanup(l.stop)
	for w := range spec.singles + spec.batches {
		size := 1
		if w >= spec.singles {
			size = max(spec.batchSize, 1)
		}
		l.wg.Go(func() { l.worker(client, w, size, w >= spec.singles, spec.perWorker) })
	}
	return l
}

func (l *load) worker(client *http.Client, w, size int, batch bool, rate float64) {
	var tick <-chan time.Time
	if rate > 0 {
		tk := time.NewTicker(time.Duration(float64(time.Second) / rate))
		defer tk.Stop()
		tick = tk.C
	}
	for n := 0; ; n++ {
		if tick != nil {
			select {
			case <-l.stopc:
				return
			case <-tick:
			}
		} else {
			select {
			case <-l.stopc:
				return
			default:
			}
		}
		corr := fmt.Sprintf("%s-w%d-%d", l.name, w, n/20)
		o := outcome{batch: batch, ids: make([]uuid.UUID, size)}
		events := make([]map[string]any, size)
		for i := range events {
			o.ids[i] = uuid.New()
			events[i] = eventBody(o.ids[i], corr, n)
		}
		var body []byte
		path := "/api/v1/audit/events"
		if batch {
			body, _ = json.Marshal(events)
			path += "/batch"
		} else {
			body, _ = json.Marshal(events[0])
		}
		l.mu.Lock()
		target := l.target
		l.mu.Unlock()
		o.start = time.Now()
		resp, err := client.Post(target+path, "application/json", bytes.NewReader(body))
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			o.status, o.retryAfter, o.body = resp.StatusCode, resp.Header.Get("Retry-After"), string(b)
		}
		o.end = time.Now()
		l.mu.Lock()
		l.outcomes = append(l.outcomes, o)
		l.mu.Unlock()
		if err != nil && tick == nil {
			// Back to back against a dead server would only spin.
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func eventBody(id uuid.UUID, corr string, n int) map[string]any {
	return map[string]any{
		"event_id":        id.String(),
		"version":         "1.0",
		"event_type":      "fault.probe",
		"event_timestamp": time.Now().UTC().Format(time.RFC3339Nano),
		"event_category":  "gateway",
		"event_action":    "probe",
		"event_outcome":   "success",
		"correlation_id":  corr,
		"event_data":      map[string]any{"n": n, "note": "fault test"},
	}
}

// stop ends the load and waits for the requests in flight.
func (l *load) stop() {
	select {
	case <-l.stopc:
	default:
		close(l.stopc)
	}
	l.wg.Wait()
}

// results returns the recorded outcomes (after stop).
func (l *load) results() []outcome {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]outcome(nil), l.outcomes...)
}

// tally is what the checks found.
type tally struct {
	requests, accepted, queued202, rejected, unanswered  int
	stored, lost, duplicated, storedRejected, unknownIDs int
	// ambiguous counts events answered 503 yet stored, by requests in
	// flight while PostgreSQL was being stopped (see checkOpts.ambiguous).
	ambiguous int
}

func (c tally) String() string {
	return fmt.Sprintf("requests=%d accepted(201/202)=%d of which single 202=%d rejected(503)=%d unanswered=%d | "+
		"stored=%d lost=%d duplicated=%d rejected-but-stored=%d (of which ambiguous commits %d) stored-without-request=%d",
		c.requests, c.accepted, c.queued202, c.rejected, c.unanswered,
		c.stored, c.lost, c.duplicated, c.storedRejected+c.ambiguous, c.ambiguous, c.unknownIDs)
}

// checkOpts adjust check.
type checkOpts struct {
	// extra are ids written by other means than the load, which may be stored.
	extra []uuid.UUID
	// ambiguous tells the requests whose 503 may hide a commit that took
	// place: PostgreSQL stopped between writing a COMMIT and answering it,
	// the connection died, and with Redis down too the write answered 503.
	// No server can tell such a commit from a failed one until the database
	// is back; a client retrying with the same event_id is deduplicated.
	ambiguous func(outcome) bool
}

// check compares the outcomes with PostgreSQL: every accepted event is stored
// exactly once, no rejected event is stored, nothing is stored that was not
// sent, and every answer is one the contract allows (503s carry Retry-After).
func check(t *testing.T, s *stack, outcomes []outcome, opts checkOpts) tally {
	t.Helper()
	stored := s.stored()
	var c tally
	sent := map[uuid.UUID]bool{}
	for _, id := range opts.extra {
		sent[id] = true
	}
	for _, o := range outcomes {
		c.requests++
		for _, id := range o.ids {
			sent[id] = true
		}
		switch o.status {
		case http.StatusCreated, http.StatusAccepted:
			if o.status == http.StatusAccepted {
				if o.batch {
					t.Errorf("a batch answered 202 (CONTRACT §3 wants 201 for a spooled batch): %s", o.body)
				}
				c.queued202++
			}
			c.accepted += len(o.ids)
			for _, id := range o.ids {
				if stored[id] == 0 {
					c.lost++
				}
			}
		case http.StatusServiceUnavailable:
			c.rejected += len(o.ids)
			if o.retryAfter == "" {
				t.Errorf("a 503 without Retry-After: %s", o.body)
			}
			for _, id := range o.ids {
				switch {
				case stored[id] == 0:
				case opts.ambiguous != nil && opts.ambiguous(o):
					c.ambiguous++
				default:
					c.storedRejected++
				}
			}
		case 0:
			c.unanswered += len(o.ids)
		default:
			t.Errorf("unexpected answer %d: %s", o.status, o.body)
		}
	}
	for id, n := range stored {
		c.stored++
		if n > 1 {
			c.duplicated++
		}
		if !sent[id] {
			c.unknownIDs++
		}
	}
	if c.lost != 0 || c.duplicated != 0 || c.storedRejected != 0 || c.unknownIDs != 0 {
		t.Errorf("exactly-once storage violated: %s", c)
	}
	return c
}

// count returns how many requests got status among outcomes matching keep.
func count(outcomes []outcome, status int, keep func(outcome) bool) int {
	n := 0
	for _, o := range outcomes {
		if o.status == status && (keep == nil || keep(o)) {
			n++
		}
	}
	return n
}

// postNotification writes a legacy notification audit record and returns the
// status and the Retry-After header.
func (srv *server) postNotification(id string) (int, string) {
	srv.t.Helper()
	body, _ := json.Marshal(map[string]any{
		"remediation_id": "rr-fault", "notification_id": id, "recipient": "ops@example.com",
		"channel": "email", "message_summary": "fault test", "status": "sent",
		"sent_at": time.Now().UTC().Format(time.RFC3339Nano),
	})
	resp, err := http.Post(srv.base+"/api/v1/audit/notifications", "application/json", bytes.NewReader(body))
	require.NoError(srv.t, err)
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After")
}

// storedNotifications returns how many rows each notification_id has.
func (s *stack) storedNotifications() map[string]int {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.dbURL)
	require.NoError(s.t, err)
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, `SELECT notification_id, count(*) FROM notification_audit GROUP BY notification_id`)
	require.NoError(s.t, err)
	out := map[string]int{}
	var id string
	var n int
	_, err = pgx.ForEachRow(rows, []any{&id, &n}, func() error {
		out[id] = n
		return nil
	})
	require.NoError(s.t, err)
	return out
}
