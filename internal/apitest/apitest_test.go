package apitest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// contractEndpoints is CONTRACT.md §1 (without /metrics, which is served on
// the metrics port). TestSpecCoversContract also reads §1 itself when
// shared/CONTRACT.md is reachable, so this copy cannot silently drift.
var contractEndpoints = []string{
	"POST /api/v1/audit/events/batch",
	"POST /api/v1/audit/events",
	"GET /api/v1/audit/events",
	"GET /api/v1/audit/events/{event_id}",
	"GET /api/v1/audit/timeline/{correlation_id}",
	"GET /api/v1/audit/aggregations/{name}",
	"POST /api/v1/audit/verify-chain",
	"POST /api/v1/audit/legal-hold",
	"GET /api/v1/audit/legal-hold",
	"DELETE /api/v1/audit/legal-hold/{correlation_id}",
	"GET /api/v1/audit/export",
	"POST /api/v1/audit/notifications",
	"GET /api/v1/remediation-history/context",
	"GET /api/v1/effectiveness/{correlation_id}",
	"POST /api/v1/workflows",
	"GET /api/v1/workflows",
	"GET /api/v1/workflows/{workflow_id}",
	"PATCH /api/v1/workflows/{workflow_id}",
	"GET /api/v1/workflows/by-name/{workflow_name}/versions",
	"POST /api/v1/workflows/search",
	"POST /api/v1/workflows/discoveries/{discovery_id}/validate",
	"GET /healthz",
	"GET /readyz",
	"GET /health",
	"GET /health/ready",
	"GET /health/live",
}

// specEndpoints lists "METHOD /path" for every operation of the document.
func specEndpoints(doc *openapi3.T) []string {
	var out []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			out = append(out, method+" "+path)
		}
	}
	sort.Strings(out)
	return out
}

func TestSpecIsValidOpenAPI31(t *testing.T) {
	v := NewValidator(t) // fails the test unless the document loads and validates
	if v.doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi = %q, want 3.1.0", v.doc.OpenAPI)
	}
	if !v.doc.IsOpenAPI31OrLater() {
		t.Errorf("the library does not treat the document as OpenAPI 3.1")
	}
	if v.doc.Components.SecuritySchemes["bearerAuth"] == nil {
		t.Errorf("no bearerAuth security scheme")
	}
}

func TestSpecCoversContract(t *testing.T) {
	v := NewValidator(t)
	have := specEndpoints(v.doc)

	want := slices.Clone(contractEndpoints)
	if fromDoc, path, ok := readContractEndpoints(t); ok {
		t.Logf("cross-checked with %s", path)
		for _, e := range fromDoc {
			if !slices.Contains(want, e) {
				t.Errorf("CONTRACT.md §1 lists %q, which contractEndpoints lacks", e)
			}
		}
		for _, e := range want {
			if !slices.Contains(fromDoc, e) {
				t.Errorf("contractEndpoints lists %q, which CONTRACT.md §1 lacks", e)
			}
		}
	} else {
		t.Logf("shared/CONTRACT.md not found; checked against the copy in this test only")
	}

	for _, e := range want {
		if !slices.Contains(have, e) {
			t.Errorf("api/openapi.yaml lacks %s", e)
		}
	}
	for _, e := range have {
		if !slices.Contains(want, e) {
			t.Errorf("api/openapi.yaml has %s, which CONTRACT.md §1 does not list", e)
		}
	}
	if v.doc.Paths.Value("/metrics") != nil {
		t.Errorf("/metrics is served on the metrics port, not on the API server")
	}
}

