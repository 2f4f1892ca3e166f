package audit

// CanonicalData and (*Event).Canonical must give exactly the bytes that the
// encoding/json code they replaced gave: those bytes are hashed into the
// stored chains. That code is kept here as the oracle of a differential
// test and a fuzz target.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// refCanonicalEvent fixed the members an event hash covers and their order.
type refCanonicalEvent struct {
	ActorID         string          `json:"actor_id"`
	ActorIP         string          `json:"actor_ip"`
	ActorType       string          `json:"actor_type"`
	ClusterID       string          `json:"cluster_id"`
	CorrelationID   string          `json:"correlation_id"`
	DurationMS      *int32          `json:"duration_ms"`
	ErrorCode       string          `json:"error_code"`
	ErrorMessage    string          `json:"error_message"`
	EventAction     string          `json:"event_action"`
	EventCategory   string          `json:"event_category"`
	EventData       json.RawMessage `json:"event_data"`
	EventDate       Date            `json:"event_date"`
	EventID         string          `json:"event_id"`
	EventOutcome    string          `json:"event_outcome"`
	EventTimestamp  Time            `json:"event_timestamp"`
	EventType       string          `json:"event_type"`
	IsSensitive     bool            `json:"is_sensitive"`
	Namespace       string          `json:"namespace"`
	ParentEventDate *Time           `json:"parent_event_date"`
	ParentEventID   string          `json:"parent_event_id"`
	ResourceID      string          `json:"resource_id"`
	ResourceType    string          `json:"resource_type"`
	RetentionDays   int32           `json:"retention_days"`
	Severity        string          `json:"severity"`
	Version         string          `json:"version"`
}

// refCanonical is (*Event).Canonical as it was, without the cache.
func (e *Event) refCanonical() ([]byte, error) {
	data, err := refCanonicalData(e.Data)
	if err != nil {
		return nil, err
	}
	c := refCanonicalEvent{
		ActorID: e.ActorID, ActorIP: e.ActorIP, ActorType: e.ActorType, ClusterID: e.ClusterID,
		CorrelationID: e.CorrelationID, DurationMS: e.DurationMS, ErrorCode: e.ErrorCode,
		ErrorMessage: e.ErrorMessage, EventAction: e.Action, EventCategory: e.Category,
		EventData: data, EventDate: e.Date, EventID: e.ID.String(), EventOutcome: e.Outcome,
		EventTimestamp: e.Timestamp, EventType: e.Type, IsSensitive: e.IsSensitive,
		Namespace: e.Namespace, ParentEventDate: e.ParentDate, ResourceID: e.ResourceID,
		ResourceType: e.ResourceType, RetentionDays: e.RetentionDays, Severity: e.Severity,
		Version: e.Version,
	}
	if e.ParentID != nil {
		c.ParentEventID = e.ParentID.String()
	}
	return json.Marshal(c)
}

// refCanonicalData is CanonicalData as it was.
func refCanonicalData(raw []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("audit: canonical event_data: %w", err)
	}
	v, err := refNormalizeNumbers(v)
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

func refNormalizeNumbers(v any) (any, error) {
	switch x := v.(type) {
	case json.Number:
		n, err := NormalizeNumber(string(x))
		return json.Number(n), err
	case map[string]any:
		for k, e := range x {
			n, err := refNormalizeNumbers(e)
			if err != nil {
				return nil, err
			}
			x[k] = n
		}
	case []any:
		for i, e := range x {
			n, err := refNormalizeNumbers(e)
			if err != nil {
				return nil, err
			}
			x[i] = n
		}
	}
	return v, nil
}

