package audit_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
)

func TestNormalizeNumberWritesNumbersAsPostgreSQLNumericDoes(t *testing.T) {
	t.Parallel()
	zeros := strings.Repeat
	tests := []struct {
		name, in, want string
	}{
		{"zero", "0", "0"},
		{"positive integer", "42", "42"},
		{"negative integer", "-42", "-42"},
		{"integer longer than int64", "123456789012345678901234567890", "123456789012345678901234567890"},
		{"negative integer longer than int64", "-98765432109876543210987654321", "-98765432109876543210987654321"},
		{"negative zero loses its sign", "-0", "0"},
		{"negative zero with fraction keeps its scale", "-0.00", "0.00"},
		{"zero with fraction keeps its scale", "0.0", "0.0"},
		{"fraction", "3.14159", "3.14159"},
		{"negative fraction", "-0.5", "-0.5"},
		{"fraction keeps trailing zeros", "1.50", "1.50"},
		{"negative fraction keeps trailing zeros", "-2.500", "-2.500"},
		{"exponent e", "1e2", "100"},
		{"exponent E", "1E2", "100"},
		{"exponent e+", "1e+2", "100"},
		{"exponent E+", "1E+2", "100"},
		{"exponent e-", "1e-2", "0.01"},
		{"exponent E-", "1E-2", "0.01"},
		{"exponent zero", "1e0", "1"},
		{"exponent minus zero", "7e-0", "7"},
		{"exponent zero keeps fraction", "1.0e0", "1.0"},
		{"exponent with leading zeros", "1e002", "100"},
		{"exponent with more leading zeros than numeric_in's digit limit", "1e0000000000001", "10"},
		{"exponent shifts trailing zero into the integer", "1.50e1", "15.0"},
		{"exponent consumes the whole fraction", "12.345e3", "12345"},
		{"exponent beyond the fraction appends zeros", "12.345e5", "1234500"},
		{"exponent inside the fraction", "12.345e2", "1234.5"},
		{"negative exponent splits integer", "123e-1", "12.3"},
		{"negative exponent moves point left of digits", "1.5e-3", "0.0015"},
		{"negative number with negative exponent", "-1.5e-1", "-0.15"},
		{"negative number with positive exponent", "-2.5E+3", "-2500"},
		{"zero with negative exponent keeps scale", "0e-3", "0.000"},
		{"negative zero with negative exponent", "-0e-3", "0.000"},
		{"negative zero fraction with negative exponent", "-0.0e-1", "0.00"},
		{"zero fraction with smaller exponent", "0.00e1", "0.0"},
		{"negative zero with positive exponent", "-0e5", "0"},
		{"zero with exponent far beyond numeric range is still zero", "0e200000", "0"},
		{"zero fraction with exponent far beyond numeric range", "0.0e200000", "0"},
		{"zero with largest exponent numeric_in accepts", "0e1073741822", "0"},
		{"leading fraction zeros shifted into the integer", "0.001e3", "1"},
		{"leading fraction zeros keep the scale", "0.0010e3", "1.0"},
		{"leading fraction zeros partly shifted", "0.001e2", "0.1"},
		{"largest integer part", "1e131071", "1" + zeros("0", 131071)},
		{"largest integer part from a fraction", "0.001e131074", "1" + zeros("0", 131071)},
		{"largest integer part written out", "9" + zeros("9", 131071), "9" + zeros("9", 131071)},
		{"largest scale", "1e-16383", "0." + zeros("0", 16382) + "1"},
		{"largest scale of zero", "0e-16383", "0." + zeros("0", 16383)},
		{"largest scale written out", "0." + zeros("7", 16383), "0." + zeros("7", 16383)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := audit.NormalizeNumber(tt.in)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestNormalizeNumberRefusesNumbersOutsideNumericRange(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, in string }{
		{"integer part one digit too long by exponent", "1e131072"},
		{"integer part two digits too long by exponent", "1e131073"},
		{"integer part too long with trailing zeros", "100e131070"},
		{"integer part too long written out", "1" + strings.Repeat("0", 131072)},
		{"scale one too large by exponent", "1e-16384"},
		{"scale too large from fraction and exponent", "1.0e-16383"},
		{"scale too large with trailing zero", "10e-16384"},
		{"scale of zero too large", "0e-16384"},
		{"scale too large written out", "0." + strings.Repeat("1", 16384)},
		{"zero fraction with scale too large written out", "0." + strings.Repeat("0", 16384)},
		{"exponent at numeric_in's limit", "1e1073741823"},
		{"zero with exponent at numeric_in's limit", "0e1073741823"},
		{"negative exponent at numeric_in's limit", "1e-1073741823"},
		{"huge exponent", "1e99999999999"},
		{"huge negative exponent", "-1E-99999999999999999999"},
		{"exponent beyond int64", "1e+123456789012345678901234567890"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := audit.NormalizeNumber(tt.in)
			require.ErrorIs(t, err, audit.ErrNumberRange)
			assert.Empty(t, got)
		})
	}
}

func TestCanonicalDataIsIndependentOfSpelling(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		spellings  []string
		wantCanon  string
		wantErrIs  error
		wantAnyErr bool
	}{
		{
			name:      "keys are sorted and white space removed",
			spellings: []string{`{"b":1,"a":2}`, "{ \"a\" : 2 ,\n\t\"b\" : 1 }", `{"a":2,"b":1}`},
			wantCanon: `{"a":2,"b":1}`,
		},
		{
			name:      "keys sort by bytes, not by length as jsonb stores them",
			spellings: []string{`{"bb":1,"a":2,"c":3}`, `{"a": 2, "c": 3, "bb": 1}`},
			wantCanon: `{"a":2,"bb":1,"c":3}`,
		},
		{
			name:      "string escapes are resolved",
			spellings: []string{`{"s":"caf\u00e9 a\/b"}`, `{"s": "café a/b"}`, `{"s":"caf\u00E9 a/b"}`},
			wantCanon: `{"s":"café a/b"}`,
		},
		{
			name:      "surrogate pairs are resolved",
			spellings: []string{`{"e":"\ud83d\ude00"}`, `{"e":"😀"}`},
			wantCanon: `{"e":"😀"}`,
		},
		{
			name:      "control characters are written one way",
			spellings: []string{`{"c":"\u000a\u0009\u001f"}`, `{"c":"\n\t\u001F"}`},
			wantCanon: `{"c":"\n\t\u001f"}`,
		},
		{
			name:      "numbers are written as numeric writes them, in nested arrays and objects",
			spellings: []string{`{"n":[1e2,[-0,[1.50e1]],{"x":0e-3}]}`, `{"n": [100, [0, [15.0]], {"x": 0.000}]}`},
			wantCanon: `{"n":[100,[0,[15.0]],{"x":0.000}]}`,
		},
		{
			name:      "duplicate keys keep the last value, as jsonb does",
			spellings: []string{`{"a":1,"a":2}`, `{"a":2}`},
			wantCanon: `{"a":2}`,
		},
		{
			name:      "literals and empty containers are kept",
			spellings: []string{`{"t":true,"f":false,"n":null,"o":{},"a":[]}`, `{"a": [], "f": false, "n": null, "o": {}, "t": true}`},
			wantCanon: `{"a":[],"f":false,"n":null,"o":{},"t":true}`,
		},
		{
			name:      "a number out of numeric's range is refused",
			spellings: []string{`{"n":[1,{"m":1e131072}]}`},
			wantErrIs: audit.ErrNumberRange,
		},
		{
			name:       "invalid JSON is refused",
			spellings:  []string{`{"a":}`, ``, `{"a":1`},
			wantAnyErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, s := range tt.spellings {
				got, err := audit.CanonicalData([]byte(s))
				switch {
				case tt.wantErrIs != nil:
					require.ErrorIs(t, err, tt.wantErrIs, s)
				case tt.wantAnyErr:
					require.Error(t, err, s)
				default:
					require.NoError(t, err, s)
					assert.Equal(t, tt.wantCanon, string(got), s)
				}
			}
		})
	}
}

