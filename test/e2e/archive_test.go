package e2e

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/store"
	"kubernaut.ai/datastorage/internal/store/storetest"
)

// TestArchivedCorrelationThroughTheAPI: `serve` with an archive target
// places a legal hold on a correlation whose events are all archived,
// lists it with its archived events, shows the hold on the timeline, and
// exports the archived events; releasing the hold counts them too. The
// month is archived by the binary (`archive run`) before serve starts.
func TestArchivedCorrelationThroughTheAPI(t *testing.T) {
	const hmacKey = "e2e-archive-key"
	hasher := audit.NewHasher([]byte(hmacKey))
	st, dbURL := storetest.New(t, store.Options{MaxConns: 4, Hasher: hasher}, 1)
	ctx := context.Background()
	y, m, _ := time.Now().UTC().AddDate(0, -5, 0).Date()
	month := time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
	_, err := st.EnsurePartitions(ctx, month, 6)
	require.NoError(t, err)
	corr := "rr-archived-" + uuid.NewString()[:8]
	var events []*audit.Event
	for i := range 5 {
		ts := month.AddDate(0, 0, 3).Add(time.Duration(i) * time.Minute)
		events = append(events, &audit.Event{ID: uuid.New(), Version: "1.0", Type: "workflowexecution.step.completed",
			Category: "workflowexecution", Action: "completed", Outcome: "success", CorrelationID: corr,
			Timestamp: audit.NewTime(ts), Date: audit.DateOf(ts), Data: json.RawMessage(fmt.Sprintf(`{"step":%d}`, i)),
			ActorType: "service", ActorID: "e2e", ResourceType: "workflowexecution", ResourceID: corr,
			Severity: "info", RetentionDays: 2555})
	}
	_, err = st.InsertEvents(ctx, events)
	require.NoError(t, err)

	dir := t.TempDir()
	signing, hmacFile, root := filepath.Join(dir, "signing.key"), filepath.Join(dir, "hmac.key"), filepath.Join(dir, "archive")
	require.NoError(t, os.WriteFile(signing, []byte(hex.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))), 0o600))
	require.NoError(t, os.WriteFile(hmacFile, []byte(hmacKey), 0o600))
	require.NoError(t, os.MkdirAll(root, 0o700))
	env := []string{"DATASTORAGE_DATABASE_URL=" + dbURL, "DATASTORAGE_ARCHIVE_TARGET=file://" + root,
		"DATASTORAGE_INTEGRITY_SIGNING_KEY_FILE=" + signing, "DATASTORAGE_INTEGRITY_HMAC_KEY_FILE=" + hmacFile}
	code, out := run(t, env, "archive", "run", "--month", month.Format("2006-01"))
	require.Equal(t, 0, code, out)
	n, err := st.CorrelationEvents(ctx, corr, 100)
	require.NoError(t, err)
	require.Empty(t, n, "the correlation is only in the archive")

	s := start(t, env...)
	status, body, err := s.post("/api/v1/audit/legal-hold", map[string]any{"correlation_id": corr, "reason": "litigation"})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status, "%v", body)
	assert.EqualValues(t, 5, body["events_affected"])

	status, body = s.get("/api/v1/audit/legal-hold")
	require.Equal(t, http.StatusOK, status)
	holds, _ := body["holds"].([]any)
	require.Len(t, holds, 1)
	assert.EqualValues(t, 5, holds[0].(map[string]any)["events_affected"])

	status, body = s.get("/api/v1/audit/events?correlation_id=" + url.QueryEscape(corr))
	require.Equal(t, http.StatusOK, status, "%v", body)
	data, _ := body["data"].([]any)
	require.Len(t, data, 5)
	for _, e := range data {
		assert.Equal(t, true, e.(map[string]any)["legal_hold"], "an archived event shows its correlation's hold")
	}

	resp, err := http.Get(s.base + "/api/v1/audit/export?correlation_id=" + url.QueryEscape(corr) + "&start_time=" +
		url.QueryEscape(month.Format(time.RFC3339)))
	require.NoError(t, err)
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", raw)
	var x struct {
		Events []map[string]any `json:"events"`
		Chain  struct {
			Broken int64 `json:"broken_chain_events"`
		} `json:"hash_chain_verification"`
	}
	require.NoError(t, json.Unmarshal(raw, &x))
	assert.Len(t, x.Events, 5, "the export includes the archived events")
	assert.Zero(t, x.Chain.Broken)

	req, err := http.NewRequest(http.MethodDelete, s.base+"/api/v1/audit/legal-hold/"+url.PathEscape(corr),
		strings.NewReader(`{"release_reason":"settled"}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	var rel map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&rel))
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "%v", rel)
	assert.EqualValues(t, 5, rel["events_released"])
}
