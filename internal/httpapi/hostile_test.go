package httpapi_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/query"
)

// The probe of issue 18 item 6: 300 events whose event_data is 8 bytes of
// JSON per number and 131,072 digits per number once stored.
func TestNumbersThatExpandAreRefusedAndNothingIsStored(t *testing.T) {
	t.Parallel()
	b := setup(t)
	data := `{"a":[` + strings.TrimSuffix(strings.Repeat(`1e131071,`, 7), ",") + `]}`
	var body strings.Builder
	body.WriteString("[")
	for i := range 300 {
		if i > 0 {
			body.WriteString(",")
		}
		fmt.Fprintf(&body, `{"version":"1.0","event_type":"gateway.signal.received","event_timestamp":%q,
			"event_category":"gateway","event_action":"received","event_outcome":"success",
			"correlation_id":"rr-expand","event_data":%s}`, event(nil)["event_timestamp"], data)
	}
	body.WriteString("]")
	require.Less(t, body.Len(), 128<<10, "the hostile batch is small on the wire")

	r := b.do("POST", "/api/v1/audit/events/batch", body.String())
	require.Equal(t, 400, r.status, "%s", r.body[:min(len(r.body), 500)])
	fe := r.fields(t)
	assert.Len(t, fe, 300, "every element is named")
	assert.Equal(t, "must be at most 262144 bytes in stored form (numbers written out in full, keys sorted, strings escaped), got 917518",
		fe["[299].event_data"])
	var n int
	require.NoError(t, b.store.Pool().QueryRow(context.Background(),
		`SELECT count(*) FROM audit_events WHERE correlation_id = 'rr-expand'`).Scan(&n))
	assert.Zero(t, n, "nothing of the refused batch was stored")

	// One such number (131 KB stored) is within the bound and stored as
	// written out.
	one := b.do("POST", "/api/v1/audit/events", fmt.Sprintf(`{"version":"1.0","event_type":"gateway.signal.received",
		"event_timestamp":%q,"event_category":"gateway","event_action":"received","event_outcome":"success",
		"correlation_id":"rr-expand","event_data":{"a":[1e131071]}}`, event(nil)["event_timestamp"]))
	require.Equal(t, 201, one.status, "%s", one.body)
	var stored int
	require.NoError(t, b.store.Pool().QueryRow(context.Background(),
		`SELECT octet_length(event_data::text) FROM audit_events WHERE correlation_id = 'rr-expand'`).Scan(&stored))
	assert.LessOrEqual(t, stored, audit.MaxDataBytes)
}

// heapPeak samples the Go heap in use until stop is closed and returns the
// highest sample. Sampling, not timing: the test asserts on the bytes seen.
func heapPeak(stop <-chan struct{}) func() uint64 {
	var peak atomic.Uint64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			select {
			case <-stop:
				return
			default:
				runtime.Gosched()
			}
		}
	}()
	return func() uint64 { wg.Wait(); return peak.Load() }
}

// Not parallel: the heap it samples is the whole test process's, so no
// other test may run meanwhile.
func TestALargeListIsStreamedNotHeldInMemory(t *testing.T) {
	b := setup(t)
	// 100 events of 200 KiB: a 20 MB page. Written straight to the store,
	// 10 at a time: the write path's commit timeout is not what this tests,
	// and a loaded machine can exceed it with megabytes per commit.
	const n, size = 100, 200 << 10
	pad := strings.Repeat("x", size)
	v := &audit.Validator{MaxAge: 7 * 24 * time.Hour, MaxSkew: time.Hour, DefaultRetentionDays: 2555}
	for range n / 10 {
		var evs []*audit.Event
		for range 10 {
			body, err := json.Marshal(event(map[string]any{"correlation_id": "rr-large", "event_data": map[string]any{"pad": pad}}))
			require.NoError(t, err)
			ev, fe, err := v.DecodeOne(body)
			require.NoError(t, err)
			require.Empty(t, fe)
			evs = append(evs, ev)
		}
		_, err := b.store.InsertEvents(context.Background(), evs)
		require.NoError(t, err)
	}

	// Collect eagerly while measuring, so the samples show what is held,
	// not garbage waiting for the next cycle.
	defer debug.SetGCPercent(debug.SetGCPercent(5))
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	stop := make(chan struct{})
	peak := heapPeak(stop)
	// Read the body as it comes, without keeping it: what is held is the
	// server's.
	resp, err := b.srv.Client().Get(b.srv.URL + "/api/v1/audit/events?correlation_id=rr-large&limit=100")
	require.NoError(t, err)
	h := sha256.New()
	got, err := io.Copy(h, resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	close(stop)
	grew := int64(peak()) - int64(before.HeapInuse)

	require.Equal(t, 200, resp.StatusCode)
	require.Greater(t, got, int64(n*size), "the whole page came back")
	t.Logf("list of %d bytes: peak heap in use %d bytes above the baseline", got, grew)
	assert.Less(t, grew, got/2, "the server held far less than the response (streamed), not the page and its encoding")

	// The same response, checked whole against the contract.
	r := b.do("GET", "/api/v1/audit/events?correlation_id=rr-large&limit=100", nil)
	require.Equal(t, 200, r.status)
	assert.Len(t, r.json(t)["data"], n)
}

// A streamed timeline is byte for byte the timeline built whole, across
// several chunks of events and nested children.
func TestAStreamedTimelineIsTheTimelineBuiltWhole(t *testing.T) {
	t.Parallel()
	b := setup(t)
	base := time.Now().UTC().Add(-time.Hour)
	var batch []any
	ids := make([]string, 80)
	for i := range ids {
		ids[i] = uuid.NewString()
		ev := event(map[string]any{"event_id": ids[i], "correlation_id": "rr-tree",
			"event_timestamp": base.Add(time.Duration(i) * time.Second).Format(time.RFC3339Nano),
			"event_data":      map[string]any{"i": i, "note": "<b>&</b>"}})
		if i%3 != 0 {
			ev["parent_event_id"] = ids[i/3*3] // chains of three under every third
		}
		if i%7 == 0 && i > 0 {
			ev["parent_event_id"] = ids[i-7]
		}
		batch = append(batch, ev)
	}
	r := b.do("POST", "/api/v1/audit/events/batch", batch)
	require.Equal(t, 201, r.status, "%s", r.body)

	got := b.do("GET", "/api/v1/audit/timeline/rr-tree", nil)
	require.Equal(t, 200, got.status, "%s", got.body)
	whole, err := query.NewTimelines(b.store).Get(context.Background(), "rr-tree")
	require.NoError(t, err)
	want, err := json.Marshal(whole)
	require.NoError(t, err)
	assert.Equal(t, string(want)+"\n", string(got.body))
	assert.EqualValues(t, 80, got.json(t)["event_count"])
}
