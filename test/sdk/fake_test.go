package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/client"
)

// The tests in this file check the client against canned answers for the
// endpoints that are exercised here without a database. specTransport
// checks both the requests the client builds and the canned answers
// against api/openapi.yaml, so the canned bodies are known to be what the
// server must send.

const (
	rootID  = "0190b6a4-1111-7000-8000-000000000001"
	childID = "0190b6a4-1111-7000-8000-000000000002"
	hashA   = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	hashB   = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

// storedEvent is a contract-valid stored event body (AuditEvent in the API).
func storedEvent(id, parent, ts, prev, hash string, extra string) string {
	parentKeys := `"parent_event_date":null`
	if parent != "" {
		parentKeys = fmt.Sprintf(`"parent_event_id":%q,"parent_event_date":"2026-11-22T00:00:00.000000Z"`, parent)
	}
	return fmt.Sprintf(`{"event_id":%q,"version":"1.0","event_type":"workflowexecution.step.completed",
		"event_timestamp":%q,"event_date":"2026-11-22","event_category":"workflowexecution",
		"event_action":"completed","event_outcome":"success","correlation_id":"rr-1","event_data":{"step":1},
		"actor_type":"service","actor_id":"workflowexecution-service","resource_type":"workflowexecution",
		"resource_id":"rr-1",%s,"severity":"info","retention_days":2555,"is_sensitive":false,
		"event_hash":%q,"previous_event_hash":%q,"hash_algorithm":"sha256","chain_seq":1,
		"legal_hold":false,"legal_hold_placed_at":null,"created_at":"2026-11-22T10:00:01.000000Z"%s}`,
		id, ts, parentKeys, hash, prev, extra)
}

func TestTimeline(t *testing.T) {
	t.Parallel()
	child := storedEvent(childID, rootID, "2026-11-22T10:00:05.000000Z", hashA, hashB, `,"children":[]`)
	root := storedEvent(rootID, "", "2026-11-22T10:00:00.000000Z", "", hashA, `,"children":[`+child+`]`)
	f := newFakeServer(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		if !strings.HasSuffix(r.URL.Path, "/rr-1") {
			writeProblem(w, 404, `{"type":"https://kubernaut.ai/problems/not-found","title":"Not Found","status":404,"detail":"no events","instance":"`+r.URL.Path+`"}`)
			return
		}
		writeJSON(w, 200, `{"correlation_id":"rr-1","events":[`+root+`],"started_at":"2026-11-22T10:00:00.000000Z",
			"ended_at":"2026-11-22T10:00:05.000000Z","duration_ms":5000,"outcome":"success"}`)
	})
	c, tr := newSpecClient(t, f.URL)
	tl, err := c.Timeline(context.Background(), "rr-1")
	require.NoError(t, err)
	assert.Equal(t, "rr-1", tl.CorrelationID)
	assert.EqualValues(t, 5000, tl.DurationMS)
	assert.Equal(t, client.OutcomeSuccess, tl.Outcome)
	require.Len(t, tl.Events, 1)
	assert.Equal(t, uuid.MustParse(rootID), tl.Events[0].ID)
	require.Len(t, tl.Events[0].Children, 1)
	assert.Equal(t, uuid.MustParse(childID), tl.Events[0].Children[0].ID)
	assert.Equal(t, uuid.MustParse(rootID), *tl.Events[0].Children[0].ParentEventID)
	assert.Equal(t, hashB, tl.Events[0].Children[0].Hash)
	assert.Equal(t, json.RawMessage(`{"step":1}`), tl.Events[0].Data)
	assert.Equal(t, 5*time.Second, tl.EndedAt.Sub(tl.StartedAt))
	assert.Equal(t, "application/json", f.last().header.Get("Accept"))

	_, err = c.Timeline(context.Background(), "rr-unknown")
	assert.True(t, errors.Is(err, client.ErrNotFound), "%v", err)
	assert.Equal(t, 2, tr.count())
}

