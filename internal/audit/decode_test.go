package audit_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
)

// testNow is the fixed clock of every validator in these tests.
var testNow = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

const (
	testMaxAge  = 7 * 24 * time.Hour
	testMaxSkew = time.Hour
)

func validator() *audit.Validator {
	return &audit.Validator{
		MaxAge:  testMaxAge,
		MaxSkew: testMaxSkew,
		Now:     func() time.Time { return testNow },
	}
}

// absent removes a member from validBody's request.
type absentMember struct{}

var absent = absentMember{}

// validRequest returns the members of a valid AuditEventRequest with only the
// required ones set.
func validRequest() map[string]any {
	return map[string]any{
		"version":         "1.0",
		"event_type":      "gateway.signal.received",
		"event_timestamp": "2026-11-22T09:30:00Z",
		"event_category":  "gateway",
		"event_action":    "received",
		"event_outcome":   "success",
		"correlation_id":  "rr-1",
		"event_data":      map[string]any{"event_type": "gateway.signal.received"},
	}
}

// validBody returns the JSON of validRequest with overrides applied; a value
// of absent removes the member, a json.RawMessage is inserted verbatim (not
// even compacted, and whether or not it is valid).
func validBody(t testing.TB, overrides map[string]any) string {
	t.Helper()
	r := validRequest()
	verbatim := map[string]string{}
	for k, v := range overrides {
		switch v := v.(type) {
		case absentMember:
			delete(r, k)
		case json.RawMessage:
			placeholder := "@@verbatim:" + k + "@@"
			verbatim[`"`+placeholder+`"`] = string(v)
			r[k] = placeholder
		default:
			r[k] = v
		}
	}
	b, err := json.Marshal(r)
	require.NoError(t, err)
	s := string(b)
	for placeholder, raw := range verbatim {
		s = strings.Replace(s, placeholder, raw, 1)
	}
	return s
}

func decodeOne(t *testing.T, overrides map[string]any) (*audit.Event, audit.FieldErrors) {
	t.Helper()
	ev, fe, err := validator().DecodeOne([]byte(validBody(t, overrides)))
	require.NoError(t, err)
	if len(fe) > 0 {
		require.Nil(t, ev, "no event with field errors")
	} else {
		require.NotNil(t, ev)
	}
	return ev, fe
}

func TestDecodeOneAppliesTheContractDefaults(t *testing.T) {
	t.Parallel()
	ev, fe := decodeOne(t, nil)
	require.Empty(t, fe)
	assert.Equal(t, "service", ev.ActorType)
	assert.Equal(t, "gateway-service", ev.ActorID)
	assert.Equal(t, "gateway", ev.ResourceType)
	assert.Equal(t, "rr-1", ev.ResourceID)
	assert.Equal(t, "info", ev.Severity)
	assert.Equal(t, int32(2555), ev.RetentionDays)
	assert.False(t, ev.IsSensitive)
	assert.Nil(t, ev.DurationMS)
	assert.Nil(t, ev.ParentID)
	assert.Nil(t, ev.ParentDate)
	assert.Empty(t, ev.ActorIP)
	assert.Empty(t, ev.Namespace)
	assert.True(t, ev.ParentResolved())
}

func TestDecodeOneTreatsEmptyAndNullOptionalStringsAsAbsent(t *testing.T) {
	t.Parallel()
	for _, v := range []any{"", nil} {
		ev, fe := decodeOne(t, map[string]any{
			"actor_type": v, "actor_id": v, "resource_type": v, "resource_id": v, "severity": v,
			"namespace": v, "cluster_id": v, "actor_ip": v, "error_code": v, "error_message": v,
			"parent_event_id": v, "event_id": v, "duration_ms": nil, "retention_days": nil, "is_sensitive": nil,
		})
		require.Empty(t, fe, "%#v", v)
		assert.Equal(t, "service", ev.ActorType)
		assert.Equal(t, "gateway-service", ev.ActorID)
		assert.Equal(t, "gateway", ev.ResourceType)
		assert.Equal(t, "rr-1", ev.ResourceID)
		assert.Equal(t, "info", ev.Severity)
		assert.Equal(t, int32(2555), ev.RetentionDays)
		assert.Nil(t, ev.ParentID)
		assert.True(t, ev.ServerID())
	}
}

func TestDecodeOneUsesTheConfiguredDefaultRetention(t *testing.T) {
	t.Parallel()
	v := validator()
	v.DefaultRetentionDays = 90
	ev, fe, err := v.DecodeOne([]byte(validBody(t, nil)))
	require.NoError(t, err)
	require.Empty(t, fe)
	assert.Equal(t, int32(90), ev.RetentionDays)

	ev, fe, err = v.DecodeOne([]byte(validBody(t, map[string]any{"retention_days": 7})))
	require.NoError(t, err)
	require.Empty(t, fe)
	assert.Equal(t, int32(7), ev.RetentionDays, "the client's value wins")
}

