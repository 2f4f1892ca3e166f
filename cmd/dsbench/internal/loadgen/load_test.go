package loadgen

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func TestResultFigures(t *testing.T) {
	r := Result{Events: 5000, Elapsed: 2 * time.Second, Errors: map[int]int64{0: 2, 503: 3}}
	for i := 1; i <= 101; i++ {
		r.Latencies = append(r.Latencies, ms(i)) // sorted, as Run leaves them
	}
	assert.Equal(t, 2500.0, r.EventsPerSec())
	assert.Equal(t, int64(5), r.ErrorCount())
	assert.Equal(t, ms(1), r.Percentile(0))
	assert.Equal(t, ms(51), r.Percentile(.5))
	assert.Equal(t, ms(100), r.Percentile(.99))
	assert.Equal(t, ms(101), r.Percentile(1))
	assert.Equal(t, ms(101), r.Max())

	var none Result
	assert.Zero(t, none.EventsPerSec(), "no window: no division by zero")
	assert.Zero(t, none.Percentile(.99))
	assert.Zero(t, none.Max())
	assert.Zero(t, none.ErrorCount())
}

func TestGeneratorMakesEventsTheAPIAccepts(t *testing.T) {
	g := NewGenerator(1, 10, time.Now(), SpreadRemediation)
	bodies := make([][]byte, 200)
	corrs := map[string]bool{}
	for i := range bodies {
		bodies[i] = g.Body()
	}
	events, err := DecodeEvents(bodies)
	require.NoError(t, err)
	require.Len(t, events, len(bodies))
	for _, e := range events {
		corrs[e.CorrelationID] = true
	}
	assert.Len(t, corrs, 10, "the events spread over the generator's correlations")

	var batch []json.RawMessage
	require.NoError(t, json.Unmarshal(g.BatchBody(7), &batch))
	assert.Len(t, batch, 7)
	_, err = DecodeEvents([][]byte{batch[0], batch[6]})
	require.NoError(t, err)
}

func TestGeneratorIsReproducibleFromItsSeed(t *testing.T) {
	now := time.Now()
	a, b, c := NewGenerator(3, 100, now, SpreadRemediation), NewGenerator(3, 100, now, SpreadRemediation), NewGenerator(4, 100, now, SpreadRemediation)
	assert.Equal(t, a.Body(), b.Body())
	assert.NotEqual(t, a.Body(), c.Body())
}

func TestDecodeEventsRefusesAnInvalidEvent(t *testing.T) {
	_, err := DecodeEvents([][]byte{[]byte(`{"version":"1.0"}`)})
	require.Error(t, err)
}

func TestStampUnchainedGivesFreshIDsAndChainPositions(t *testing.T) {
	g := NewGenerator(1, 10, time.Now(), SpreadRemediation)
	events, err := DecodeEvents([][]byte{g.Body(), g.Body(), g.Body()})
	require.NoError(t, err)
	StampUnchained(events, func(i int) int64 { return int64(10 + i) })
	first := events[0].ID
	for i, e := range events {
		assert.Equal(t, int64(10+i), e.ChainSeq)
		assert.Len(t, e.Hash, 64)
		assert.Nil(t, e.PreviousHash)
		assert.Equal(t, "sha256", e.HashAlgorithm)
	}
	assert.NotEqual(t, events[0].ID, events[1].ID)
	StampUnchained(events, func(i int) int64 { return 1 })
	assert.NotEqual(t, first, events[0].ID, "every stamp is a new row")
}

func TestWithParentAddsTheParentToABody(t *testing.T) {
	body := NewGenerator(1, 1, time.Now(), SpreadRemediation).Body()
	out := withParent(nil, body, "0190f5d6-0000-7000-8000-000000000001")
	var m map[string]any
	require.NoError(t, json.Unmarshal(out, &m))
	assert.Equal(t, "0190f5d6-0000-7000-8000-000000000001", m["parent_event_id"])
	_, err := DecodeEvents([][]byte{out})
	require.NoError(t, err)
}

func TestEventIDPicksTheIDOutOfAnAnswer(t *testing.T) {
	id := "0190f5d6-0000-7000-8000-000000000001"
	assert.Equal(t, id, eventID([]byte(`{"event_id":"`+id+`","status":"created"}`)))
	assert.Empty(t, eventID([]byte(`{"status":"created"}`)))
	assert.Empty(t, eventID([]byte(`{"event_id":"0190f5d6`)), "cut short")
}

func TestReadAllReadsAcrossShortReadsAndReusesTheBuffer(t *testing.T) {
	src := strings.Repeat("abcdefgh", 1000)
	buf := make([]byte, 0, 16)
	got, err := readAll(buf, iotest.OneByteReader(strings.NewReader(src)))
	require.NoError(t, err)
	assert.Equal(t, src, string(got))

	got, err = readAll(got[:0], iotest.DataErrReader(strings.NewReader("xy")))
	require.NoError(t, err)
	assert.Equal(t, "xy", string(got))

	_, err = readAll(nil, iotest.ErrReader(io.ErrUnexpectedEOF))
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)
}