func TestAggregations(t *testing.T) {
	t.Parallel()
	f := newFakeServer(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/success-rate"):
			writeJSON(w, 200, `{"total":40,"successes":30,"failures":10,"success_rate":0.75,"confidence":"medium","min_samples_met":true}`)
		case strings.HasSuffix(r.URL.Path, "/by-namespace"):
			writeJSON(w, 200, `{"aggregations":[{"namespace":"prod","remediations":7,"events":90},{"namespace":"dev","remediations":2,"events":9}]}`)
		case strings.HasSuffix(r.URL.Path, "/by-severity"):
			writeJSON(w, 200, `{"aggregations":[{"severity":"critical","count":3},{"severity":"info","count":40}]}`)
		case strings.HasSuffix(r.URL.Path, "/trend"):
			writeJSON(w, 200, `{"period":"7d","interval":"day","data_points":[{"bucket":"2026-11-21T00:00:00.000000Z","count":5,"failures":1},{"bucket":"2026-11-22T00:00:00.000000Z","count":0,"failures":0}]}`)
		case strings.HasSuffix(r.URL.Path, "/counts"):
			writeJSON(w, 200, `{"groups":[{"event_category":"gateway","namespace":"prod","count":12},{"event_category":"workflow","namespace":null,"count":3}]}`)
		default:
			writeProblem(w, 400, `{"type":"https://kubernaut.ai/problems/validation-error","title":"Validation Error","status":400,"field_errors":{"name":"unknown"}}`)
		}
	})
	c, _ := newSpecClient(t, f.URL)
	ctx := context.Background()
	w := client.Window{Since: "30d", Until: "2026-11-22"}

	sr, err := c.SuccessRate(ctx, client.SuccessRateQuery{Window: w, WorkflowID: "wf-7", MinSamples: 20})
	require.NoError(t, err)
	assert.Equal(t, 0.75, sr.SuccessRate)
	assert.Equal(t, "medium", sr.Confidence)
	assert.True(t, sr.MinSamplesMet)
	q := queryOf(t, f.last())
	assert.Equal(t, url.Values{"since": {"30d"}, "until": {"2026-11-22"}, "workflow_id": {"wf-7"}, "min_samples": {"20"}}, q)

	_, err = c.SuccessRate(ctx, client.SuccessRateQuery{Category: client.CategoryGateway})
	require.NoError(t, err)
	assert.Equal(t, url.Values{"event_category": {"gateway"}}, queryOf(t, f.last()))
	_, err = c.SuccessRate(ctx, client.SuccessRateQuery{Type: "a.b"})
	require.NoError(t, err)
	assert.Equal(t, url.Values{"event_type": {"a.b"}}, queryOf(t, f.last()))

	ns, err := c.ByNamespace(ctx, w)
	require.NoError(t, err)
	assert.Equal(t, []client.NamespaceCount{{Namespace: "prod", Remediations: 7, Events: 90}, {Namespace: "dev", Remediations: 2, Events: 9}}, ns)

	sev, err := c.BySeverity(ctx, client.Window{})
	require.NoError(t, err)
	assert.Equal(t, []client.SeverityCount{{Severity: "critical", Count: 3}, {Severity: "info", Count: 40}}, sev)
	assert.Empty(t, f.last().rawQuery)

	tr, err := c.Trend(ctx, client.TrendQuery{Period: "7d", Interval: "day", Until: "2026-11-22T12:00:00Z"})
	require.NoError(t, err)
	require.Len(t, tr.DataPoints, 2)
	assert.EqualValues(t, 5, tr.DataPoints[0].Count)
	assert.Equal(t, time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC), tr.DataPoints[1].Bucket)
	assert.Equal(t, url.Values{"period": {"7d"}, "interval": {"day"}, "until": {"2026-11-22T12:00:00Z"}}, queryOf(t, f.last()))

	groups, err := c.Counts(ctx, client.CountsQuery{GroupBy: []string{"event_category", "namespace"}})
	require.NoError(t, err)
	assert.Equal(t, []client.CountGroup{
		{Keys: map[string]string{"event_category": "gateway", "namespace": "prod"}, Count: 12},
		{Keys: map[string]string{"event_category": "workflow", "namespace": ""}, Count: 3},
	}, groups)
	assert.Equal(t, url.Values{"group_by": {"event_category,namespace"}}, queryOf(t, f.last()))

	_, err = c.Counts(ctx, client.CountsQuery{})
	assert.Error(t, err, "group_by is required")
}

func queryOf(t *testing.T, r recorded) url.Values {
	t.Helper()
	v, err := url.ParseQuery(r.rawQuery)
	require.NoError(t, err)
	return v
}