func TestDecodeOneKeepsEveryValueTheClientSent(t *testing.T) {
	t.Parallel()
	ev, fe := decodeOne(t, map[string]any{
		"event_id":          "0192F3C4-5A6B-7C8D-9E0F-1A2B3C4D5E6F",
		"event_timestamp":   "2026-11-22T01:30:00.1234567+02:00",
		"event_category":    "workflowexecution",
		"event_outcome":     "pending",
		"event_data":        json.RawMessage(`{ "b" : 1e2, "a": [true] }`),
		"actor_type":        "user",
		"actor_id":          "alice",
		"actor_ip":          "2001:db8::1",
		"resource_type":     "Pod",
		"resource_id":       "pod-1",
		"parent_event_id":   "0192f3c4-0000-7000-8000-000000000001",
		"parent_event_date": "not even a date: ignored",
		"namespace":         "prod",
		"cluster_id":        "c1",
		"severity":          "critical",
		"duration_ms":       2147483647,
		"error_code":        "E42",
		"error_message":     "it broke",
		"retention_days":    1,
		"is_sensitive":      true,
		"unknown_member":    "ignored",
	})
	require.Empty(t, fe)
	assert.Equal(t, uuid.MustParse("0192f3c4-5a6b-7c8d-9e0f-1a2b3c4d5e6f"), ev.ID)
	assert.False(t, ev.ServerID())
	assert.Equal(t, time.Date(2026, 11, 21, 23, 30, 0, 123456000, time.UTC), ev.Timestamp.Std(), "UTC, microseconds")
	assert.Equal(t, "2026-11-21", ev.Date.String(), "UTC date of the timestamp")
	assert.Equal(t, "workflowexecution", ev.Category)
	assert.Equal(t, "pending", ev.Outcome)
	assert.JSONEq(t, `{"b":100,"a":[true]}`, string(ev.Data))
	assert.Equal(t, `{ "b" : 1e2, "a": [true] }`, string(ev.Data), "event_data is kept as sent")
	assert.Equal(t, "user", ev.ActorType)
	assert.Equal(t, "alice", ev.ActorID)
	assert.Equal(t, "2001:db8::1", ev.ActorIP)
	assert.Equal(t, "Pod", ev.ResourceType)
	assert.Equal(t, "pod-1", ev.ResourceID)
	require.NotNil(t, ev.ParentID)
	assert.Equal(t, "0192f3c4-0000-7000-8000-000000000001", ev.ParentID.String())
	assert.Nil(t, ev.ParentDate, "the client's parent_event_date is ignored")
	assert.False(t, ev.ParentResolved())
	assert.Equal(t, "prod", ev.Namespace)
	assert.Equal(t, "c1", ev.ClusterID)
	assert.Equal(t, "critical", ev.Severity)
	require.NotNil(t, ev.DurationMS)
	assert.Equal(t, int32(2147483647), *ev.DurationMS)
	assert.Equal(t, "E42", ev.ErrorCode)
	assert.Equal(t, "it broke", ev.ErrorMessage)
	assert.Equal(t, int32(1), ev.RetentionDays)
	assert.True(t, ev.IsSensitive)

	ev.ResolveParent(audit.DateOf(time.Date(2026, 11, 20, 15, 0, 0, 0, time.UTC)))
	assert.True(t, ev.ParentResolved())
	assert.Equal(t, time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC), ev.ParentDate.Std())
}

func TestDecodeOneAssignsAFreshUUIDv7OnlyWhenNoEventIDIsSent(t *testing.T) {
	t.Parallel()
	seen := map[uuid.UUID]bool{}
	for range 100 {
		ev, fe := decodeOne(t, nil)
		require.Empty(t, fe)
		assert.Equal(t, uuid.Version(7), ev.ID.Version())
		assert.Equal(t, uuid.RFC4122, ev.ID.Variant())
		assert.True(t, ev.ServerID())
		assert.False(t, seen[ev.ID], "ids are unique")
		seen[ev.ID] = true
	}
	sent := "0192f3c4-5a6b-4c8d-9e0f-1a2b3c4d5e6f" // any version is kept
	ev, fe := decodeOne(t, map[string]any{"event_id": sent})
	require.Empty(t, fe)
	assert.Equal(t, sent, ev.ID.String())
	assert.False(t, ev.ServerID())
}

func TestDecodeOneEnforcesTheEventTimestampWindow(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		ts      string
		wantErr string
	}{
		{"now", "2026-11-22T10:00:00Z", ""},
		{"exactly max age ago", "2026-11-15T10:00:00Z", ""},
		{"one microsecond more than max age ago", "2026-11-15T09:59:59.999999Z", "must not be more than 168h0m0s in the past"},
		{"one nanosecond more than max age ago", "2026-11-15T09:59:59.999999999Z", "must not be more than 168h0m0s in the past"},
		{"exactly max skew ahead", "2026-11-22T11:00:00Z", ""},
		{"max skew ahead written with an offset", "2026-11-22T12:00:00+01:00", ""},
		{"one microsecond more than max skew ahead", "2026-11-22T11:00:00.000001Z", "must not be more than 1h0m0s in the future"},
		{"far future", "2099-01-01T00:00:00Z", "must not be more than 1h0m0s in the future"},
		{"far past", "1970-01-01T00:00:00Z", "must not be more than 168h0m0s in the past"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ev, fe := decodeOne(t, map[string]any{"event_timestamp": tt.ts})
			if tt.wantErr == "" {
				require.Empty(t, fe)
				assert.Equal(t, mustParse(t, tt.ts).UTC(), ev.Timestamp.Std())
				return
			}
			assert.Equal(t, audit.FieldErrors{"event_timestamp": tt.wantErr}, fe)
		})
	}
}

func mustParse(t *testing.T, s string) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339Nano, s)
	require.NoError(t, err)
	return ts
}