// The load runs against a real HTTP server on 127.0.0.1 that answers 201 to
// most requests and 503 to every fifth: what the window counts is what the
// server answered, by status. No assertion is on time.
func TestRunCountsAnsweredEventsAndErrorsByStatus(t *testing.T) {
	var n, batchPaths atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if strings.HasSuffix(r.URL.Path, "/batch") {
			batchPaths.Add(1)
		}
		if n.Add(1)%5 == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"title":"busy"}`))
			return
		}
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"event_id":"0190f5d6-0000-7000-8000-000000000001"}`))
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	var phases []string
	g := NewGenerator(1, 10, time.Now(), SpreadRemediation)
	bodies := [][]byte{g.BatchBody(3), g.BatchBody(3)}
	res := Run(context.Background(), addr, Spec{Name: "t", Batch: 3, Concurrency: 2, Duration: 300 * time.Millisecond},
		bodies, func(phase string) { phases = append(phases, phase) })

	assert.Equal(t, []string{"start", "end"}, phases)
	require.Positive(t, res.Requests)
	assert.Equal(t, 3*res.Requests, res.Events, "a batch request carries Batch events")
	assert.Equal(t, res.Requests, int64(len(res.Latencies)))
	assert.Equal(t, map[int]int64{503: res.ErrorCount()}, res.Errors)
	assert.Contains(t, res.FirstErr, "status 503")
	assert.Equal(t, batchPaths.Load(), n.Load(), "batches go to /events/batch")
	for i := 1; i < len(res.Latencies); i++ {
		require.LessOrEqual(t, res.Latencies[i-1], res.Latencies[i], "latencies come back sorted")
	}
}

// A spooled write is answered 202: it counts as answered only in a Queued
// scenario, and is an error status otherwise.
func TestRunCountsAcceptedOnlyWhenQueued(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte(`{"event_id":"0190f5d6-0000-7000-8000-000000000001","status":"queued"}`))
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	body := [][]byte{NewGenerator(1, 10, time.Now(), SpreadRemediation).Body()}
	spec := Spec{Name: "t", Batch: 1, Concurrency: 1, Duration: 100 * time.Millisecond}

	plain := Run(context.Background(), addr, spec, body, nil)
	assert.Zero(t, plain.Requests)
	assert.Positive(t, plain.Errors[http.StatusAccepted])

	spec.Queued = true
	queued := Run(context.Background(), addr, spec, body, nil)
	assert.Positive(t, queued.Requests)
	assert.Zero(t, queued.ErrorCount())
}

func TestRunRefusesAnAddressOffLoopback(t *testing.T) {
	res := Run(context.Background(), "10.0.0.1:80", Spec{Batch: 1, Concurrency: 1, Duration: 50 * time.Millisecond},
		[][]byte{[]byte(`{}`)}, nil)
	assert.Zero(t, res.Requests)
	assert.Contains(t, res.FirstErr, "127.0.0.1 only")
}

func TestSpreadsKeepOrScatterACorrelationsNamespaceAndTime(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 30, 0, time.UTC)
	type where struct{ ns, cluster string }
	seen := func(spread Spread) (map[string]map[where]bool, time.Duration) {
		g := NewGenerator(5, 20, now, spread)
		cells := map[string]map[where]bool{}
		var oldest time.Duration
		for range 2000 {
			var e requestJSON
			require.NoError(t, json.Unmarshal(g.Body(), &e))
			if cells[e.CorrelationID] == nil {
				cells[e.CorrelationID] = map[where]bool{}
			}
			cells[e.CorrelationID][where{e.Namespace, e.ClusterID}] = true
			ts, err := time.Parse(time.RFC3339Nano, e.EventTimestamp)
			require.NoError(t, err)
			require.False(t, ts.After(now))
			oldest = max(oldest, now.Sub(ts))
		}
		return cells, oldest
	}
	cells, oldest := seen(SpreadRemediation)
	require.Len(t, cells, 20)
	namespaces := map[string]bool{}
	for corr, c := range cells {
		require.Len(t, c, 1, "correlation %s", corr)
		for w := range c {
			namespaces[w.ns] = true
		}
	}
	assert.Greater(t, len(namespaces), 4, "correlations still spread over the namespaces")
	assert.Less(t, oldest, 2*time.Second)

	cells, oldest = seen(SpreadScattered)
	for corr, c := range cells {
		assert.Greater(t, len(c), 10, "correlation %s", corr)
	}
	assert.Greater(t, oldest, 30*time.Minute)

	for _, s := range []Spread{SpreadRemediation, SpreadScattered} {
		got, err := ParseSpread(s.String())
		require.NoError(t, err)
		assert.Equal(t, s, got)
	}
	_, err := ParseSpread("random")
	require.Error(t, err)
}