func TestVerifyChain(t *testing.T) {
	t.Parallel()
	f := newFakeServer(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		var in map[string]string
		_ = json.Unmarshal(body, &in)
		switch in["correlation_id"] {
		case "":
			writeProblem(w, 400, `{"type":"https://kubernaut.ai/problems/missing-correlation-id","title":"Missing Correlation ID","status":400}`)
		case "rr-tampered":
			writeJSON(w, 200, `{"correlation_id":"rr-tampered","is_valid":false,"total_events":2,"verified_events":1,
				"tampered_events":[{"event_id":"`+childID+`","event_timestamp":"2026-11-22T10:00:05.000000Z",
				"expected_hash":"`+hashA+`","actual_hash":"`+hashB+`","previous_hash":"","message":"hash mismatch"}],
				"verification_time":"2026-11-22T11:00:00.000000Z","message":"chain broken at event 2"}`)
		default:
			writeJSON(w, 200, `{"correlation_id":"rr-1","is_valid":true,"total_events":2,"verified_events":2,"tampered_events":[],
				"verification_time":"2026-11-22T11:00:00.000000Z","message":"chain intact"}`)
		}
	})
	c, _ := newSpecClient(t, f.URL)
	ctx := context.Background()
	v, err := c.VerifyChain(ctx, "rr-1")
	require.NoError(t, err)
	assert.True(t, v.IsValid)
	assert.Empty(t, v.TamperedEvents)
	assert.JSONEq(t, `{"correlation_id":"rr-1"}`, string(f.last().body))

	v, err = c.VerifyChain(ctx, "rr-tampered")
	require.NoError(t, err, "tampering is a result, not an error")
	assert.False(t, v.IsValid)
	require.Len(t, v.TamperedEvents, 1)
	assert.Equal(t, hashB, v.TamperedEvents[0].ActualHash)

	_, err = c.VerifyChain(badRequest(ctx), "")
	assert.True(t, errors.Is(err, client.ErrBadRequest))
	assert.False(t, errors.Is(err, client.ErrValidation))
}

func TestLegalHold(t *testing.T) {
	t.Parallel()
	hold := `{"correlation_id":"rr-1","events_affected":4,"placed_by":"auditor@example.com","placed_at":"2026-11-22T11:00:00.000000Z","reason":"litigation"}`
	f := newFakeServer(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		switch {
		case r.Method == "POST":
			writeJSON(w, 200, hold)
		case r.Method == "GET":
			writeJSON(w, 200, `{"holds":[`+hold+`],"total":1}`)
		case r.Method == "DELETE" && strings.HasSuffix(r.URL.Path, "/rr-1"):
			writeJSON(w, 200, `{"correlation_id":"rr-1","events_released":4,"released_by":"auditor@example.com","released_at":"2026-11-22T12:00:00.000000Z"}`)
		default:
			writeProblem(w, 404, `{"type":"https://kubernaut.ai/problems/not-found","title":"Not Found","status":404}`)
		}
	})
	c, _ := newSpecClient(t, f.URL, client.WithToken("s3cret"))
	ctx := context.Background()

	h, err := c.PlaceLegalHold(ctx, "rr-1", "litigation")
	require.NoError(t, err)
	assert.EqualValues(t, 4, h.EventsAffected)
	assert.JSONEq(t, `{"correlation_id":"rr-1","reason":"litigation"}`, string(f.last().body))
	assert.Equal(t, "Bearer s3cret", f.last().header.Get("Authorization"))

	list, err := c.LegalHolds(ctx)
	require.NoError(t, err)
	assert.EqualValues(t, 1, list.Total)
	assert.Equal(t, "litigation", list.Holds[0].Reason)

	rel, err := c.ReleaseLegalHold(ctx, "rr-1", "case closed")
	require.NoError(t, err)
	assert.EqualValues(t, 4, rel.EventsReleased)
	assert.Equal(t, "DELETE", f.last().method)
	assert.JSONEq(t, `{"release_reason":"case closed"}`, string(f.last().body))

	_, err = c.ReleaseLegalHold(ctx, "rr-2", "x")
	assert.True(t, errors.Is(err, client.ErrNotFound))
}