// canonicalSeeds are event_data spellings that exercise the encoder's
// corners: order, duplicates, escapes, bad UTF-8, numbers, nesting, and
// whatever may follow the first value.
var canonicalSeeds = []string{
	`{}`, `[]`, `{"a":1}`, ` {"b":2,"a":1} `, `{"a":1,"a":2}`, `{"a":{"x":1},"a":[1]}`,
	`{"b":1,"a":1,"b":2,"a":3}`, `{"a":1e999999999999,"a":1}`, `{"a":1,"a":1e999999999999}`,
	`{"z":[1e2,1.50],"a":"caf\u00e9 <b>","event_type":"x"}`, `{"n":-0,"m":-0.00,"o":-0e5,"p":0e-3}`,
	`{"n":1E+2,"m":12.5e-1,"o":-1.0e0,"p":123456789012345678901234567890}`,
	`{"s":"\"\\\/\b\f\n\r\t\u0001\u001f\u007f<>&\u2028\u2029"}`,
	`{"s":"\ud83d\ude00 \ud83d \ude00 \ud83d\u0041 \ud800\ud800\udc00 \uDBFF\uDFFF"}`,
	"{\"s\":\"\xff\xfe bad \xc3\x28 utf8 \xe2\x82\"}", "{\"k\xff\":1,\"k\":2}",
	`{"\u0061":1,"a":2}`, `{"é":1,"e":2,"\u00e9":3}`, `{"a":[{"c":1,"b":2},{"b":[true,false,null]}]}`,
	`{"a":1} trailing`, `[1,2] x`, `1`, `1 x`, `1x`, `"s"`, `"s"x`, `true`, `truex`, `null`,
	``, ` `, `{`, `{"a":`, `{"a":1,}`, `[1,]`, `{"a" 1}`, `01`, `1.`, `-`, `1e`, `"\x"`,
	`{"a":"` + "\x01" + `"}`, `{"n":1e131072}`, `{"n":0.` + strings.Repeat("0", 16384) + `}`,
	`{"n":` + strings.Repeat("9", 131073) + `}`, strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
	strings.Repeat("[", 10000) + strings.Repeat("]", 10000), `{"a" : [ 1 , 2 ] , "b" : { } }`,
}

func checkCanonicalData(t *testing.T, data []byte) {
	t.Helper()
	want, wantErr := refCanonicalData(data)
	got, err := CanonicalData(data)
	switch {
	case errors.Is(err, ErrCanonicalTooLarge) && wantErr == nil && len(want) > MaxCanonicalDataBytes:
		// The bound is new; the reference wrote it all out.
	case (err == nil) != (wantErr == nil):
		t.Fatalf("CanonicalData(%q) = %q, %v; the reference gives %q, %v", data, got, err, want, wantErr)
	case errors.Is(wantErr, ErrNumberRange):
		// Which number is named depends on map order in the reference.
		if !errors.Is(err, ErrNumberRange) {
			t.Fatalf("CanonicalData(%q): %v; the reference gives %v", data, err, wantErr)
		}
	case wantErr != nil:
		if err.Error() != wantErr.Error() {
			t.Fatalf("CanonicalData(%q): %v; the reference gives %v", data, err, wantErr)
		}
	case string(got) != string(want):
		t.Fatalf("CanonicalData(%q) = %q; the reference gives %q", data, got, want)
	}
}

func TestCanonicalDataMatchesReference(t *testing.T) {
	t.Parallel()
	for _, s := range append(canonicalSeeds, benchEventData()) {
		checkCanonicalData(t, []byte(s))
	}
}

// benchEventData is the event_data of benchEvent.
func benchEventData() string {
	s := benchEvent[strings.Index(benchEvent, `"event_data":`)+len(`"event_data":`):]
	return s[:len(s)-1]
}

func FuzzCanonicalMatchesReference(f *testing.F) {
	for _, s := range canonicalSeeds {
		if len(s) < 4096 {
			f.Add([]byte(s), "x")
		}
	}
	f.Add([]byte(benchEventData()), "café <b>\u2028\x00\xff")
	f.Fuzz(func(t *testing.T, data []byte, s string) {
		checkCanonicalData(t, data)
		checkCanonical(t, data, s)
	})
}

// checkCanonical compares the canonical form of a whole event whose string
// members are s.
func checkCanonical(t *testing.T, data []byte, s string) {
	t.Helper()
	ts := time.Date(2026, 11, 22, 10, 0, 0, 123456000, time.UTC)
	dur, parent := int32(len(s)), uuid.UUID{1, 2, 3, byte(len(s))}
	ptime := NewTime(ts.Add(-time.Hour))
	e := &Event{
		ID: uuid.UUID{0xab, byte(len(s))}, Version: s, Type: s, Timestamp: NewTime(ts), Date: DateOf(ts),
		Category: s, Action: s, Outcome: s, CorrelationID: s, Data: data, ActorType: s, ActorID: s,
		ActorIP: s, ResourceType: s, ResourceID: s, Namespace: s, ClusterID: s, Severity: s,
		ErrorCode: s, ErrorMessage: s, RetentionDays: int32(len(data)), IsSensitive: len(s)%2 == 0,
	}
	if len(s)%3 == 0 {
		e.DurationMS, e.ParentID, e.ParentDate = &dur, &parent, &ptime
	}
	want, wantErr := e.refCanonical()
	got, err := e.Canonical()
	if errors.Is(err, ErrCanonicalTooLarge) && wantErr == nil && len(want) > MaxCanonicalDataBytes {
		return // the bound is new; the reference wrote it all out
	}
	if (err == nil) != (wantErr == nil) || string(got) != string(want) {
		t.Fatalf("Canonical() = %q, %v; the reference gives %q, %v", got, err, want, wantErr)
	}
}