func TestDecodeOneNamesEveryFaultyField(t *testing.T) {
	t.Parallel()
	type fe = audit.FieldErrors
	const mustBeString = "must be a string"
	categories := "must be one of gateway, notification, analysis, aiagent, signalprocessing, workflow, workflowexecution, orchestration, approval, effectiveness, actiontype, apifrontend, security, agentsession"
	tests := []struct {
		name      string
		overrides map[string]any
		want      fe
	}{
		// Required strings.
		{"version absent", map[string]any{"version": absent}, fe{"version": "is required"}},
		{"version null", map[string]any{"version": nil}, fe{"version": "is required"}},
		{"version empty", map[string]any{"version": ""}, fe{"version": "must not be empty"}},
		{"version a number", map[string]any{"version": 1}, fe{"version": mustBeString}},
		{"version 10 characters", map[string]any{"version": strings.Repeat("é", 10)}, nil},
		{"version 11 characters", map[string]any{"version": strings.Repeat("v", 11)}, fe{"version": "must be at most 10 characters, got 11"}},
		{"event_type absent", map[string]any{"event_type": absent}, fe{"event_type": "is required"}},
		{"event_type an object", map[string]any{"event_type": map[string]any{}}, fe{"event_type": mustBeString}},
		{"event_type 100 characters", map[string]any{"event_type": strings.Repeat("ü", 100)}, nil},
		{"event_type 101 characters", map[string]any{"event_type": strings.Repeat("t", 101)}, fe{"event_type": "must be at most 100 characters, got 101"}},
		{"event_type with NUL", map[string]any{"event_type": "a\u0000b"}, fe{"event_type": "must not contain the NUL character"}},
		{"event_action absent", map[string]any{"event_action": absent}, fe{"event_action": "is required"}},
		{"event_action 51 characters", map[string]any{"event_action": strings.Repeat("a", 51)}, fe{"event_action": "must be at most 50 characters, got 51"}},
		{"event_action an array", map[string]any{"event_action": []string{"a"}}, fe{"event_action": mustBeString}},
		{"correlation_id absent", map[string]any{"correlation_id": absent}, fe{"correlation_id": "is required"}},
		{"correlation_id empty", map[string]any{"correlation_id": ""}, fe{"correlation_id": "must not be empty"}},
		{"correlation_id 255 characters", map[string]any{"correlation_id": strings.Repeat("c", 255)}, nil},
		{"correlation_id 256 characters", map[string]any{"correlation_id": strings.Repeat("c", 256)}, fe{"correlation_id": "must be at most 255 characters, got 256"}},
		{"correlation_id a boolean", map[string]any{"correlation_id": true}, fe{"correlation_id": mustBeString}},
		// Enums.
		{"event_category absent", map[string]any{"event_category": absent}, fe{"event_category": "is required"}},
		{"event_category unknown", map[string]any{"event_category": "bogus"}, fe{"event_category": categories}},
		{"event_category wrong case", map[string]any{"event_category": "Gateway"}, fe{"event_category": categories}},
		{"event_category a number", map[string]any{"event_category": 3}, fe{"event_category": mustBeString}},
		{"event_outcome absent", map[string]any{"event_outcome": absent}, fe{"event_outcome": "is required"}},
		{"event_outcome unknown", map[string]any{"event_outcome": "partial"}, fe{"event_outcome": "must be one of success, failure, pending"}},
		// Timestamps.
		{"event_timestamp absent", map[string]any{"event_timestamp": absent}, fe{"event_timestamp": "is required"}},
		{"event_timestamp a number", map[string]any{"event_timestamp": 1764000000}, fe{"event_timestamp": mustBeString}},
		{"event_timestamp without zone", map[string]any{"event_timestamp": "2026-11-22T09:30:00"}, fe{"event_timestamp": "must be an RFC 3339 timestamp with a time zone, e.g. 2026-11-22T10:00:00Z"}},
		{"event_timestamp date only", map[string]any{"event_timestamp": "2026-11-22"}, fe{"event_timestamp": "must be an RFC 3339 timestamp with a time zone, e.g. 2026-11-22T10:00:00Z"}},
		{"event_timestamp with space", map[string]any{"event_timestamp": "2026-11-22 09:30:00Z"}, fe{"event_timestamp": "must be an RFC 3339 timestamp with a time zone, e.g. 2026-11-22T10:00:00Z"}},
		// event_data.
		{"event_data absent", map[string]any{"event_data": absent}, fe{"event_data": "is required and must be a JSON object"}},
		{"event_data null", map[string]any{"event_data": nil}, fe{"event_data": "is required and must be a JSON object"}},
		{"event_data an array", map[string]any{"event_data": []int{1}}, fe{"event_data": "must be a JSON object"}},
		{"event_data a string", map[string]any{"event_data": "{}"}, fe{"event_data": "must be a JSON object"}},
		{"event_data a number", map[string]any{"event_data": 1}, fe{"event_data": "must be a JSON object"}},
		{"event_data empty object", map[string]any{"event_data": map[string]any{}}, nil},
		{"event_data with escaped NUL", map[string]any{"event_data": json.RawMessage(`{"a":"x\u0000"}`)}, fe{"event_data": `must not contain the escaped NUL character \u0000`}},
		{"event_data with escaped NUL in a key", map[string]any{"event_data": json.RawMessage(`{"\u0000":1}`)}, fe{"event_data": `must not contain the escaped NUL character \u0000`}},
		{"event_data with the text backslash-u0000", map[string]any{"event_data": json.RawMessage(`{"path":"C:\\u0000"}`)}, nil},
		{"event_data with an escaped backslash before a quote", map[string]any{"event_data": json.RawMessage(`{"a":"\\","b":"\u0000"}`)}, fe{"event_data": `must not contain the escaped NUL character \u0000`}},
		{"event_data with a lone high surrogate", map[string]any{"event_data": json.RawMessage(`{"a":"\ud800"}`)}, fe{"event_data": `must not contain an unpaired UTF-16 surrogate escape such as \ud800`}},
		{"event_data with a lone low surrogate", map[string]any{"event_data": json.RawMessage(`{"a":"\uDC00"}`)}, fe{"event_data": `must not contain an unpaired UTF-16 surrogate escape such as \ud800`}},
		{"event_data with a high surrogate before a letter", map[string]any{"event_data": json.RawMessage(`{"a":"\ud800\u0041"}`)}, fe{"event_data": `must not contain an unpaired UTF-16 surrogate escape such as \ud800`}},
		{"event_data with two high surrogates", map[string]any{"event_data": json.RawMessage(`{"a":"\ud800\ud800\udc00"}`)}, fe{"event_data": `must not contain an unpaired UTF-16 surrogate escape such as \ud800`}},
		{"event_data with a lone surrogate in a key", map[string]any{"event_data": json.RawMessage(`{"\udbff":1}`)}, fe{"event_data": `must not contain an unpaired UTF-16 surrogate escape such as \ud800`}},
		{"event_data with a surrogate pair", map[string]any{"event_data": json.RawMessage(`{"a":"\uD83D\uDE00 \ud800\udc00"}`)}, nil},
		{"event_data with the text backslash-ud800", map[string]any{"event_data": json.RawMessage(`{"a":"\\ud800"}`)}, nil},
		{"event_data with invalid UTF-8", map[string]any{"event_data": json.RawMessage("{\"a\":\"\xff\"}")}, fe{"event_data": "must be valid UTF-8"}},
		{"event_data with a number out of range", map[string]any{"event_data": json.RawMessage(`{"a":[1e131072]}`)}, fe{"event_data": "holds a number outside PostgreSQL's numeric range"}},
		{"event_data with a zero of huge exponent", map[string]any{"event_data": json.RawMessage(`{"a":0e999999}`)}, nil},
		// Optional strings.
		{"actor_type 51 characters", map[string]any{"actor_type": strings.Repeat("a", 51)}, fe{"actor_type": "must be at most 50 characters, got 51"}},
		{"actor_type a number", map[string]any{"actor_type": 1}, fe{"actor_type": mustBeString}},
		{"actor_id 256 characters", map[string]any{"actor_id": strings.Repeat("a", 256)}, fe{"actor_id": "must be at most 255 characters, got 256"}},
		{"actor_ip not an address", map[string]any{"actor_ip": "10.0.0"}, fe{"actor_ip": "must be an IPv4 or IPv6 address"}},
		{"actor_ip a host name", map[string]any{"actor_ip": "localhost"}, fe{"actor_ip": "must be an IPv4 or IPv6 address"}},
		{"actor_ip 46 characters", map[string]any{"actor_ip": strings.Repeat("1", 46)}, fe{"actor_ip": "must be at most 45 characters, got 46"}},
		{"actor_ip IPv4", map[string]any{"actor_ip": "192.168.0.1"}, nil},
		{"actor_ip IPv4-mapped IPv6 of 45 characters", map[string]any{"actor_ip": "0000:0000:0000:0000:0000:ffff:192.168.100.228"}, nil},
		{"resource_type 101 characters", map[string]any{"resource_type": strings.Repeat("r", 101)}, fe{"resource_type": "must be at most 100 characters, got 101"}},
		{"resource_id 256 characters", map[string]any{"resource_id": strings.Repeat("r", 256)}, fe{"resource_id": "must be at most 255 characters, got 256"}},
		{"namespace 253 characters", map[string]any{"namespace": strings.Repeat("n", 253)}, nil},
		{"namespace 254 characters", map[string]any{"namespace": strings.Repeat("n", 254)}, fe{"namespace": "must be at most 253 characters, got 254"}},
		{"cluster_id 256 characters", map[string]any{"cluster_id": strings.Repeat("c", 256)}, fe{"cluster_id": "must be at most 255 characters, got 256"}},
		{"severity 21 characters", map[string]any{"severity": strings.Repeat("s", 21)}, fe{"severity": "must be at most 20 characters, got 21"}},
		{"severity a number", map[string]any{"severity": 5}, fe{"severity": mustBeString}},
		{"error_code 51 characters", map[string]any{"error_code": strings.Repeat("e", 51)}, fe{"error_code": "must be at most 50 characters, got 51"}},
		{"error_message 64 KiB characters", map[string]any{"error_message": strings.Repeat("é", 64<<10)}, nil},
		{"error_message 64 KiB + 1 characters", map[string]any{"error_message": strings.Repeat("e", 64<<10+1)}, fe{"error_message": "must be at most 65536 characters, got 65537"}},
		{"error_message with NUL", map[string]any{"error_message": "\u0000"}, fe{"error_message": "must not contain the NUL character"}},
		// UUIDs.
		{"event_id not a UUID", map[string]any{"event_id": "not-a-uuid"}, fe{"event_id": "must be a UUID like 0192f3c4-5a6b-7c8d-9e0f-1a2b3c4d5e6f"}},
		{"event_id without hyphens", map[string]any{"event_id": "0192f3c45a6b7c8d9e0f1a2b3c4d5e6f"}, fe{"event_id": "must be a UUID like 0192f3c4-5a6b-7c8d-9e0f-1a2b3c4d5e6f"}},
		{"event_id in braces", map[string]any{"event_id": "{0192f3c4-5a6b-7c8d-9e0f-1a2b3c4d5e6f}"}, fe{"event_id": "must be at most 36 characters, got 38"}},
		{"event_id as URN", map[string]any{"event_id": "urn:uuid:0192f3c4-5a6b-7c8d-9e0f-1a2b3c4d5e6f"}, fe{"event_id": "must be at most 36 characters, got 45"}},
		{"event_id with bad hex", map[string]any{"event_id": "0192f3c4-5a6b-7c8d-9e0f-1a2b3c4d5e6g"}, fe{"event_id": "must be a UUID like 0192f3c4-5a6b-7c8d-9e0f-1a2b3c4d5e6f"}},
		{"event_id nil UUID", map[string]any{"event_id": "00000000-0000-0000-0000-000000000000"}, fe{"event_id": "must not be the nil UUID"}},
		{"event_id a number", map[string]any{"event_id": 7}, fe{"event_id": mustBeString}},
		{"parent_event_id not a UUID", map[string]any{"parent_event_id": "parent"}, fe{"parent_event_id": "must be a UUID like 0192f3c4-5a6b-7c8d-9e0f-1a2b3c4d5e6f"}},
		{"parent_event_id is the event itself", map[string]any{
			"event_id":        "0192f3c4-5a6b-7c8d-9e0f-1a2b3c4d5e6f",
			"parent_event_id": "0192f3c4-5a6b-7c8d-9e0f-1a2b3c4d5e6f",
		}, fe{"parent_event_id": "must not be the event's own event_id"}},
		// Integers.
		{"duration_ms a string", map[string]any{"duration_ms": "5"}, fe{"duration_ms": "must be an integer"}},
		{"duration_ms a fraction", map[string]any{"duration_ms": 1.5}, fe{"duration_ms": "must be an integer"}},
		{"duration_ms an exponent", map[string]any{"duration_ms": json.RawMessage(`1e3`)}, fe{"duration_ms": "must be an integer"}},
		{"duration_ms beyond int64", map[string]any{"duration_ms": json.RawMessage(`99999999999999999999`)}, fe{"duration_ms": "must be an integer"}},
		{"duration_ms negative", map[string]any{"duration_ms": -1}, fe{"duration_ms": "must be between 0 and 2147483647"}},
		{"duration_ms zero", map[string]any{"duration_ms": 0}, nil},
		{"duration_ms over int32", map[string]any{"duration_ms": 2147483648}, fe{"duration_ms": "must be between 0 and 2147483647"}},
		{"retention_days zero", map[string]any{"retention_days": 0}, fe{"retention_days": "must be between 1 and 2555"}},
		{"retention_days 2555", map[string]any{"retention_days": 2555}, nil},
		{"retention_days 2556", map[string]any{"retention_days": 2556}, fe{"retention_days": "must be between 1 and 2555"}},
		{"retention_days a boolean", map[string]any{"retention_days": true}, fe{"retention_days": "must be an integer"}},
		// Booleans.
		{"is_sensitive a string", map[string]any{"is_sensitive": "true"}, fe{"is_sensitive": "must be a boolean"}},
		{"is_sensitive a number", map[string]any{"is_sensitive": 1}, fe{"is_sensitive": "must be a boolean"}},
		{"is_sensitive false", map[string]any{"is_sensitive": false}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, got := decodeOne(t, tt.overrides)
			if tt.want == nil {
				assert.Empty(t, got)
				return
			}
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestDecodeOneRefusesInvalidUTF8InStringFields(t *testing.T) {
	t.Parallel()
	for _, field := range []string{"version", "event_type", "correlation_id", "actor_id", "namespace", "error_message"} {
		for _, raw := range []string{"\"a\xffb\"", "\"\\n\xc3\"", "\"\xed\xa0\x80\""} {
			body := strings.Replace(validBody(t, map[string]any{field: "PLACEHOLDER"}), `"PLACEHOLDER"`, raw, 1)
			ev, fe, err := validator().DecodeOne([]byte(body))
			require.NoError(t, err)
			assert.Nil(t, ev)
			assert.Equal(t, audit.FieldErrors{field: "must be valid UTF-8"}, fe, "%s = %q", field, raw)
		}
	}
}

func TestDecodeOneReportsAllFieldErrorsAtOnce(t *testing.T) {
	t.Parallel()
	ev, fe, err := validator().DecodeOne([]byte(`{"version": 1, "event_category": "nope", "duration_ms": -5, "actor_ip": "x", "is_sensitive": "y"}`))
	require.NoError(t, err)
	assert.Nil(t, ev)
	assert.Equal(t, audit.FieldErrors{
		"version":         "must be a string",
		"event_type":      "is required",
		"event_timestamp": "is required",
		"event_category":  "must be one of " + strings.Join(audit.Categories, ", "),
		"event_action":    "is required",
		"event_outcome":   "is required",
		"correlation_id":  "is required",
		"event_data":      "is required and must be a JSON object",
		"duration_ms":     "must be between 0 and 2147483647",
		"actor_ip":        "must be an IPv4 or IPv6 address",
		"is_sensitive":    "must be a boolean",
	}, fe)
}

// nested returns an event_data object nested depth levels deep, counting
// the object itself as 1, alternating objects and arrays.
func nested(depth int) string {
	var b strings.Builder
	b.WriteString(`{"l1":`)
	for i := 2; i <= depth; i++ {
		if i%2 == 0 {
			b.WriteString(`[`)
		} else {
			fmt.Fprintf(&b, `{"l%d":`, i)
		}
	}
	b.WriteString(`"leaf"`)
	for i := depth; i >= 2; i-- {
		if i%2 == 0 {
			b.WriteString(`]`)
		} else {
			b.WriteString(`}`)
		}
	}
	b.WriteString(`}`)
	return b.String()
}

func TestDecodeOneLimitsEventDataNesting(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		data    string
		wantErr string
	}{
		{"depth 1", `{"a":1}`, ""},
		{"depth 9", nested(9), ""},
		{"depth 10", nested(10), ""},
		{"depth 11", nested(11), "must not nest deeper than 10 levels, got 11"},
		{"depth 30", nested(30), "must not nest deeper than 10 levels, got 30"},
		{"depth 10 beside a shallow branch", `{"x":[[[]]],"y":` + nested(9) + `}`, ""},
		{"brackets inside strings do not count", `{"a":"[[[[[[[[[[[[{{{{{{{{{{{{","b":"\"[[[[[[[[[[[["}`, ""},
		{"escaped backslash ends before a quote", `{"a":"\\","b":` + nested(10) + `}`, "must not nest deeper than 10 levels, got 11"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.True(t, json.Valid([]byte(tt.data)), tt.data)
			_, fe := decodeOne(t, map[string]any{"event_data": json.RawMessage(tt.data)})
			if tt.wantErr == "" {
				assert.Empty(t, fe)
				return
			}
			assert.Equal(t, audit.FieldErrors{"event_data": tt.wantErr}, fe)
		})
	}
	assert.Equal(t, 10, audit.MaxDataDepth)
}

// dataOfSize returns an event_data object of exactly n bytes.
func dataOfSize(n int) string {
	const frame = `{"pad":""}`
	return `{"pad":"` + strings.Repeat("x", n-len(frame)) + `"}`
}

func TestDecodeOneLimitsEventDataTo256KiBEncoded(t *testing.T) {
	t.Parallel()
	require.Equal(t, 256<<10, audit.MaxDataBytes)
	tests := []struct {
		name    string
		data    string
		wantErr string
	}{
		{"256 KiB less one", dataOfSize(256<<10 - 1), ""},
		{"exactly 256 KiB", dataOfSize(256 << 10), ""},
		{"256 KiB plus one", dataOfSize(256<<10 + 1), "must be at most 262144 bytes encoded, got 262145"},
		{"1 MiB", dataOfSize(1 << 20), "must be at most 262144 bytes encoded, got 1048576"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Len(t, tt.data, len(tt.data))
			ev, fe := decodeOne(t, map[string]any{"event_data": json.RawMessage(tt.data)})
			if tt.wantErr == "" {
				require.Empty(t, fe)
				assert.Len(t, ev.Data, len(tt.data))
				return
			}
			assert.Equal(t, audit.FieldErrors{"event_data": tt.wantErr}, fe)
		})
	}
}

