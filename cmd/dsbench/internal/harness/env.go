package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"kubernaut.ai/datastorage/internal/testenv"
)

// PGSettings are the PostgreSQL settings of the benchmark: durable like
// production (fsync, full-page writes and synchronous commit on), with the
// memory and WAL sizing a production instance of this size would get.
// pg_stat_statements is loaded to show where the server spends its time.
func PGSettings() [][2]string {
	return [][2]string{
		{"fsync", "on"},
		{"synchronous_commit", "on"},
		{"full_page_writes", "on"},
		{"wal_level", "replica"},
		{"shared_buffers", "1GB"},
		{"wal_buffers", "16MB"},
		{"max_wal_size", "4GB"},
		{"checkpoint_timeout", "15min"},
		{"max_connections", "100"},
		{"shared_preload_libraries", "pg_stat_statements"},
		{"pg_stat_statements.track", "all"},
		{"pg_stat_statements.track_planning", "on"},
		{"track_io_timing", "on"},
		{"track_wal_io_timing", "on"},
	}
}

// MergeSettings returns base with over applied: a setting of over replaces
// the one of the same name in base, in place, or is added at the end.
func MergeSettings(base, over [][2]string) [][2]string {
	out := slices.Clone(base)
	for _, s := range over {
		i := slices.IndexFunc(out, func(b [2]string) bool { return b[0] == s[0] })
		if i < 0 {
			out = append(out, s)
			continue
		}
		out[i][1] = s[1]
	}
	return out
}

// benchDB is the database the server writes to.
const benchDB = "datastorage_bench"

// Env is the PostgreSQL, Redis and server processes of one run.
type Env struct {
	PG      *testenv.Postgres
	Redis   *testenv.Redis
	DBURL   string // the server's database
	server  *exec.Cmd
	srvDone chan error
	srvLog  string
	Bin     string
	API     string // http://127.0.0.1:port
	APIAddr string // 127.0.0.1:port
	Metrics string // http://127.0.0.1:port of /metrics and /debug/pprof
	Pprof   bool   // the server serves /debug/pprof
}

// StartEnv starts PostgreSQL with pgSettings (PGSettings, or a merge over
// it), Redis, and the server bin against a fresh database with
// pg_stat_statements, with serverEnv added to the server's environment and
// its pprof handlers on when it has them. Close stops all three; on an error
// nothing is left running.
func StartEnv(ctx context.Context, bin, workDir string, serverEnv []string, pgSettings [][2]string) (*Env, error) {
	opts := make([]testenv.PostgresOption, 0, len(pgSettings))
	for _, s := range pgSettings {
		opts = append(opts, testenv.WithPostgresSetting(s[0], s[1]))
	}
	e := &Env{Bin: bin}
	var err error
	Logf("starting PostgreSQL (fsync on, synchronous_commit on, shared_buffers 1GB)")
	if e.PG, err = testenv.StartPostgres(opts...); err != nil {
		return nil, err
	}
	Logf("starting Redis")
	if e.Redis, err = testenv.StartRedis(); err != nil {
		e.Close()
		return nil, err
	}
	if e.DBURL, err = e.PG.CreateDatabase(ctx, benchDB); err != nil {
		e.Close()
		return nil, err
	}
	conn, err := pgx.Connect(ctx, e.DBURL)
	if err != nil {
		e.Close()
		return nil, err
	}
	_, err = conn.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
	conn.Close(ctx)
	if err != nil {
		e.Close()
		return nil, fmt.Errorf("create pg_stat_statements: %w", err)
	}
	// Ask for the pprof handlers on the metrics port; a server that does not
	// know the switch refuses the variable, and runs without it.
	err = e.startServer(ctx, workDir, append([]string{"DATASTORAGE_SERVER_PPROF=true"}, serverEnv...))
	if err != nil && strings.Contains(strings.ToLower(err.Error()), "pprof") {
		Logf("the server has no server.pprof switch; running without profiles")
		err = e.startServer(ctx, workDir, serverEnv)
	}
	if err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

func (e *Env) startServer(ctx context.Context, workDir string, extraEnv []string) error {
	apiPort, err := freePort()
	if err != nil {
		return err
	}
	metricsPort, err := freePort()
	if err != nil {
		return err
	}
	e.APIAddr = "127.0.0.1:" + strconv.Itoa(apiPort)
	e.API = "http://" + e.APIAddr
	e.Metrics = "http://127.0.0.1:" + strconv.Itoa(metricsPort)
	e.srvLog = filepath.Join(workDir, "server.log")
	logFile, err := os.Create(e.srvLog)
	if err != nil {
		return err
	}
	defer logFile.Close()

	// The service refuses DATASTORAGE_ variables it does not know, so the
	// server gets only ours.
	var environ []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DATASTORAGE_") {
			environ = append(environ, kv)
		}
	}
	environ = append(environ,
		"DATASTORAGE_DATABASE_URL="+e.DBURL,
		"DATASTORAGE_REDIS_ADDR="+e.Redis.Addr(),
		"DATASTORAGE_SERVER_HOST=127.0.0.1",
		"DATASTORAGE_SERVER_PORT="+strconv.Itoa(apiPort),
		"DATASTORAGE_SERVER_METRICSPORT="+strconv.Itoa(metricsPort),
		"DATASTORAGE_SERVER_ENDPOINTPROPAGATIONDELAY=0s",
		"DATASTORAGE_LOGGING_LEVEL=warn",
	)
	environ = append(environ, extraEnv...)
	cmd := exec.Command(e.Bin, "serve")
	cmd.Env = environ
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = childAttr()
	if err := startOnSpawnerThread(cmd); err != nil {
		return fmt.Errorf("start server: %w", err)
	}
	e.server = cmd
	e.srvDone = make(chan error, 1)
	go func() { e.srvDone <- cmd.Wait() }()

	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-e.srvDone:
			e.server = nil
			return fmt.Errorf("server exited during start: %v\n%s", err, tail(e.srvLog, 20))
		default:
		}
		if ready(ctx, e.API+"/readyz") {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("server not ready after 60s\n%s", tail(e.srvLog, 20))
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.Pprof = ready(ctx, e.Metrics+"/debug/pprof/cmdline")
	return nil
}

