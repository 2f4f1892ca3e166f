package httpapi_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/apitest"
	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/httpapi"
	"kubernaut.ai/datastorage/internal/ingest"
	"kubernaut.ai/datastorage/internal/integrity"
	"kubernaut.ai/datastorage/internal/query"
	"kubernaut.ai/datastorage/internal/store"
	"kubernaut.ai/datastorage/internal/store/storetest"
)

// logBuffer collects a server's log lines for the tests that check what
// hostile input makes the server log.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// setupHostile is a server with every route (integrity included) whose log
// is kept, so a test can check that hostile input logs no error.
func setupHostile(t *testing.T) (*bundle, *logBuffer) {
	t.Helper()
	return setupHostileServer(t, 0)
}

// setupHostileServer is setupHostile with the server's read timeout; like
// the real server (cmd/datastorage), it watches connections for requests
// framed twice (httpapi.GuardListener).
func setupHostileServer(t *testing.T, readTimeout time.Duration) (*bundle, *logBuffer) {
	t.Helper()
	st, _ := storetest.New(t, store.Options{MaxConns: 8}, 1)
	signer, err := integrity.GenerateSigner()
	require.NoError(t, err)
	logs := &logBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	pipe := ingest.New(st, nil, ingest.Options{Writers: 2, MaxBatch: 500}, nil, log)
	require.NoError(t, pipe.Start(context.Background()))
	t.Cleanup(func() { _ = pipe.Stop(context.Background()) })
	srv := httptest.NewUnstartedServer(httpapi.New(httpapi.Config{
		Validator:      &audit.Validator{MaxAge: 7 * 24 * time.Hour, MaxSkew: time.Hour, DefaultRetentionDays: 2555},
		Ingest:         pipe,
		Reader:         query.New(st),
		Timelines:      query.NewTimelines(st),
		Aggregator:     query.NewAggregator(st),
		Notifications:  st,
		Health:         &fakeHealth{db: true},
		Log:            log,
		MaxBatchSize:   5000,
		MaxBodySize:    1 << 20,
		RequestTimeout: 10 * time.Second,
		Integrity:      integrity.NewService(st, audit.Hasher{}, signer),
	}))
	srv.Listener = httpapi.GuardListener(srv.Listener)
	srv.Config.ConnContext = httpapi.ConnContext
	srv.Config.ReadTimeout = readTimeout
	srv.Start()
	t.Cleanup(srv.Close)
	return &bundle{t: t, srv: srv, store: st, spec: apitest.NewValidator(t)}, logs
}

// requireRefused checks that r is a 400 validation problem naming field.
func requireRefused(t *testing.T, r response, field, what string) {
	t.Helper()
	require.Equal(t, 400, r.status, "%s: %s", what, r.body)
	p := r.json(t)
	require.Equal(t, "https://kubernaut.ai/problems/validation-error", p["type"], what)
	require.Contains(t, r.fields(t), field, "%s: %s", what, r.body)
}

