package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/testenv"
)

// backgroundFrames are functions only serve's background work runs.
var backgroundFrames = []string{
	"ingest.(*Pipeline).writer",
	"lifecycle.(*Loop).Start.func",
	"store.(*parentLookups).round",
	"maintenance.(*PartitionUpkeep).Run",
	"maintenance.(*RetentionJob).Run",
	"spool.(*Worker).Run",
}

// backgroundGoroutines counts the goroutines of the process that run
// serve's background work.
func backgroundGoroutines(t *testing.T) int { return goroutinesIn(t, backgroundFrames...) }

// goroutinesIn counts the goroutines of the process with one of frames on
// their stack.
func goroutinesIn(t *testing.T, frames ...string) int {
	t.Helper()
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, f := range frames {
			if strings.Contains(g, f) {
				count++
				break
			}
		}
	}
	return count
}

// freePort returns a loopback port nobody listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	return port
}

func serveEnv(t *testing.T, port, metricsPort int) []string {
	return []string{
		"DATASTORAGE_DATABASE_URL=" + testenv.NewDatabase(t),
		"DATASTORAGE_REDIS_ADDR=127.0.0.1:" + strconv.Itoa(freePort(t)), // no Redis: the spool is down
		"DATASTORAGE_SERVER_HOST=127.0.0.1",
		"DATASTORAGE_SERVER_PORT=" + strconv.Itoa(port),
		"DATASTORAGE_SERVER_METRICSPORT=" + strconv.Itoa(metricsPort),
		"DATASTORAGE_SERVER_ENDPOINTPROPAGATIONDELAY=0s",
		"DATASTORAGE_RETENTION_ENABLED=true",
		"DATASTORAGE_LOGGING_LEVEL=error",
	}
}

// Issue 18 item 5: serve started the ingest pipeline, then failed to listen,
// and returned with the pipeline's writers still running. Not parallel: it
// counts the process's goroutines.
func TestServeStopsItsBackgroundWorkWhenItFailsToStart(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	env := serveEnv(t, busy.Addr().(*net.TCPAddr).Port, freePort(t))

	before := backgroundGoroutines(t)
	err = cmdServe(context.Background(), nil, env, io.Discard)
	require.ErrorContains(t, err, "listen on server.port")
	assert.LessOrEqual(t, backgroundGoroutines(t), before, "serve returned with background work still running")
}

// Shutdown stops every piece of background work, and waits for it, before
// serve returns. Not parallel: it counts the process's goroutines.
func TestServeWaitsForItsBackgroundWorkOnShutdown(t *testing.T) {
	port := freePort(t)
	env := serveEnv(t, port, freePort(t))
	before := backgroundGoroutines(t)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- cmdServe(ctx, nil, env, io.Discard) }()

	// Wait until it answers: then every background service has started.
	url := "http://127.0.0.1:" + strconv.Itoa(port) + "/healthz"
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			break
		}
		select {
		case err := <-served:
			t.Fatalf("serve stopped before answering: %v", err)
		default:
		}
		require.True(t, time.Now().Before(deadline), "serve never answered: %v", err)
		time.Sleep(20 * time.Millisecond)
	}
	require.Greater(t, backgroundGoroutines(t), before, "the background work runs")
	// ingest.New starts nothing: the writers run because serve started the
	// pipeline in its group (two: ingest.writers' default).
	require.GreaterOrEqual(t, goroutinesIn(t, "ingest.(*Pipeline).writer"), 2, "the pipeline's writers run")

	cancel()
	require.NoError(t, <-served)
	assert.LessOrEqual(t, backgroundGoroutines(t), before, "serve returned with background work still running")
}