func ready(ctx context.Context, url string) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := LoopbackClient(4).Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// ServerPID is the server's process id.
func (e *Env) ServerPID() int { return e.server.Process.Pid }

// PostmasterPID reads the first line of postmaster.pid.
func (e *Env) PostmasterPID() int {
	b, err := os.ReadFile(filepath.Join(e.PG.DataDir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(line))
	return pid
}

func (e *Env) stopServer() error {
	if e.server == nil {
		return nil
	}
	_ = e.server.Process.Signal(os.Interrupt)
	select {
	case err := <-e.srvDone:
		e.server = nil
		return err
	case <-time.After(30 * time.Second):
		_ = e.server.Process.Kill()
		<-e.srvDone
		e.server = nil
		return errors.New("server did not stop within 30s; killed")
	}
}

// Close stops the server (interrupt, then kill after 30 s), Redis and
// PostgreSQL.
func (e *Env) Close() {
	if err := e.stopServer(); err != nil {
		Logf("server stop: %v", err)
	}
	if e.Redis != nil {
		_ = e.Redis.Close()
	}
	if e.PG != nil {
		_ = e.PG.Close()
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// GoAllocs reads the server's heap allocations so far (objects and bytes,
// go_memstats_mallocs_total and go_memstats_alloc_bytes_total on its
// /metrics): exact counts, unlike a sampled allocation profile, and
// independent of what else runs on the machine. ok is false when the
// server did not answer them.
func (e *Env) GoAllocs(ctx context.Context) (objects, bytes int64, ok bool) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.Metrics+"/metrics", nil)
	resp, err := LoopbackClient(1).Do(req)
	if err != nil {
		return 0, 0, false
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return 0, 0, false
	}
	return parseGoAllocs(string(b))
}

// parseGoAllocs finds the two counters in a Prometheus text exposition.
func parseGoAllocs(text string) (objects, bytes int64, ok bool) {
	var seen int
	for line := range strings.SplitSeq(text, "\n") {
		name, value, found := strings.Cut(line, " ")
		if !found {
			continue
		}
		var dst *int64
		switch name {
		case "go_memstats_mallocs_total":
			dst = &objects
		case "go_memstats_alloc_bytes_total":
			dst = &bytes
		default:
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return 0, 0, false
		}
		*dst = int64(f)
		seen++
	}
	return objects, bytes, seen == 2
}