// readContractEndpoints parses the endpoint table of CONTRACT.md §1, looked
// for in a shared/ folder beside any ancestor of the working directory.
func readContractEndpoints(t *testing.T) ([]string, string, bool) {
	dir, err := os.Getwd()
	if err != nil {
		return nil, "", false
	}
	var data []byte
	var path string
	for {
		path = filepath.Join(dir, "shared", "CONTRACT.md")
		if data, err = os.ReadFile(path); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return nil, "", false
		}
		dir = parent
	}
	text := string(data)
	start := strings.Index(text, "## 1. Endpoints")
	if start < 0 {
		t.Fatalf("%s has no \"## 1. Endpoints\" section", path)
	}
	section := text[start+3:]
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	methodRE := regexp.MustCompile(`^[A-Z]+$`)
	pathRE := regexp.MustCompile("`(/[^`]*)`")
	var out []string
	for _, line := range strings.Split(section, "\n") {
		cols := strings.Split(line, "|")
		if len(cols) < 4 || !strings.HasPrefix(strings.TrimSpace(line), "|") {
			continue
		}
		var methods []string
		for _, m := range strings.Split(cols[1], "/") {
			if m = strings.TrimSpace(m); methodRE.MatchString(m) {
				methods = append(methods, m)
			}
		}
		if len(methods) == 0 {
			continue // header or separator row
		}
		for _, m := range pathRE.FindAllStringSubmatch(cols[2]+" "+cols[3], -1) {
			if m[1] == "/metrics" {
				continue
			}
			for _, method := range methods {
				out = append(out, method+" "+m[1])
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("found no endpoints in §1 of %s", path)
	}
	return out, path, true
}

// TestSpecConventions lints the document for the rules of CONTRACT §0 that
// apply to every operation.
func TestSpecConventions(t *testing.T) {
	v := NewValidator(t)
	for path, item := range v.doc.Paths.Map() {
		api := strings.HasPrefix(path, "/api/v1/")
		for method, op := range item.Operations() {
			name := method + " " + path
			if op.OperationID == "" {
				t.Errorf("%s: no operationId", name)
			}
			if !api && (op.Security == nil || len(*op.Security) != 0) {
				t.Errorf("%s: probes are never authenticated (security: [])", name)
			}
			var must []string
			if api {
				must = []string{"401", "403", "429", "500", "503"}
				if op.RequestBody != nil {
					must = append(must, "400", "413")
				}
			} else {
				must = []string{"500"}
			}
			for _, code := range must {
				if op.Responses.Value(code) == nil {
					t.Errorf("%s: no %s response", name, code)
				}
			}
			for code, ref := range op.Responses.Map() {
				resp := ref.Value
				if h := resp.Headers["X-Request-ID"]; h == nil || !h.Value.Required {
					t.Errorf("%s %s: X-Request-ID is not a required response header", name, code)
				}
				if code == "429" || (code == "503" && api) {
					if h := resp.Headers["Retry-After"]; h == nil || !h.Value.Required {
						t.Errorf("%s %s: Retry-After is not a required response header", name, code)
					}
				}
				if code >= "400" && !(code == "503" && !api) {
					if len(resp.Content) != 1 || resp.Content["application/problem+json"] == nil {
						t.Errorf("%s %s: an error body must be application/problem+json only", name, code)
					}
				}
				// A redirect has no body; every other success is JSON.
				if code < "300" && resp.Content["application/json"] == nil {
					t.Errorf("%s %s: a success body must be application/json", name, code)
				}
			}
		}
	}

	// The per-name schemas of the aggregations cover exactly the names.
	op := v.doc.Paths.Value("/api/v1/audit/aggregations/{name}").Get
	byName, _ := op.Extensions[byNameExtension].(map[string]any)
	enum := v.doc.Components.Parameters["AggregationName"].Value.Schema.Value.Enum
	if len(byName) != len(enum) {
		t.Errorf("%s has %d names, the name enum %d", byNameExtension, len(byName), len(enum))
	}
	for _, n := range enum {
		s, _ := byName[n.(string)].(string)
		if v.doc.Components.Schemas[s] == nil {
			t.Errorf("%s: no schema for aggregation %q", byNameExtension, n)
		}
	}
}

// ---- example exchanges -------------------------------------------------

const (
	id1 = "0193a0b2-7c3e-7a1b-8c2d-3e4f5a6b7c8d"
	id2 = "0193a0b2-7c3f-7a1b-9c2d-3e4f5a6b7c8e"
	id3 = "0193a0b2-7c40-7a1b-ac2d-3e4f5a6b7c8f"
	ts  = "2026-11-22T10:00:00.000000Z"
)

// storedEvent is a correct AuditEvent as the server returns it.
func storedEvent(id string) map[string]any {
	return map[string]any{
		"version":             "1.0",
		"event_type":          "gateway.signal.received",
		"event_timestamp":     ts,
		"event_category":      "gateway",
		"event_action":        "received",
		"event_outcome":       "success",
		"correlation_id":      "rr-2026-001",
		"event_data":          map[string]any{"event_type": "gateway.signal.received", "nested": map[string]any{"a": []any{1, 2}}},
		"event_id":            id,
		"event_date":          "2026-11-22",
		"actor_type":          "service",
		"actor_id":            "gateway-service",
		"actor_ip":            "10.0.0.7",
		"resource_type":       "gateway",
		"resource_id":         "rr-2026-001",
		"parent_event_id":     nil,
		"parent_event_date":   nil,
		"namespace":           "prod",
		"cluster_id":          nil,
		"severity":            "info",
		"duration_ms":         nil,
		"retention_days":      2555,
		"is_sensitive":        false,
		"event_hash":          strings.Repeat("ab", 32),
		"previous_event_hash": "",
		"hash_algorithm":      "sha256",
		"legal_hold":          false,
		"created_at":          "2026-11-22T10:00:00.123456Z",
	}
}

func childEvent(id, parent string) map[string]any {
	e := storedEvent(id)
	e["parent_event_id"] = parent
	e["parent_event_date"] = "2026-11-22T00:00:00.000000Z"
	e["previous_event_hash"] = strings.Repeat("ab", 32)
	e["event_hash"] = strings.Repeat("cd", 32)
	e["legal_hold"] = true
	e["legal_hold_reason"] = "litigation"
	e["legal_hold_placed_by"] = "auditor@example.com"
	e["legal_hold_placed_at"] = "2026-11-23T08:00:00.000000Z"
	return e
}

func eventList(events ...map[string]any) map[string]any {
	data := []any{}
	for _, e := range events {
		data = append(data, e)
	}
	return map[string]any{
		"data": data,
		"pagination": map[string]any{
			"limit": 2, "offset": 0, "total": 5, "has_more": true,
			"next_cursor": "eyJ0IjoiMjAyNi0xMS0yMiJ9", "total_is_exact": true,
		},
	}
}

func problem(slug, title string, status int) map[string]any {
	return map[string]any{
		"type":     "https://kubernaut.ai/problems/" + slug,
		"title":    title,
		"status":   status,
		"detail":   "something specific",
		"instance": "/api/v1/audit/events",
	}
}

// exchange is one request and the response the test pretends the server gave.
type exchange struct {
	name    string
	method  string
	target  string
	status  int
	ctype   string            // response Content-Type; "" = none
	body    any               // marshalled to JSON unless a string
	headers map[string]string // extra response headers; "" deletes
}

func (x exchange) build(t *testing.T) (*http.Request, *http.Response, []byte) {
	t.Helper()
	req := httptest.NewRequest(x.method, x.target, nil)
	var body []byte
	switch b := x.body.(type) {
	case nil:
	case string:
		body = []byte(b)
	default:
		var err error
		if body, err = json.Marshal(b); err != nil {
			t.Fatal(err)
		}
	}
	rec := httptest.NewRecorder()
	if x.ctype != "" {
		rec.Header().Set("Content-Type", x.ctype)
	}
	rec.Header().Set("X-Request-ID", "req-123")
	for k, val := range x.headers {
		if val == "" {
			rec.Header().Del(k)
		} else {
			rec.Header().Set(k, val)
		}
	}
	rec.WriteHeader(x.status)
	_, _ = rec.Write(body)
	return req, rec.Result(), body
}

const (
	jsonCT    = "application/json"
	problemCT = "application/problem+json"
)

func validExchanges() []exchange {
	nested := storedEvent(id1)
	child := childEvent(id2, id1)
	grandchild := childEvent(id3, id2)
	grandchild["children"] = []any{}
	child["children"] = []any{grandchild}
	nested["children"] = []any{child}

	lastPage := eventList()
	lastPage["pagination"] = map[string]any{"limit": 50, "offset": 0, "total": 0, "has_more": false, "total_is_exact": false}

	validation := problem("validation-error", "Validation Error", 400)
	validation["field_errors"] = map[string]any{"[0].event_type": "is required", "[3].event_category": "must be one of …"}

	return []exchange{
		{name: "list", method: "GET", target: "/api/v1/audit/events?correlation_id=rr-2026-001&limit=2&since=7d", status: 200, ctype: jsonCT, body: eventList(storedEvent(id1), childEvent(id2, id1))},
		{name: "list, last page, charset", method: "GET", target: "/api/v1/audit/events", status: 200, ctype: "application/json; charset=utf-8", body: lastPage},
		{name: "one event", method: "GET", target: "/api/v1/audit/events/" + id1, status: 200, ctype: jsonCT, body: storedEvent(id1)},
		{name: "event not found", method: "GET", target: "/api/v1/audit/events/" + id1, status: 404, ctype: problemCT, body: problem("not-found", "Not Found", 404)},
		{name: "bad limit", method: "GET", target: "/api/v1/audit/events?limit=0", status: 400, ctype: problemCT, body: map[string]any{
			"type": "https://kubernaut.ai/problems/validation-error", "title": "Validation Error", "status": 400,
			"field_errors": map[string]any{"limit": "must be 1 … 1000"}}},
		{name: "batch created", method: "POST", target: "/api/v1/audit/events/batch", status: 201, ctype: jsonCT, body: map[string]any{"event_ids": []any{id1, id2}, "message": "2 audit events created successfully"}},
		{name: "batch invalid", method: "POST", target: "/api/v1/audit/events/batch", status: 400, ctype: problemCT, body: validation},
		{name: "batch too large", method: "POST", target: "/api/v1/audit/events/batch", status: 413, ctype: problemCT, body: problem("request-too-large", "Request Entity Too Large", 413)},
		{name: "batch rate limited", method: "POST", target: "/api/v1/audit/events/batch", status: 429, ctype: problemCT, body: problem("rate-limit-exceeded", "Rate Limit Exceeded", 429), headers: map[string]string{"Retry-After": "2"}},
		{name: "batch unavailable", method: "POST", target: "/api/v1/audit/events/batch", status: 503, ctype: problemCT, body: problem("service-unavailable", "Service Unavailable", 503), headers: map[string]string{"Retry-After": "5"}},
		{name: "unauthorized", method: "POST", target: "/api/v1/audit/events", status: 401, ctype: problemCT, body: map[string]any{"type": "about:blank", "title": "Unauthorized", "status": 401}},
		{name: "forbidden", method: "GET", target: "/api/v1/audit/legal-hold", status: 403, ctype: problemCT, body: map[string]any{"type": "about:blank", "title": "Forbidden", "status": 403, "detail": "verb get denied"}},
		{name: "panic", method: "GET", target: "/api/v1/audit/export", status: 500, ctype: problemCT, body: problem("internal-error", "Internal Server Error", 500)},
		{name: "one created", method: "POST", target: "/api/v1/audit/events", status: 201, ctype: jsonCT, body: map[string]any{"event_id": id1, "event_timestamp": ts, "message": "Audit event created successfully"}},
		{name: "one queued", method: "POST", target: "/api/v1/audit/events", status: 202, ctype: jsonCT, body: map[string]any{"status": "accepted", "message": "audit event queued for async processing"}},
		{name: "wrong method", method: "PUT", target: "/api/v1/audit/events", status: 405, ctype: problemCT, body: problem("method-not-allowed", "Method Not Allowed", 405), headers: map[string]string{"Allow": "GET, POST"}},
		{name: "unknown path", method: "GET", target: "/api/v1/nothing-here", status: 404, ctype: problemCT, body: problem("not-found", "Not Found", 404)},
		{name: "timeline", method: "GET", target: "/api/v1/audit/timeline/rr-2026-001", status: 200, ctype: jsonCT, body: map[string]any{
			"correlation_id": "rr-2026-001", "events": []any{nested}, "started_at": ts, "ended_at": "2026-11-22T10:05:00.000000Z", "duration_ms": 300000, "outcome": "success"}},
		{name: "timeline html", method: "GET", target: "/api/v1/audit/timeline/rr-2026-001", status: 200, ctype: "text/html; charset=utf-8", body: "<!doctype html><title>rr-2026-001</title>"},
		{name: "success rate", method: "GET", target: "/api/v1/audit/aggregations/success-rate?workflow_id=wf-1", status: 200, ctype: jsonCT, body: map[string]any{
			"total": 20, "successes": 15, "failures": 5, "success_rate": 0.75, "confidence": "medium", "min_samples_met": true}},
		{name: "by namespace", method: "GET", target: "/api/v1/audit/aggregations/by-namespace", status: 200, ctype: jsonCT, body: map[string]any{
			"aggregations": []any{map[string]any{"namespace": "prod", "remediations": 3, "events": 40}}}},
		{name: "by severity", method: "GET", target: "/api/v1/audit/aggregations/by-severity", status: 200, ctype: jsonCT, body: map[string]any{
			"aggregations": []any{map[string]any{"severity": "critical", "count": 2}, map[string]any{"severity": "info", "count": 9}}}},
		{name: "trend", method: "GET", target: "/api/v1/audit/aggregations/trend?period=7d&interval=day", status: 200, ctype: jsonCT, body: map[string]any{
			"period": "7d", "interval": "day", "data_points": []any{map[string]any{"bucket": "2026-11-22T00:00:00.000000Z", "count": 0, "failures": 0}}}},
		{name: "counts", method: "GET", target: "/api/v1/audit/aggregations/counts?group_by=event_category,namespace", status: 200, ctype: jsonCT, body: map[string]any{
			"groups": []any{map[string]any{"event_category": "gateway", "namespace": nil, "count": 4}}}},
		{name: "unknown aggregation", method: "GET", target: "/api/v1/audit/aggregations/median", status: 404, ctype: problemCT, body: problem("not-found", "Not Found", 404)},
		{name: "verify chain", method: "POST", target: "/api/v1/audit/verify-chain", status: 200, ctype: jsonCT, body: map[string]any{
			"correlation_id": "rr-2026-001", "is_valid": false, "total_events": 3, "verified_events": 3,
			"tampered_events":   []any{map[string]any{"event_id": id2, "event_timestamp": ts, "expected_hash": "aa", "actual_hash": "bb", "previous_hash": "", "message": "hash mismatch"}},
			"verification_time": ts, "message": "1 tampered event"}},
		{name: "verify chain without id", method: "POST", target: "/api/v1/audit/verify-chain", status: 400, ctype: problemCT, body: problem("missing-correlation-id", "Missing Correlation ID", 400)},
		{name: "place hold", method: "POST", target: "/api/v1/audit/legal-hold", status: 200, ctype: jsonCT, body: map[string]any{
			"correlation_id": "rr-2026-001", "events_affected": 3, "placed_by": "auditor", "placed_at": ts, "reason": "litigation"}},
		{name: "list holds", method: "GET", target: "/api/v1/audit/legal-hold", status: 200, ctype: jsonCT, body: map[string]any{"holds": []any{}, "total": 0}},
		{name: "release hold", method: "DELETE", target: "/api/v1/audit/legal-hold/rr-2026-001", status: 200, ctype: jsonCT, body: map[string]any{
			"correlation_id": "rr-2026-001", "events_released": 3, "released_by": "auditor", "released_at": ts}},
		{name: "export json", method: "GET", target: "/api/v1/audit/export?correlation_id=rr-2026-001&format=json", status: 200, ctype: jsonCT, body: map[string]any{
			"export_metadata": map[string]any{"export_timestamp": ts, "export_format": "json", "total_events": 1, "signature": "c2lnbmF0dXJl",
				"signature_algorithm": "ed25519", "exported_by": "auditor", "query_filters": map[string]any{"correlation_id": "rr-2026-001"}},
			"events": []any{storedEvent(id1)},
			"hash_chain_verification": map[string]any{"total_events_verified": 1, "valid_chain_events": 1, "broken_chain_events": 0,
				"chain_integrity_percentage": 100, "verification_timestamp": ts, "tampered_event_ids": []any{}}}},
		{name: "export ndjson", method: "GET", target: "/api/v1/audit/export?format=ndjson", status: 200, ctype: "application/x-ndjson",
			body: "{\"export_metadata\":{}}\n{\"event_id\":\"" + id1 + "\"}\n{\"hash_chain_verification\":{}}\n"},
		{name: "notification stored", method: "POST", target: "/api/v1/audit/notifications", status: 201, ctype: jsonCT, body: map[string]any{
			"id": 42, "remediation_id": "rr-2026-001", "notification_id": "n-1", "recipient": "#ops", "channel": "slack",
			"message_summary": "Pod restarted", "status": "sent", "sent_at": ts, "created_at": ts, "updated_at": ts}},
		{name: "notification repeated", method: "POST", target: "/api/v1/audit/notifications", status: 409, ctype: problemCT, body: problem("conflict", "Resource Conflict", 409)},
		{name: "healthz", method: "GET", target: "/healthz", status: 200, ctype: jsonCT, body: map[string]any{"status": "healthy"}},
		{name: "head healthz", method: "HEAD", target: "/healthz", status: 200, ctype: jsonCT},
		{name: "head on a POST-only path", method: "HEAD", target: "/api/v1/audit/verify-chain", status: 405, ctype: problemCT,
			headers: map[string]string{"Allow": "POST"}},
		{name: "readyz", method: "GET", target: "/readyz", status: 200, ctype: jsonCT, body: map[string]any{"status": "ready", "database": "up", "spool": "down"}},
		{name: "not ready", method: "GET", target: "/health/ready", status: 503, ctype: jsonCT, body: map[string]any{"status": "not_ready", "reason": "shutting_down"}},
	}
}

func TestValidResponsesPass(t *testing.T) {
	v := NewValidator(t)
	for _, x := range validExchanges() {
		t.Run(x.name, func(t *testing.T) {
			t.Parallel() // the Validator is shared by concurrent tests
			req, resp, body := x.build(t)
			if err := v.ResponseError(req, resp, body); err != nil {
				t.Errorf("a correct response was rejected:\n%v", err)
			}
		})
	}
}

// mutate returns a copy of a JSON value after f changed it.
func mutate(v map[string]any, f func(map[string]any)) map[string]any {
	b, _ := json.Marshal(v)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	f(out)
	return out
}

// firstEvent edits the first event of a list body.
func firstEvent(f func(e map[string]any)) func(map[string]any) {
	return func(list map[string]any) { f(list["data"].([]any)[0].(map[string]any)) }
}

func TestInvalidResponsesAreRejected(t *testing.T) {
	v := NewValidator(t)
	list := eventList(storedEvent(id1), childEvent(id2, id1))
	listX := func(name string, f func(map[string]any)) exchange {
		return exchange{name: name, method: "GET", target: "/api/v1/audit/events", status: 200, ctype: jsonCT, body: mutate(list, f)}
	}
	prob := problem("not-found", "Not Found", 404)
	probX := func(name string, f func(map[string]any)) exchange {
		return exchange{name: name, method: "GET", target: "/api/v1/audit/events/" + id1, status: 404, ctype: problemCT, body: mutate(prob, f)}
	}
	cases := []struct {
		x    exchange
		want string // a piece of the error message
	}{
		{listX("event_date as a timestamp", firstEvent(func(e map[string]any) { e["event_date"] = "2026-11-22T00:00:00Z" })), "event_date"},
		{listX("event_date not a calendar date", firstEvent(func(e map[string]any) { e["event_date"] = "2026-02-30" })), "event_date"},
		{listX("null where a string is required", firstEvent(func(e map[string]any) { e["event_type"] = nil })), "event_type"},
		{listX("null in a non-nullable optional string", firstEvent(func(e map[string]any) { e["actor_type"] = nil })), "actor_type"},
		{listX("unknown outcome", firstEvent(func(e map[string]any) { e["event_outcome"] = "maybe" })), "event_outcome"},
		{listX("unknown category", firstEvent(func(e map[string]any) { e["event_category"] = "kitchen" })), "event_category"},
		{listX("timestamp without six fractional digits", firstEvent(func(e map[string]any) { e["event_timestamp"] = "2026-11-22T10:00:00Z" })), "event_timestamp"},
		{listX("timestamp not in UTC", firstEvent(func(e map[string]any) { e["created_at"] = "2026-11-22T10:00:00.000000+01:00" })), "created_at"},
		{listX("event_id not a uuid", firstEvent(func(e map[string]any) { e["event_id"] = "evt-1" })), "event_id"},
		{listX("event_id missing", firstEvent(func(e map[string]any) { delete(e, "event_id") })), "event_id"},
		{listX("event_data missing", firstEvent(func(e map[string]any) { delete(e, "event_data") })), "event_data"},
		{listX("event_data not an object", firstEvent(func(e map[string]any) { e["event_data"] = "{}" })), "event_data"},
		{listX("empty version", firstEvent(func(e map[string]any) { e["version"] = "" })), "version"},
		{listX("hash not hex", firstEvent(func(e map[string]any) { e["event_hash"] = "xyz" })), "event_hash"},
		{listX("duration out of range", firstEvent(func(e map[string]any) { e["duration_ms"] = -1 })), "duration_ms"},
		{listX("parent date not midnight", func(l map[string]any) {
			l["data"].([]any)[1].(map[string]any)["parent_event_date"] = "2026-11-22T10:00:00.000000Z"
		}), "parent_event_date"},
		{listX("data is null", func(l map[string]any) { l["data"] = nil }), "data"},
		{listX("has_more without next_cursor", func(l map[string]any) {
			delete(l["pagination"].(map[string]any), "next_cursor")
		}), "next_cursor"},
		{listX("next_cursor on the last page", func(l map[string]any) { l["pagination"].(map[string]any)["has_more"] = false }), "has_more"},
		{listX("total_is_exact missing", func(l map[string]any) { delete(l["pagination"].(map[string]any), "total_is_exact") }), "total_is_exact"},
		{probX("problem without title", func(p map[string]any) { delete(p, "title") }), "title"},
		{probX("problem with a foreign key", func(p map[string]any) { p["error"] = "nope" }), "error"},
		{probX("problem with null detail", func(p map[string]any) { p["detail"] = nil }), "detail"},
		{probX("problem title not the slug's", func(p map[string]any) { p["title"] = "Missing" }), "title"},
		{probX("problem status not the HTTP status", func(p map[string]any) { p["status"] = 400 }), "status"},
		{probX("problem type not a URI", func(p map[string]any) { p["type"] = "not-found" }), "type"},
		{probX("problem instance not a path", func(p map[string]any) { p["instance"] = "events" }), "instance"},
		{exchange{name: "validation-error without field_errors", method: "POST", target: "/api/v1/audit/events", status: 400, ctype: problemCT,
			body: problem("validation-error", "Validation Error", 400)}, "field_errors"},
		{exchange{name: "problem as application/json", method: "GET", target: "/api/v1/audit/events/" + id1, status: 404, ctype: jsonCT, body: prob}, "Content-Type"},
		{exchange{name: "no content type", method: "GET", target: "/api/v1/audit/events", status: 200, body: list}, "Content-Type"},
		{exchange{name: "undocumented status", method: "GET", target: "/api/v1/audit/events", status: 418, ctype: problemCT, body: prob}, "status"},
		{exchange{name: "no X-Request-ID", method: "GET", target: "/healthz", status: 200, ctype: jsonCT, body: map[string]any{"status": "healthy"},
			headers: map[string]string{"X-Request-ID": ""}}, "X-Request-ID"},
		{exchange{name: "429 without Retry-After", method: "POST", target: "/api/v1/audit/events/batch", status: 429, ctype: problemCT,
			body: problem("rate-limit-exceeded", "Rate Limit Exceeded", 429)}, "Retry-After"},
		{exchange{name: "405 without Allow", method: "PATCH", target: "/api/v1/audit/events", status: 405, ctype: problemCT,
			body: problem("method-not-allowed", "Method Not Allowed", 405)}, "Allow"},
		{exchange{name: "unknown path answered 200", method: "GET", target: "/api/v2/audit/events", status: 200, ctype: jsonCT, body: list}, "status"},
		{exchange{name: "aggregation body of another name", method: "GET", target: "/api/v1/audit/aggregations/by-namespace", status: 200, ctype: jsonCT,
			body: map[string]any{"total": 1, "successes": 1, "failures": 0, "success_rate": 1, "confidence": "insufficient_data", "min_samples_met": false}}, "NamespaceAggregation"},
		{exchange{name: "timeline child without children", method: "GET", target: "/api/v1/audit/timeline/rr-2026-001", status: 200, ctype: jsonCT,
			body: map[string]any{"correlation_id": "rr-2026-001", "started_at": ts, "ended_at": ts, "duration_ms": 0, "outcome": "pending",
				"events": []any{mutate(storedEvent(id1), func(e map[string]any) { e["children"] = []any{childEvent(id2, id1)} })}}}, "children"},
		{exchange{name: "not ready as a problem", method: "GET", target: "/readyz", status: 503, ctype: problemCT,
			body: problem("service-unavailable", "Service Unavailable", 503)}, "Content-Type"},
		{exchange{name: "accepted with another status", method: "POST", target: "/api/v1/audit/events", status: 202, ctype: jsonCT,
			body: map[string]any{"status": "queued", "message": "x"}}, "status"},
		{exchange{name: "HEAD with a body", method: "HEAD", target: "/api/v1/audit/events", status: 200, ctype: jsonCT, body: list}, "HEAD"},
		{exchange{name: "HEAD on a POST-only path without Allow", method: "HEAD", target: "/api/v1/audit/verify-chain", status: 405, ctype: problemCT}, "Allow"},
		{exchange{name: "HEAD with an undocumented status", method: "HEAD", target: "/readyz", status: 204}, "status"},
		{exchange{name: "ndjson line not JSON", method: "GET", target: "/api/v1/audit/export?format=ndjson", status: 200, ctype: "application/x-ndjson",
			body: "{\"export_metadata\":{}}\nnot json\n"}, "line 2"},
	}
	for _, c := range cases {
		t.Run(c.x.name, func(t *testing.T) {
			req, resp, body := c.x.build(t)
			err := v.ResponseError(req, resp, body)
			if err == nil {
				t.Fatalf("an invalid response was accepted: %s", body)
			}
			if msg, _, _ := strings.Cut(err.Error(), "\n  Content-Type:"); !strings.Contains(msg, c.want) {
				t.Errorf("the error does not mention %q:\n%v", c.want, err)
			}
		})
	}
}

// recorder is a testing.TB that records failures instead of failing.
type recorder struct {
	testing.TB
	errors []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, a ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, a...))
}