func TestDecodeOneBoundsEventDataWrittenOutInFull(t *testing.T) {
	t.Parallel()
	// 1e131071 is 8 bytes of JSON and 131,072 digits in stored (canonical)
	// form: one fits in 256 KiB, two do not (issue 18 item 6 sent seven).
	numbers := func(n int) string {
		return `{"n":[` + strings.TrimSuffix(strings.Repeat(`1e131071,`, n), ",") + `]}`
	}
	_, fe := decodeOne(t, map[string]any{"event_data": json.RawMessage(numbers(1))})
	assert.Empty(t, fe)
	_, fe = decodeOne(t, map[string]any{"event_data": json.RawMessage(numbers(2))})
	assert.Equal(t, audit.FieldErrors{"event_data": "must be at most 262144 bytes in stored form (numbers written out in full, keys sorted, strings escaped), got 262153"}, fe)
	_, fe = decodeOne(t, map[string]any{"event_data": json.RawMessage(numbers(7))})
	assert.Equal(t, audit.FieldErrors{"event_data": "must be at most 262144 bytes in stored form (numbers written out in full, keys sorted, strings escaped), got 917518"}, fe)
	_, fe = decodeOne(t, map[string]any{"event_data": json.RawMessage(numbers(9))})
	assert.Equal(t, audit.FieldErrors{"event_data": "must be at most 262144 bytes in stored form (numbers written out in full, keys sorted, strings escaped), got more than 1048576"}, fe)
	_, err := audit.CanonicalData([]byte(numbers(3000)))
	assert.ErrorIs(t, err, audit.ErrCanonicalTooLarge)
}