func TestExport(t *testing.T) {
	t.Parallel()
	ev := storedEvent(rootID, "", "2026-11-22T10:00:00.000000Z", "", hashA, "")
	meta := `{"export_timestamp":"2026-11-22T11:00:00.000000Z","export_format":"%s","total_events":1,"signature":"c2lnbmF0dXJl",
		"signature_algorithm":"ed25519","exported_by":"auditor","query_filters":{"correlation_id":"rr-1"}}`
	verification := `{"total_events_verified":1,"valid_chain_events":1,"broken_chain_events":0,"chain_integrity_percentage":100,
		"verification_timestamp":"2026-11-22T11:00:00.000000Z","tampered_event_ids":[]}`
	jsonBody := `{"export_metadata":` + fmt.Sprintf(meta, "json") + `,"events":[` + ev + `],"hash_chain_verification":` + verification + `}`
	compact := func(s string) string {
		var b bytes.Buffer
		require.NoError(t, json.Compact(&b, []byte(s)))
		return b.String()
	}
	ndjson := compact(`{"export_metadata":`+fmt.Sprintf(meta, "ndjson")+`}`) + "\n" + compact(ev) + "\n" +
		compact(`{"hash_chain_verification":`+verification+`}`) + "\n"
	f := newFakeServer(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		if r.URL.Query().Get("format") == "ndjson" {
			w.Header().Set("Content-Type", "application/x-ndjson")
			_, _ = w.Write([]byte(ndjson))
			return
		}
		writeJSON(w, 200, jsonBody)
	})
	c, _ := newSpecClient(t, f.URL)
	ctx := context.Background()
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	ex, err := c.Export(ctx, client.ExportQuery{StartTime: start, EndTime: start.AddDate(0, 1, 0), CorrelationID: "rr-1",
		Category: client.CategoryWorkflowExecution, Limit: 100, Offset: 10})
	require.NoError(t, err)
	assert.Equal(t, "c2lnbmF0dXJl", ex.Metadata.Signature)
	assert.EqualValues(t, 1, ex.Metadata.TotalEvents)
	require.Len(t, ex.Events, 1)
	assert.Equal(t, float64(100), ex.HashChainVerification.ChainIntegrityPercentage)
	assert.Equal(t, jsonBody, string(ex.Raw), "the raw bytes are kept for offline verification")
	assert.Equal(t, url.Values{"start_time": {"2026-11-01T00:00:00Z"}, "end_time": {"2026-12-01T00:00:00Z"},
		"correlation_id": {"rr-1"}, "event_category": {"workflowexecution"}, "format": {"json"}, "limit": {"100"}, "offset": {"10"}},
		queryOf(t, f.last()))

	var out bytes.Buffer
	n, err := c.ExportTo(ctx, client.ExportQuery{Format: "ndjson"}, &out)
	require.NoError(t, err)
	assert.EqualValues(t, len(ndjson), n)
	assert.Equal(t, ndjson, out.String())
	assert.Equal(t, "application/x-ndjson", f.last().header.Get("Accept"))
}

func TestQueuedWritesAnswer202(t *testing.T) {
	t.Parallel()
	f := newFakeServer(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		if strings.HasSuffix(r.URL.Path, "/notifications") {
			writeJSON(w, 202, `{"status":"accepted","message":"notification audit queued for async processing"}`)
			return
		}
		writeJSON(w, 202, `{"status":"accepted","message":"audit event queued for async processing"}`)
	})
	c, _ := newSpecClient(t, f.URL)
	ev := newEvent("rr-q")
	ev.ID = client.NewEventID()
	res, err := c.WriteEvent(context.Background(), ev)
	require.NoError(t, err)
	assert.True(t, res.Queued)
	assert.Equal(t, ev.ID, res.ID, "the id is known even when queued")

	nr, err := c.WriteNotification(context.Background(), client.Notification{RemediationID: "r", NotificationID: "n",
		Recipient: "x", Channel: client.ChannelEmail, MessageSummary: "m", Status: client.NotificationPending})
	require.NoError(t, err)
	assert.True(t, nr.Queued)
	assert.Nil(t, nr.Record)
}

func TestNotReadyIsAnAnswerNotAnError(t *testing.T) {
	t.Parallel()
	f := newFakeServer(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		writeJSON(w, 503, `{"status":"not_ready","reason":"shutting_down"}`)
	})
	c, _ := newSpecClient(t, f.URL)
	r, err := c.Ready(context.Background())
	require.NoError(t, err)
	assert.False(t, r.Ready)
	assert.Equal(t, "shutting_down", r.Reason)
}