func TestHasherLinkMatchesIndependentlyComputedDigests(t *testing.T) {
	t.Parallel()
	sha := func(s string) string {
		sum := sha256.Sum256([]byte(s))
		return hex.EncodeToString(sum[:])
	}
	mac := func(key, s string) string {
		m := hmac.New(sha256.New, []byte(key))
		m.Write([]byte(s))
		return hex.EncodeToString(m.Sum(nil))
	}
	prev := sha("genesis")
	tests := []struct {
		name      string
		hasher    audit.Hasher
		previous  string
		canonical string
		want      string
	}{
		// Published vectors (FIPS 180-2, RFC 4231 case 2), split between
		// previous and canonical to show they are hashed back to back.
		{"sha256 of the empty string", audit.Hasher{}, "", "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"sha256 of abc split across previous and canonical", audit.Hasher{}, "a", "bc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{"hmac-sha256 RFC 4231 case 2", audit.NewHasher([]byte("Jefe")), "what do ya ", "want for nothing?", "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
		// Computed here with crypto/sha256 and crypto/hmac.
		{"sha256 first event of a chain", audit.NewHasher(nil), "", `{"a":1}`, sha(`{"a":1}`)},
		{"sha256 later event of a chain", audit.NewHasher([]byte{}), prev, `{"a":1}`, sha(prev + `{"a":1}`)},
		{"hmac-sha256 first event of a chain", audit.NewHasher([]byte("k")), "", `{"a":1}`, mac("k", `{"a":1}`)},
		{"hmac-sha256 later event of a chain", audit.NewHasher([]byte("secret key")), prev, `{"b":"é"}`, mac("secret key", prev+`{"b":"é"}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := tt.hasher.Link(tt.previous, []byte(tt.canonical))
			assert.Equal(t, tt.want, got)
			assert.Len(t, got, 64, "hex of 32 bytes")
		})
	}
}

func TestHasherLinkDependsOnKeyPreviousAndCanonical(t *testing.T) {
	t.Parallel()
	base := audit.NewHasher([]byte("k1")).Link("p", []byte("c"))
	assert.NotEqual(t, base, audit.NewHasher([]byte("k2")).Link("p", []byte("c")), "key")
	assert.NotEqual(t, base, audit.NewHasher(nil).Link("p", []byte("c")), "no key")
	assert.NotEqual(t, base, audit.NewHasher([]byte("k1")).Link("q", []byte("c")), "previous")
	assert.NotEqual(t, base, audit.NewHasher([]byte("k1")).Link("p", []byte("d")), "canonical")
	assert.Equal(t, base, audit.NewHasher([]byte("k1")).Link("p", []byte("c")), "deterministic")
}

func TestNewHasherKeepsItsOwnCopyOfTheKey(t *testing.T) {
	t.Parallel()
	key := []byte("secret")
	h := audit.NewHasher(key)
	before := h.Link("", []byte("x"))
	copy(key, "XXXXXX")
	assert.Equal(t, before, h.Link("", []byte("x")))
}

func TestHasherAlgorithmNamesTheHashFunction(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		hasher audit.Hasher
		want   string
	}{
		{"zero value is sha256", audit.Hasher{}, "sha256"},
		{"nil key is sha256", audit.NewHasher(nil), "sha256"},
		{"empty key is sha256", audit.NewHasher([]byte{}), "sha256"},
		{"a key is hmac-sha256", audit.NewHasher([]byte("k")), "hmac-sha256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tt.want, tt.hasher.Algorithm())
		})
	}
	assert.Equal(t, "sha256", audit.AlgSHA256)
	assert.Equal(t, "hmac-sha256", audit.AlgHMACSHA256)
}

// fullEvent returns an event with every member set, so that each one shows
// up in the canonical form and in the JSON round trip.
func fullEvent() *audit.Event {
	ts := time.Date(2026, 11, 22, 10, 0, 0, 123456000, time.UTC)
	parent := uuid.MustParse("0192f3c4-5a6b-7c8d-9e0f-1a2b3c4d5e6f")
	parentDate := audit.Time(time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC))
	dur := int32(1500)
	prev := "abc"
	heldAt := audit.NewTime(ts.Add(time.Hour))
	return &audit.Event{
		ID:            uuid.MustParse("0192f3c4-0000-7000-8000-000000000001"),
		Version:       "1.0",
		Type:          "gateway.signal.received",
		Timestamp:     audit.NewTime(ts),
		Date:          audit.DateOf(ts),
		Category:      "gateway",
		Action:        "received",
		Outcome:       "success",
		CorrelationID: "rr-1",
		Data:          json.RawMessage(`{ "z": [1e2, 1.50], "a": "caf\u00e9 <b>", "event_type": "x" }`),
		ActorType:     "service",
		ActorID:       "gateway-service",
		ActorIP:       "10.0.0.1",
		ResourceType:  "Pod",
		ResourceID:    "pod-1",
		ParentID:      &parent,
		ParentDate:    &parentDate,
		Namespace:     "ns",
		ClusterID:     "c1",
		Severity:      "high",
		DurationMS:    &dur,
		ErrorCode:     "E1",
		ErrorMessage:  "boom",
		RetentionDays: 30,
		IsSensitive:   true,
		Hash:          "h",
		PreviousHash:  &prev,
		HashAlgorithm: audit.AlgSHA256,
		LegalHold:     true,
		HoldReason:    "litigation",
		HoldPlacedBy:  "alice",
		HoldPlacedAt:  &heldAt,
		CreatedAt:     audit.NewTime(ts.Add(time.Second)),
		ChainSeq:      7,
	}
}

func canonical(t *testing.T, e *audit.Event) string {
	t.Helper()
	b, err := e.Canonical()
	require.NoError(t, err)
	return string(b)
}

func TestEventCanonicalCoversEveryEventMemberInAlphabeticalOrder(t *testing.T) {
	t.Parallel()
	b, err := fullEvent().Canonical()
	require.NoError(t, err)
	dec := json.NewDecoder(strings.NewReader(string(b)))
	tok, err := dec.Token()
	require.NoError(t, err)
	require.Equal(t, json.Delim('{'), tok)
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		require.NoError(t, err)
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		require.NoError(t, dec.Decode(&skip))
	}
	assert.Equal(t, []string{
		"actor_id", "actor_ip", "actor_type", "cluster_id", "correlation_id", "duration_ms",
		"error_code", "error_message", "event_action", "event_category", "event_data",
		"event_date", "event_id", "event_outcome", "event_timestamp", "event_type",
		"is_sensitive", "namespace", "parent_event_date", "parent_event_id", "resource_id",
		"resource_type", "retention_days", "severity", "version",
	}, keys)
	assert.Contains(t, string(b), `"event_data":{"a":"café \u003cb\u003e","event_type":"x","z":[100,1.50]}`,
		"event_data in canonical form")
	assert.Contains(t, string(b), `"event_timestamp":"2026-11-22T10:00:00.123456Z"`)
	assert.Contains(t, string(b), `"event_date":"2026-11-22"`)
}

func TestEventCanonicalIsStableAcrossAJSONRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		event func() *audit.Event
	}{
		{"every member set", fullEvent},
		{"optional members absent", func() *audit.Event {
			e := fullEvent()
			e.ParentID, e.ParentDate, e.DurationMS, e.PreviousHash, e.HoldPlacedAt = nil, nil, nil, nil, nil
			e.ActorIP, e.Namespace, e.ClusterID, e.ErrorCode, e.ErrorMessage = "", "", "", "", ""
			e.IsSensitive, e.LegalHold = false, false
			return e
		}},
		{"decoded from a client request", func() *audit.Event {
			v := validator()
			ev, fe, err := v.DecodeOne([]byte(validBody(t, map[string]any{
				"event_data":      json.RawMessage(`{"b": [1E+2, -0.0], "a": "\u00e9\/"}`),
				"parent_event_id": "0192f3c4-5a6b-7c8d-9e0f-1a2b3c4d5e6f",
				"duration_ms":     12,
			})))
			require.NoError(t, err)
			require.Empty(t, fe)
			ev.ResolveParent(audit.DateOf(testNow.Add(-time.Hour)))
			return ev
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			orig := tt.event()
			want := canonical(t, orig)
			wire, err := json.Marshal(orig)
			require.NoError(t, err)
			var back audit.Event
			require.NoError(t, json.Unmarshal(wire, &back))
			assert.Equal(t, want, canonical(t, &back))
		})
	}
}

func TestEventCanonicalChangesWhenACoveredMemberChanges(t *testing.T) {
	t.Parallel()
	other := uuid.MustParse("0192f3c4-0000-7000-8000-0000000000ff")
	tests := []struct {
		name   string
		mutate func(e *audit.Event)
	}{
		{"event_id", func(e *audit.Event) { e.ID = other }},
		{"version", func(e *audit.Event) { e.Version = "1.1" }},
		{"event_type", func(e *audit.Event) { e.Type = "other" }},
		{"event_timestamp by one microsecond", func(e *audit.Event) {
			e.Timestamp = audit.NewTime(e.Timestamp.Std().Add(time.Microsecond))
		}},
		{"event_date", func(e *audit.Event) { e.Date = audit.DateOf(e.Date.Std().AddDate(0, 0, 1)) }},
		{"event_category", func(e *audit.Event) { e.Category = "workflow" }},
		{"event_action", func(e *audit.Event) { e.Action = "other" }},
		{"event_outcome", func(e *audit.Event) { e.Outcome = "failure" }},
		{"correlation_id", func(e *audit.Event) { e.CorrelationID = "rr-2" }},
		{"event_data value", func(e *audit.Event) { e.Data = json.RawMessage(`{"z":[100,1.5],"a":"café <b>","event_type":"x"}`) }},
		{"event_data key", func(e *audit.Event) { e.Data = json.RawMessage(`{"Z":[100,1.50],"a":"café <b>","event_type":"x"}`) }},
		{"actor_type", func(e *audit.Event) { e.ActorType = "user" }},
		{"actor_id", func(e *audit.Event) { e.ActorID = "bob" }},
		{"actor_ip", func(e *audit.Event) { e.ActorIP = "10.0.0.2" }},
		{"resource_type", func(e *audit.Event) { e.ResourceType = "Node" }},
		{"resource_id", func(e *audit.Event) { e.ResourceID = "pod-2" }},
		{"parent_event_id", func(e *audit.Event) { e.ParentID = &other }},
		{"parent_event_id removed", func(e *audit.Event) { e.ParentID = nil }},
		{"parent_event_date", func(e *audit.Event) {
			d := audit.Time(time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC))
			e.ParentDate = &d
		}},
		{"parent_event_date removed", func(e *audit.Event) { e.ParentDate = nil }},
		{"namespace", func(e *audit.Event) { e.Namespace = "ns2" }},
		{"cluster_id", func(e *audit.Event) { e.ClusterID = "c2" }},
		{"severity", func(e *audit.Event) { e.Severity = "low" }},
		{"duration_ms", func(e *audit.Event) { d := int32(1501); e.DurationMS = &d }},
		{"duration_ms zero is not absent", func(e *audit.Event) { d := int32(0); e.DurationMS = &d }},
		{"duration_ms removed", func(e *audit.Event) { e.DurationMS = nil }},
		{"error_code", func(e *audit.Event) { e.ErrorCode = "E2" }},
		{"error_message", func(e *audit.Event) { e.ErrorMessage = "bang" }},
		{"retention_days", func(e *audit.Event) { e.RetentionDays = 31 }},
		{"is_sensitive", func(e *audit.Event) { e.IsSensitive = false }},
	}
	base := canonical(t, fullEvent())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := fullEvent()
			tt.mutate(e)
			assert.NotEqual(t, base, canonical(t, e))
		})
	}
}

func TestEventCanonicalIgnoresHashLegalHoldAndCommitMembers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(e *audit.Event)
	}{
		{"event_hash", func(e *audit.Event) { e.Hash = "other" }},
		{"previous_event_hash", func(e *audit.Event) { p := "other"; e.PreviousHash = &p }},
		{"previous_event_hash removed", func(e *audit.Event) { e.PreviousHash = nil }},
		{"hash_algorithm", func(e *audit.Event) { e.HashAlgorithm = audit.AlgHMACSHA256 }},
		{"legal_hold", func(e *audit.Event) { e.LegalHold = false }},
		{"legal_hold_reason", func(e *audit.Event) { e.HoldReason = "" }},
		{"legal_hold_placed_by", func(e *audit.Event) { e.HoldPlacedBy = "bob" }},
		{"legal_hold_placed_at", func(e *audit.Event) { e.HoldPlacedAt = nil }},
		{"created_at", func(e *audit.Event) { e.CreatedAt = audit.NewTime(time.Now()) }},
		{"event_data spelling", func(e *audit.Event) {
			e.Data = json.RawMessage(`{"a":"café \u003cb>","event_type":"x","z":[100,15.0e-1]}`)
		}},
	}
	base := canonical(t, fullEvent())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := fullEvent()
			tt.mutate(e)
			assert.Equal(t, base, canonical(t, e))
		})
	}
}

func TestEventCanonicalRefusesEventDataItCannotRead(t *testing.T) {
	t.Parallel()
	e := fullEvent()
	e.Data = json.RawMessage(`{"n":1e131072}`)
	_, err := e.Canonical()
	require.ErrorIs(t, err, audit.ErrNumberRange)

	e = fullEvent()
	e.Data = json.RawMessage(`{"n":`)
	_, err = e.Canonical()
	require.Error(t, err)
}
