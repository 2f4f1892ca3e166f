package fault

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// procStatusKB reads a field of /proc/PID/status in kB (VmRSS, VmHWM).
func procStatusKB(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			require.NoError(t, err)
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// A platform client flushing its whole buffer sends 10,000 events in one
// batch (issue 18, item 4): the default limits take it, it is stored whole,
// and the server's memory for it is measured (logged, not asserted).
func TestATenThousandEventBatchIsStoredWhole(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	srv := s.startServer("ds", "DATASTORAGE_SERVER_REQUESTTIMEOUT=120s", "DATASTORAGE_SERVER_WRITETIMEOUT=120s",
		"DATASTORAGE_SERVER_READTIMEOUT=120s")
	pid := srv.cmd.Process.Pid
	padding := strings.Repeat("x", 1350) // ~1.5 KB per event with the rest
	batch := make([]map[string]any, 10_000)
	ids := make([]uuid.UUID, len(batch))
	for i := range batch {
		ids[i] = uuid.New()
		e := eventBody(ids[i], fmt.Sprintf("big-batch-%d", i%250), i)
		e["event_data"] = map[string]any{"n": i, "pod": fmt.Sprintf("worker-%d", i), "log": padding}
		batch[i] = e
	}
	rssBefore := procStatusKB(t, pid, "VmRSS")
	start := time.Now()
	a := srv.send("POST", "/api/v1/audit/events/batch", batch)
	took := time.Since(start)
	require.Equal(t, http.StatusCreated, a.status, "%.300s", a.body)
	peak := procStatusKB(t, pid, "VmHWM")
	rssAfter := procStatusKB(t, pid, "VmRSS")
	waitFor(t, 60*time.Second, "the batch stored (or replayed from the spool)", func() bool {
		return s.xlen(eventsStream) == 0 && s.pending(eventsStream) == 0
	})
	got := s.stored()
	for _, id := range ids {
		require.Equal(t, 1, got[id], "event %s stored exactly once", id)
	}
	assert.Len(t, got, len(ids))
	body, err := json.Marshal(batch)
	require.NoError(t, err)
	committed, _ := srv.metric(`datastorage_ingest_events_total{result="committed"}`)
	queued, _ := srv.metric(`datastorage_ingest_events_total{result="queued"}`)
	t.Logf("FIGURES 10,000-event batch (%.1f MB body, %d bytes per event): answered %d in %s (committed %.0f, spooled %.0f); "+
		"server RSS %d MB before, peak (VmHWM) %d MB, %d MB after",
		float64(len(body))/(1<<20), len(body)/len(batch), a.status, took.Round(time.Millisecond), committed, queued,
		rssBefore>>10, peak>>10, rssAfter>>10)
}