func TestCheckResponseFailsTheTestAndLeavesTheBody(t *testing.T) {
	v := NewValidator(t)
	bad := exchange{method: "GET", target: "/api/v1/audit/events/" + id1, status: 200, ctype: jsonCT,
		body: mutate(storedEvent(id1), func(e map[string]any) { e["event_outcome"] = "maybe" })}
	req, resp, body := bad.build(t)

	r := &recorder{TB: t}
	v.CheckResponse(r, req, resp, body)
	if len(r.errors) != 1 {
		t.Fatalf("CheckResponse recorded %d failures, want 1", len(r.errors))
	}
	for _, piece := range []string{"GET /api/v1/audit/events/" + id1, "200", "getAuditEvent", "event_outcome", "maybe"} {
		if !strings.Contains(r.errors[0], piece) {
			t.Errorf("the failure message lacks %q:\n%s", piece, r.errors[0])
		}
	}
	rest, _ := io.ReadAll(resp.Body)
	if string(rest) != string(body) {
		t.Errorf("CheckResponse consumed the response body")
	}

	good := exchange{method: "GET", target: "/healthz", status: 200, ctype: jsonCT, body: map[string]any{"status": "healthy"}}
	req, resp, body = good.build(t)
	r = &recorder{TB: t}
	v.CheckResponse(r, req, resp, body)
	if len(r.errors) != 0 {
		t.Errorf("a correct response failed the test: %v", r.errors)
	}
}

