// Package e2e holds black-box tests of the built datastorage binary, run
// against real PostgreSQL and Redis servers.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// server is a running datastorage process.
type server struct {
	t       *testing.T
	cmd     *exec.Cmd
	base    string
	metrics string
	mu      sync.Mutex
	out     bytes.Buffer
	exited  chan struct{}
}

// run runs the binary with args and env to completion and returns its exit
// code and combined output.
func run(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.ServiceBinary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		}
		t.Fatalf("running %v: %v", args, err)
	}
	return 0, string(out)
}

// start runs `datastorage serve` on a fresh database with extra env, and
// waits until it answers /healthz.
func start(t *testing.T, env ...string) *server {
	t.Helper()
	port, mport := testenv.FreePort(t), testenv.FreePort(t)
	s := &server{
		t:       t,
		base:    fmt.Sprintf("http://127.0.0.1:%d", port),
		metrics: fmt.Sprintf("http://127.0.0.1:%d/metrics", mport),
		exited:  make(chan struct{}),
	}
	s.cmd = exec.Command(testenv.ServiceBinary(t), "serve")
	redisAddr, redisDB := testenv.NewRedisDB(t)
	s.cmd.Env = append(os.Environ(),
		"DATASTORAGE_DATABASE_URL="+testenv.NewDatabase(t),
		"DATASTORAGE_REDIS_ADDR="+redisAddr,
		"DATASTORAGE_REDIS_DB="+strconv.Itoa(redisDB),
		"DATASTORAGE_SERVER_HOST=127.0.0.1",
		"DATASTORAGE_SERVER_PORT="+strconv.Itoa(port),
		"DATASTORAGE_SERVER_METRICSPORT="+strconv.Itoa(mport),
		"DATASTORAGE_SERVER_ENDPOINTPROPAGATIONDELAY=0s",
		"DATASTORAGE_LOGGING_FORMAT=text",
	)
	s.cmd.Env = append(s.cmd.Env, env...)
	s.cmd.Stdout, s.cmd.Stderr = s, s
	require.NoError(t, testenv.StartChild(s.cmd))
	go func() { _ = s.cmd.Wait(); close(s.exited) }()
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		<-s.exited
		if t.Failed() {
			t.Logf("server output:\n%s", s.output())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.base + "/healthz")
		if err == nil {
			resp.Body.Close()
			return s
		}
		select {
		case <-s.exited:
			t.Fatalf("server exited during start:\n%s", s.output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not answer within 30 s:\n%s", s.output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *server) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.Write(p)
}

func (s *server) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

// post sends a JSON body and returns the status and decoded body.
func (s *server) post(path string, body any) (int, map[string]any, error) {
	raw, err := json.Marshal(body)
	if err != nil {
		return 0, nil, err
	}
	resp, err := http.Post(s.base+path, "application/json", bytes.NewReader(raw))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, err
	}
	var v map[string]any
	_ = json.Unmarshal(out, &v)
	return resp.StatusCode, v, nil
}

func (s *server) get(path string) (int, map[string]any) {
	s.t.Helper()
	resp, err := http.Get(s.base + path)
	require.NoError(s.t, err)
	defer resp.Body.Close()
	var v map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&v)
	return resp.StatusCode, v
}

func event(correlation string, over map[string]any) map[string]any {
	e := map[string]any{
		"version":         "1.0",
		"event_type":      "workflowexecution.step.completed",
		"event_timestamp": time.Now().UTC().Format(time.RFC3339Nano),
		"event_category":  "workflowexecution",
		"event_action":    "completed",
		"event_outcome":   "success",
		"correlation_id":  correlation,
		"event_data":      map[string]any{"step": 1},
	}
	for k, v := range over {
		e[k] = v
	}
	return e
}