func TestDecodeBatchBoundsTheBatchsStoredEventData(t *testing.T) {
	t.Parallel()
	// Events of 200 KiB each: every one is within its own bound; a batch of
	// 200 (39 MiB) is not, and the first event past 32 MiB is named.
	const each = 200 << 10
	one := validBody(t, map[string]any{"event_data": json.RawMessage(dataOfSize(each))})
	batch := func(n int) []byte {
		return []byte("[" + strings.TrimSuffix(strings.Repeat(one+",", n), ",") + "]")
	}
	events, fe, err := validator().DecodeBatch(batch(200), 10000)
	require.NoError(t, err)
	assert.Nil(t, events)
	first := audit.MaxBatchDataBytes / each // events 0..first-1 fit
	assert.Equal(t, audit.FieldErrors{fmt.Sprintf("[%d].event_data", first): "the batch's event_data exceeds 32 MiB in stored form from this event on; send fewer events per batch"}, fe)

	events, fe, err = validator().DecodeBatch(batch(first), 10000)
	require.NoError(t, err)
	assert.Empty(t, fe)
	assert.Len(t, events, first)
}

func TestDecodeOneRefusesBodiesThatAreNotOneJSONObject(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		body       string
		wantErr    error
		wantOffset int64
	}{
		{"empty", "", nil, 0},
		{"only white space", " \n\t", nil, 3},
		{"truncated object", `{"version":"1"`, nil, 14},
		{"missing value", `{"version":}`, nil, 12},
		{"trailing comma", `{"a":1,}`, nil, 8},
		{"trailing garbage", `{"a":1} x`, nil, 9},
		{"leading white space counts in the offset", "  \r\n{\"a\":}", nil, 10},
		{"non-JSON white space", "\v{}", nil, 1},
		{"no-break space", "\u00a0{}", nil, 1},
		{"an array", `[{}]`, audit.ErrNotObject, 0},
		{"a string", `"{}"`, audit.ErrNotObject, 0},
		{"null", `null`, audit.ErrNotObject, 0},
		{"a number", ` 42 `, audit.ErrNotObject, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ev, fe, err := validator().DecodeOne([]byte(tt.body))
			assert.Nil(t, ev)
			assert.Nil(t, fe)
			if tt.wantErr != nil {
				assert.ErrorIs(t, err, tt.wantErr)
				return
			}
			var se *audit.SyntaxError
			require.ErrorAs(t, err, &se)
			assert.Equal(t, tt.wantOffset, se.Offset)
			assert.Contains(t, se.Error(), fmt.Sprintf("request body is not valid JSON (at byte %d): ", tt.wantOffset))
			var jse *json.SyntaxError
			assert.ErrorAs(t, err, &jse, "unwraps to the json error")
		})
	}
}