// requestEvent is a correct AuditEventRequest as a platform client sends it.
func requestEvent() map[string]any {
	return map[string]any{
		"version":           "1.0",
		"event_type":        "workflowexecution.workflow.started",
		"event_timestamp":   "2026-11-22T10:00:00+01:00",
		"event_category":    "workflowexecution",
		"event_action":      "started",
		"event_outcome":     "pending",
		"correlation_id":    "rr-2026-001",
		"event_data":        map[string]any{"event_type": "workflowexecution.workflow.started", "workflow_id": "wf-1"},
		"parent_event_id":   nil,
		"parent_event_date": nil,
		"namespace":         nil,
		"cluster_id":        nil,
		"severity":          nil,
		"duration_ms":       nil,
		"error_code":        nil,
		"error_message":     nil,
		"retention_days":    nil,
		"is_sensitive":      nil,
		"some_unknown_key":  "ignored",
	}
}

func TestCheckRequest(t *testing.T) {
	v := NewValidator(t)
	send := func(method, target string, body any) error {
		var b []byte
		if body != nil {
			b, _ = json.Marshal(body)
		}
		req := httptest.NewRequest(method, target, nil)
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		return v.RequestError(req, b)
	}
	withID := mutate(requestEvent(), func(e map[string]any) {
		e["event_id"], e["actor_ip"], e["parent_event_id"] = id1, "2001:db8::1", id2
	})

	good := []struct {
		name, method, target string
		body                 any
	}{
		{"one event with nulls", "POST", "/api/v1/audit/events", requestEvent()},
		{"one event with ids", "POST", "/api/v1/audit/events", withID},
		{"batch", "POST", "/api/v1/audit/events/batch", []any{requestEvent(), withID}},
		{"query", "GET", "/api/v1/audit/events?event_category=gateway&since=1.5d&until=2026-11-22&limit=1000&order=asc&detail_key=workflow_id&detail_value=wf-1", nil},
		{"cursor", "GET", "/api/v1/audit/events?cursor=abc&since=90m", nil},
		{"counts", "GET", "/api/v1/audit/aggregations/counts?group_by=severity,namespace&since=2026-11-20T00:00:00Z", nil},
		{"verify", "POST", "/api/v1/audit/verify-chain", map[string]any{"correlation_id": "rr-2026-001"}},
		{"release", "DELETE", "/api/v1/audit/legal-hold/rr-2026-001", map[string]any{"release_reason": "case closed"}},
		{"notification", "POST", "/api/v1/audit/notifications", map[string]any{
			"remediation_id": "rr-1", "notification_id": "n-1", "recipient": "#ops", "channel": "slack",
			"message_summary": "restarted", "status": "sent", "sent_at": "2026-11-22T10:00:00Z", "escalation_level": nil}},
		{"probe", "GET", "/readyz", nil},
	}
	for _, c := range good {
		if err := send(c.method, c.target, c.body); err != nil {
			t.Errorf("%s: a correct request was rejected:\n%v", c.name, err)
		}
	}

	bad := []struct {
		name, method, target string
		body                 any
		want                 string
	}{
		{"missing event_data", "POST", "/api/v1/audit/events", mutate(requestEvent(), func(e map[string]any) { delete(e, "event_data") }), "event_data"},
		{"version too long", "POST", "/api/v1/audit/events", mutate(requestEvent(), func(e map[string]any) { e["version"] = "1.0.0-alpha.1" }), "version"},
		{"null event_type", "POST", "/api/v1/audit/events", mutate(requestEvent(), func(e map[string]any) { e["event_type"] = nil }), "event_type"},
		{"timestamp without zone", "POST", "/api/v1/audit/events", mutate(requestEvent(), func(e map[string]any) { e["event_timestamp"] = "2026-11-22T10:00:00" }), "event_timestamp"},
		{"actor_ip not an IP", "POST", "/api/v1/audit/events", mutate(requestEvent(), func(e map[string]any) { e["actor_ip"] = "gateway" }), "actor_ip"},
		{"retention too long", "POST", "/api/v1/audit/events", mutate(requestEvent(), func(e map[string]any) { e["retention_days"] = 2556 }), "retention_days"},
		{"empty batch", "POST", "/api/v1/audit/events/batch", []any{}, "minItems"},
		{"batch element invalid", "POST", "/api/v1/audit/events/batch", []any{requestEvent(), mutate(requestEvent(), func(e map[string]any) { e["event_outcome"] = "maybe" })}, "event_outcome"},
		{"limit too high", "GET", "/api/v1/audit/events?limit=5000", nil, "limit"},
		{"bad order", "GET", "/api/v1/audit/events?order=random", nil, "order"},
		{"bad since", "GET", "/api/v1/audit/events?since=yesterday", nil, "since"},
		{"bad detail_key", "GET", "/api/v1/audit/events?detail_key=a.b&detail_value=1", nil, "detail_key"},
		{"bad group_by", "GET", "/api/v1/audit/aggregations/counts?group_by=actor_id", nil, "group_by"},
		{"event id not a uuid", "GET", "/api/v1/audit/events/abc", nil, "event_id"},
		{"unknown channel", "POST", "/api/v1/audit/notifications", map[string]any{
			"remediation_id": "rr-1", "notification_id": "n-1", "recipient": "#ops", "channel": "pigeon",
			"message_summary": "restarted", "status": "sent", "sent_at": "2026-11-22T10:00:00Z"}, "channel"},
		{"undocumented path", "GET", "/api/v1/audit/nothing", nil, "no documented operation"},
	}
	for _, c := range bad {
		err := send(c.method, c.target, c.body)
		if err == nil {
			t.Errorf("%s: an invalid request was accepted", c.name)
			continue
		}
		if msg, _, _ := strings.Cut(err.Error(), "\n  Content-Type:"); !strings.Contains(msg, c.want) {
			t.Errorf("%s: the error does not mention %q:\n%v", c.name, c.want, err)
		}
	}
}