// forgedCursor is a cursor this service could have issued, but for a time
// of micros microseconds since the epoch.
func forgedCursor(micros int64) string {
	var b [26]byte
	b[0] = 1
	binary.BigEndian.PutUint64(b[2:10], uint64(micros))
	id := uuid.New()
	copy(b[10:], id[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func TestBadBytesInParametersAre400NamingTheParameter(t *testing.T) {
	t.Parallel()
	b, logs := setupHostile(t)
	b.writeChain("rr-bytes", 1)
	bad := map[string]string{"NUL": "%00", "invalid UTF-8": "%ff", "UTF-8 surrogate": "%ed%a0%80", "NUL inside": "a%00b"}
	for what, v := range bad {
		for _, p := range []string{"correlation_id", "event_type", "event_category", "event_outcome", "severity",
			"namespace", "cluster_id", "actor_id", "resource_type", "resource_id"} {
			r := b.do("GET", "/api/v1/audit/events?"+p+"="+v, nil)
			requireRefused(t, r, p, what+" in list filter "+p)
		}
		r := b.do("GET", "/api/v1/audit/events?detail_key=k&detail_value="+v, nil)
		requireRefused(t, r, "detail_value", what+" in detail_value")
		r = b.do("GET", "/api/v1/audit/events?since="+v, nil)
		requireRefused(t, r, "since", what+" in since")
		for _, agg := range []string{"success-rate", "by-namespace", "by-severity", "trend", "counts"} {
			r = b.do("GET", "/api/v1/audit/aggregations/"+agg+"?namespace="+v+"&until="+v, nil)
			requireRefused(t, r, "until", what+" in aggregation "+agg)
		}
		r = b.do("GET", "/api/v1/audit/export?correlation_id="+v, nil)
		requireRefused(t, r, "correlation_id", what+" in export")
		r = b.do("GET", "/api/v1/audit/legal-hold?x="+v, nil)
		requireRefused(t, r, "x", what+" in legal-hold list")

		r = b.do("GET", "/api/v1/audit/timeline/"+v, nil)
		requireRefused(t, r, "correlation_id", what+" in timeline path")
		r = b.do("DELETE", "/api/v1/audit/legal-hold/"+v, map[string]any{"release_reason": "r"})
		requireRefused(t, r, "correlation_id", what+" in legal-hold path")
		r = b.do("GET", "/api/v1/audit/events/"+v, nil)
		requireRefused(t, r, "event_id", what+" in event path")
	}
	// Times out of range: before PostgreSQL's 4714 BC (these were 500s),
	// and anything outside years 1 to 9999, which no stored event has.
	for _, micros := range []int64{-1 << 63, -210866803200000001, 1<<63 - 1, 253402300800000000, -62135596800000001} {
		for _, order := range []string{"", "&order=asc"} {
			c := forgedCursor(micros)
			if order != "" {
				c = ascCursor(c)
			}
			r := b.do("GET", "/api/v1/audit/events?cursor="+c+order, nil)
			requireRefused(t, r, "cursor", "forged cursor")
		}
	}
	// A forged cursor inside the range is merely a position: 200.
	r := b.do("GET", "/api/v1/audit/events?cursor="+forgedCursor(0), nil)
	require.Equal(t, 200, r.status, "%s", r.body)
	require.NotContains(t, logs.String(), "level=ERROR")
}

func TestBadBytesInBodyStringsAre400NamingTheField(t *testing.T) {
	t.Parallel()
	b, logs := setupHostile(t)
	b.writeChain("rr-body", 1)
	// Raw invalid UTF-8 bytes, an escaped NUL and lone surrogates.
	bad := map[string]string{"invalid UTF-8": "\"a\xffb\"", "NUL": `"a\u0000b"`, "lone high surrogate": `"a\ud800b"`,
		"lone low surrogate": `"\udc00"`, "reversed pair": `"\udc00\ud800"`}
	eventFields := []string{"version", "event_type", "event_category", "event_action", "event_outcome", "correlation_id",
		"actor_type", "actor_id", "resource_type", "resource_id", "namespace", "cluster_id", "severity", "error_code",
		"error_message", "event_timestamp", "event_id", "parent_event_id", "actor_ip"}
	for what, v := range bad {
		for _, f := range eventFields {
			body := strings.Replace(string(mustJSON(t, event(map[string]any{f: "PLACEHOLDER"}))), `"PLACEHOLDER"`, v, 1)
			r := b.do("POST", "/api/v1/audit/events", body)
			requireRefused(t, r, f, what+" in event "+f)
			r = b.do("POST", "/api/v1/audit/events/batch", "["+body+"]")
			requireRefused(t, r, "[0]."+f, what+" in batch event "+f)
		}
		for _, f := range []string{"remediation_id", "notification_id", "recipient", "channel", "message_summary",
			"status", "sent_at", "delivery_status", "error_message"} {
			body := strings.Replace(string(mustJSON(t, notification(map[string]any{f: "PLACEHOLDER"}))), `"PLACEHOLDER"`, v, 1)
			r := b.do("POST", "/api/v1/audit/notifications", body)
			requireRefused(t, r, f, what+" in notification "+f)
		}
		r := b.do("POST", "/api/v1/audit/legal-hold", `{"correlation_id":`+v+`,"reason":"r"}`)
		requireRefused(t, r, "correlation_id", what+" in legal hold correlation_id")
		r = b.do("POST", "/api/v1/audit/legal-hold", `{"correlation_id":"rr-body","reason":`+v+`}`)
		requireRefused(t, r, "reason", what+" in legal hold reason")
		r = b.do("DELETE", "/api/v1/audit/legal-hold/rr-body", `{"release_reason":`+v+`}`)
		requireRefused(t, r, "release_reason", what+" in release_reason")
		r = b.do("POST", "/api/v1/audit/verify-chain", `{"correlation_id":`+v+`}`)
		requireRefused(t, r, "correlation_id", what+" in verify-chain")
	}
	require.Equal(t, 1, b.total(), "nothing was written")
	var holds int
	require.NoError(t, b.store.Pool().QueryRow(context.Background(), "SELECT count(*) FROM audit_events WHERE legal_hold").Scan(&holds))
	require.Zero(t, holds)
	require.NotContains(t, logs.String(), "level=ERROR")
}

func TestDifferentlyCasedAndRepeatedKeysAreNotSilentlyApplied(t *testing.T) {
	t.Parallel()
	b, logs := setupHostile(t)
	id := uuid.NewString()
	body := string(mustJSON(t, event(map[string]any{"correlation_id": "rr-case-A", "event_id": id})))
	r := b.do("POST", "/api/v1/audit/events", body[:len(body)-1]+`,"Correlation_ID":"rr-case-B","EVENT_OUTCOME":"failure"}`)
	require.Equal(t, 201, r.status, "%s", r.body)
	r = b.do("GET", "/api/v1/audit/events/"+id, nil)
	require.Equal(t, 200, r.status)
	assert.Equal(t, "rr-case-A", r.json(t)["correlation_id"], "a differently-cased key is an unknown key, ignored")
	assert.Equal(t, "success", r.json(t)["event_outcome"])

	before := b.total()
	r = b.do("POST", "/api/v1/audit/events", body[:len(body)-1]+`,"correlation_id":"rr-case-B"}`)
	requireRefused(t, r, "correlation_id", "duplicate key")
	assert.Equal(t, "must appear only once in the object", r.fields(t)["correlation_id"])
	r = b.do("POST", "/api/v1/audit/events/batch", "["+body[:len(body)-1]+`,"event_data":{}}]`)
	requireRefused(t, r, "[0].event_data", "duplicate key in a batch")
	n := string(mustJSON(t, notification(nil)))
	r = b.do("POST", "/api/v1/audit/notifications", n[:len(n)-1]+`,"recipient":"mallory@example.com"}`)
	requireRefused(t, r, "recipient", "duplicate notification key")
	b.writeChain("rr-case-hold", 1)
	r = b.do("POST", "/api/v1/audit/legal-hold", `{"correlation_id":"rr-case-hold","reason":"a","reason":"b"}`)
	requireRefused(t, r, "reason", "duplicate legal hold key")
	r = b.do("POST", "/api/v1/audit/legal-hold", `{"Correlation_ID":"rr-case-hold","reason":"a"}`)
	requireRefused(t, r, "correlation_id", "a differently-cased key is not the member")

	for _, ts := range []string{"+24:00", "+23:60", "-24:00"} {
		stamp := time.Now().UTC().Add(-time.Minute).Format("2006-01-02T15:04:05") + ts
		r = b.do("POST", "/api/v1/audit/events", event(map[string]any{"event_timestamp": stamp}))
		requireRefused(t, r, "event_timestamp", "offset "+ts)
		r = b.do("POST", "/api/v1/audit/notifications", notification(map[string]any{"sent_at": stamp}))
		requireRefused(t, r, "sent_at", "offset "+ts)
	}
	assert.Equal(t, before+1, b.total(), "only the chain event was written")
	var holds int
	require.NoError(t, b.store.Pool().QueryRow(context.Background(), "SELECT count(*) FROM audit_events WHERE legal_hold").Scan(&holds))
	require.Zero(t, holds)
	require.NotContains(t, logs.String(), "level=ERROR")
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := jsonMarshal(v)
	require.NoError(t, err)
	return b
}

var _ = assert.Equal

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// ascCursor turns a forged cursor into one for ascending order.
func ascCursor(c string) string {
	raw, _ := base64.RawURLEncoding.DecodeString(c)
	raw[1] = 1
	return base64.RawURLEncoding.EncodeToString(raw)
}