func TestDecodeOneAcceptsJSONWhiteSpaceAroundTheObject(t *testing.T) {
	t.Parallel()
	ev, fe, err := validator().DecodeOne([]byte(" \t\r\n" + validBody(t, nil) + "\n\n"))
	require.NoError(t, err)
	require.Empty(t, fe)
	assert.Equal(t, "rr-1", ev.CorrelationID)
}

func batchBody(t *testing.T, elems ...any) string {
	t.Helper()
	parts := make([]string, len(elems))
	for i, e := range elems {
		switch e := e.(type) {
		case string:
			parts[i] = e
		case map[string]any:
			parts[i] = validBody(t, e)
		default:
			t.Fatalf("batchBody: %T", e)
		}
	}
	return "[" + strings.Join(parts, ",") + "]"
}

func TestDecodeBatchReturnsEventsInInputOrderWithDistinctIDs(t *testing.T) {
	t.Parallel()
	var elems []any
	for i := range 50 {
		elems = append(elems, map[string]any{"correlation_id": fmt.Sprintf("c-%d", i)})
	}
	sent := "0192f3c4-5a6b-7c8d-9e0f-1a2b3c4d5e6f"
	elems[7] = map[string]any{"correlation_id": "c-7", "event_id": sent}
	events, fe, err := validator().DecodeBatch([]byte(batchBody(t, elems...)), 50)
	require.NoError(t, err)
	require.Empty(t, fe)
	require.Len(t, events, 50)
	ids := map[uuid.UUID]bool{}
	for i, ev := range events {
		assert.Equal(t, fmt.Sprintf("c-%d", i), ev.CorrelationID)
		assert.Equal(t, "gateway-service", ev.ActorID, "defaults applied")
		assert.False(t, ids[ev.ID])
		ids[ev.ID] = true
		if i == 7 {
			assert.Equal(t, sent, ev.ID.String())
			assert.False(t, ev.ServerID())
		} else {
			assert.Equal(t, uuid.Version(7), ev.ID.Version())
			assert.True(t, ev.ServerID())
		}
	}
}

func TestDecodeBatchIsAllOrNothingAndKeysErrorsByIndex(t *testing.T) {
	t.Parallel()
	body := batchBody(t,
		map[string]any{},
		map[string]any{"event_type": absent, "event_outcome": "maybe"},
		`5`,
		map[string]any{},
		`null`,
		`"text"`,
		`[]`,
		map[string]any{"event_data": json.RawMessage(nested(11)), "retention_days": 0},
		map[string]any{"event_timestamp": "2026-11-22T12:00:00Z"},
	)
	events, fe, err := validator().DecodeBatch([]byte(body), 100)
	require.NoError(t, err)
	assert.Nil(t, events)
	assert.Equal(t, audit.FieldErrors{
		"[1].event_type":      "is required",
		"[1].event_outcome":   "must be one of success, failure, pending",
		"[2]":                 "must be a JSON object",
		"[4]":                 "must be a JSON object",
		"[5]":                 "must be a JSON object",
		"[6]":                 "must be a JSON object",
		"[7].event_data":      "must not nest deeper than 10 levels, got 11",
		"[7].retention_days":  "must be between 1 and 2555",
		"[8].event_timestamp": "must not be more than 1h0m0s in the future",
	}, fe)
}

func TestDecodeBatchOfManyElementsKeepsOrderAndEveryError(t *testing.T) {
	t.Parallel()
	elems := make([]any, 300)
	for i := range elems {
		elems[i] = map[string]any{"correlation_id": fmt.Sprintf("rr-%03d", i)}
	}
	body := batchBody(t, elems...)
	events, fe, err := validator().DecodeBatch([]byte(body), 1000)
	require.NoError(t, err)
	require.Empty(t, fe)
	require.Len(t, events, 300)
	for i, e := range events {
		assert.Equal(t, fmt.Sprintf("rr-%03d", i), e.CorrelationID)
	}

	want := audit.FieldErrors{}
	for _, i := range []int{0, 63, 64, 65, 130, 257, 299} {
		elems[i] = map[string]any{"event_outcome": "maybe", "correlation_id": fmt.Sprintf("rr-%03d", i)}
		want[fmt.Sprintf("[%d].event_outcome", i)] = "must be one of success, failure, pending"
	}
	elems[128] = `7`
	want["[128]"] = "must be a JSON object"
	events, fe, err = validator().DecodeBatch([]byte(batchBody(t, elems...)), 1000)
	require.NoError(t, err)
	assert.Nil(t, events)
	assert.Equal(t, want, fe)
}

func TestDecodeBatchBoundsTheNumberOfEvents(t *testing.T) {
	t.Parallel()
	three := batchBody(t, map[string]any{}, map[string]any{}, map[string]any{})
	events, fe, err := validator().DecodeBatch([]byte(three), 3)
	require.NoError(t, err)
	require.Empty(t, fe)
	assert.Len(t, events, 3, "exactly the maximum is accepted")

	events, fe, err = validator().DecodeBatch([]byte(three), 2)
	assert.Nil(t, events)
	assert.Nil(t, fe)
	var tooLarge *audit.BatchTooLargeError
	require.ErrorAs(t, err, &tooLarge)
	assert.Equal(t, audit.BatchTooLargeError{Got: 3, Max: 2}, *tooLarge)
	assert.Equal(t, "batch holds 3 events; the maximum is 2", err.Error())

	// The size is checked before validation: invalid elements do not hide it.
	_, fe, err = validator().DecodeBatch([]byte(`[1,2,3]`), 2)
	assert.Nil(t, fe)
	require.ErrorAs(t, err, &tooLarge)
}

func TestDecodeBatchRefusesBodiesThatAreNotANonEmptyArray(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		body       string
		wantErr    error
		wantOffset int64
	}{
		{"empty array", `[]`, audit.ErrEmptyBatch, 0},
		{"empty array with white space", " [ \n ] ", audit.ErrEmptyBatch, 0},
		{"an object", validBody(t, nil), audit.ErrNotArray, 0},
		{"null", `null`, audit.ErrNotArray, 0},
		{"a string", `"[]"`, audit.ErrNotArray, 0},
		{"a number", `1`, audit.ErrNotArray, 0},
		{"empty", ``, nil, 0},
		{"truncated", `[{"a":1}`, nil, 8},
		{"missing value", `[{"a":}]`, nil, 7},
		{"trailing comma", `[{},]`, nil, 5},
		{"leading white space counts in the offset", "\n\n  [1,,2]", nil, 8},
		{"garbage", `not json`, nil, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			events, fe, err := validator().DecodeBatch([]byte(tt.body), 10)
			assert.Nil(t, events)
			assert.Nil(t, fe)
			if tt.wantErr != nil {
				assert.ErrorIs(t, err, tt.wantErr)
				return
			}
			var se *audit.SyntaxError
			require.ErrorAs(t, err, &se)
			assert.Equal(t, tt.wantOffset, se.Offset)
		})
	}
	assert.Equal(t, "request body must contain at least one audit event", audit.ErrEmptyBatch.Error())
	assert.Equal(t, "request body must be a JSON array of audit events", audit.ErrNotArray.Error())
	assert.Equal(t, "request body must be a JSON object", audit.ErrNotObject.Error())
}

func TestDecodeBatchJudgesEveryTimestampAgainstOneClock(t *testing.T) {
	t.Parallel()
	calls := 0
	v := validator()
	v.Now = func() time.Time {
		// A clock that jumps back two hours after its first reading: read
		// again, it would put 10:30 more than an hour in the future.
		calls++
		if calls == 1 {
			return testNow
		}
		return testNow.Add(-2 * time.Hour)
	}
	body := batchBody(t, map[string]any{"event_timestamp": "2026-11-22T10:30:00Z"}, map[string]any{"event_timestamp": "2026-11-22T10:30:00Z"})
	events, fe, err := v.DecodeBatch([]byte(body), 10)
	require.NoError(t, err)
	require.Empty(t, fe)
	assert.Len(t, events, 2)
}

func TestValidatorWithoutClockUsesTheWallClock(t *testing.T) {
	t.Parallel()
	v := &audit.Validator{MaxAge: time.Hour, MaxSkew: time.Minute}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	ev, fe, err := v.DecodeOne([]byte(validBody(t, map[string]any{"event_timestamp": now})))
	require.NoError(t, err)
	require.Empty(t, fe)
	assert.Equal(t, int32(audit.MaxRetentionDays), ev.RetentionDays)

	old := time.Now().Add(-2 * time.Hour).UTC().Format(time.RFC3339Nano)
	_, fe, err = v.DecodeOne([]byte(validBody(t, map[string]any{"event_timestamp": old})))
	require.NoError(t, err)
	assert.Equal(t, audit.FieldErrors{"event_timestamp": "must not be more than 1h0m0s in the past"}, fe)
}

func TestSyntaxErrorUnwrapsToTheDecoderError(t *testing.T) {
	t.Parallel()
	inner := errors.New("boom")
	err := &audit.SyntaxError{Offset: 3, Err: inner}
	assert.ErrorIs(t, err, inner)
	assert.Equal(t, "request body is not valid JSON (at byte 3): boom", err.Error())
}

func TestCategoriesAndOutcomesAreTheContractEnums(t *testing.T) {
	t.Parallel()
	assert.Equal(t, []string{
		"gateway", "notification", "analysis", "aiagent", "signalprocessing", "workflow",
		"workflowexecution", "orchestration", "approval", "effectiveness", "actiontype",
		"apifrontend", "security", "agentsession",
	}, audit.Categories)
	assert.Equal(t, []string{"success", "failure", "pending"}, audit.Outcomes)
	for _, c := range audit.Categories {
		ev, fe := decodeOne(t, map[string]any{"event_category": c})
		require.Empty(t, fe, c)
		assert.Equal(t, c+"-service", ev.ActorID)
		assert.Equal(t, c, ev.ResourceType)
	}
	for _, o := range audit.Outcomes {
		_, fe := decodeOne(t, map[string]any{"event_outcome": o})
		require.Empty(t, fe, o)
	}
}
