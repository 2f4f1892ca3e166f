package audit

// DecodeOne and DecodeBatch must behave exactly as the encoding/json code
// they replaced: the same events, the same field errors (keys and
// messages), the same errors. That code is kept here as the oracle of a
// differential test and a fuzz target; only validation (build), which did
// not change, is shared with the new decoder. One rule did change (issue
// 18): member names are matched exactly, no longer case-insensitively as
// encoding/json matches struct fields, and a repeated member is recorded
// for validation to refuse; refUnmarshal reads the members with
// encoding/json's token stream to hold the decoder to that.

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// refDecodeOne is DecodeOne as it was.
func (v *Validator) refDecodeOne(body []byte) (*Event, FieldErrors, error) {
	body, lead := trimJSONSpace(body)
	if len(body) == 0 || body[0] != '{' {
		if err := checkSyntax(body, lead); err != nil {
			return nil, nil, err
		}
		return nil, nil, ErrNotObject
	}
	var r request
	if err := refUnmarshal(body, &r); err != nil {
		return nil, nil, syntaxError(err, lead)
	}
	fe := FieldErrors{}
	ev := v.build(&r, "", fe, v.now())
	if len(fe) > 0 {
		return nil, fe, nil
	}
	return ev, nil, nil
}

// refDecodeBatch is DecodeBatch as it was.
func (v *Validator) refDecodeBatch(body []byte, maxItems int) ([]*Event, FieldErrors, error) {
	body, lead := trimJSONSpace(body)
	if len(body) == 0 || body[0] != '[' {
		if err := checkSyntax(body, lead); err != nil {
			return nil, nil, err
		}
		return nil, nil, ErrNotArray
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(body, &raws); err != nil {
		return nil, nil, syntaxError(err, lead)
	}
	if len(raws) == 0 {
		return nil, nil, ErrEmptyBatch
	}
	if len(raws) > maxItems {
		return nil, nil, &BatchTooLargeError{Got: len(raws), Max: maxItems}
	}
	now := v.now()
	fe := FieldErrors{}
	events := make([]*Event, 0, len(raws))
	for i, raw := range raws {
		prefix := "[" + strconv.Itoa(i) + "]"
		if len(raw) == 0 || raw[0] != '{' {
			fe[prefix] = "must be a JSON object"
			continue
		}
		var r request
		if err := refUnmarshal(raw, &r); err != nil {
			fe[prefix] = "must be a JSON object"
			continue
		}
		if ev := v.build(&r, prefix+".", fe, now); ev != nil {
			events = append(events, ev)
		}
	}
	if len(fe) > 0 {
		return nil, fe, nil
	}
	return events, nil, nil
}

// refUnmarshal decodes the JSON object b into r: each member whose decoded
// name is exactly a json tag of request goes to that field's
// UnmarshalJSON; a name seen before is added to r.dups.
func refUnmarshal(b []byte, r *request) error {
	if err := json.Unmarshal(b, new(json.RawMessage)); err != nil {
		return err // syntax: the same error encoding/json always gave
	}
	fields := map[string]any{}
	rv := reflect.ValueOf(r).Elem()
	for i := range rv.NumField() {
		if tag := rv.Type().Field(i).Tag.Get("json"); tag != "" {
			fields[tag] = rv.Field(i).Addr().Interface()
		}
	}
	seen := map[string]bool{}
	dec := json.NewDecoder(bytes.NewReader(b))
	if _, err := dec.Token(); err != nil {
		return err
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		name := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return err
		}
		f, known := fields[name]
		if !known {
			continue
		}
		if seen[name] {
			r.dups = append(r.dups, name)
		}
		seen[name] = true
		if err := json.Unmarshal(raw, f); err != nil {
			return err
		}
	}
	return nil
}

func (p *jbool) UnmarshalJSON(b []byte) error {
	p.set = true
	switch string(b) {
	case "true":
		p.v = true
	case "false", "null":
	default:
		p.wrongType = true
	}
	return nil
}

// UnmarshalJSON leaves every check of event_data to validation, as before:
// it claims escapes and non-ASCII bytes so that both are looked for, and
// measures the depth with the old separate pass.
func (r *jraw) UnmarshalJSON(b []byte) error {
	r.set = true
	if string(b) == "null" {
		r.null = true
		return nil
	}
	r.v = append(json.RawMessage(nil), b...)
	r.depth, r.uesc, r.nonASCII = refDepth(r.v), true, true
	return nil
}

// refDepth returns the deepest nesting of objects and arrays in a valid JSON value.
func refDepth(b []byte) int {
	max, cur, inStr, esc := 0, 0, false, false
	for _, ch := range b {
		switch {
		case esc:
			esc = false
		case inStr:
			if ch == '\\' {
				esc = true
			} else if ch == '"' {
				inStr = false
			}
		case ch == '"':
			inStr = true
		case ch == '{' || ch == '[':
			cur++
			if cur > max {
				max = cur
			}
		case ch == '}' || ch == ']':
			cur--
		}
	}
	return max
}

// decodeSeeds are request bodies that exercise the decoder's corners.
var decodeSeeds = []string{
	benchEvent,
	`{}`, ` {} `, `[]`, `[{}]`, `"x"`, `null`, `1`, `{`, `{"version":}`, `{} {}`, ``,
	`{"version":"1.0","event_type":"t","event_timestamp":"2026-11-22T09:30:00Z","event_category":"gateway",` +
		`"event_action":"a","event_outcome":"success","correlation_id":"c","event_data":{}}`,
	`{"VERSION":"1","Event_Type":"t","event_ſtatus":1,"ſeverity":"low","\u0065vent_id":"x","is_ſensitive":true}`,
	`{"correlation_id":"A","Correlation_ID":"B","correlation\u005fid":"C","ev\u0065nt_id":"x","event_id":"y"}`,
	`{"event_type":"a\ud800b","actor_id":"\udc00","namespace":"\ud83d\ude00","severity":"\ud800\ud800","error_code":"\ud800\u0041"}`,
	`{"event_timestamp":"2026-11-22T09:00:00+24:00"}`, `{"event_timestamp":"2026-11-22T09:00:00+23:60"}`,
	`{"event_timestamp":"2026-11-22T09:00:00,5Z"}`, `{"event_timestamp":"2026-11-22T09:00:00-23:59"}`,
	`{"parent_event_date":1,"parent_event_date":2}`,
	`{"version":1,"version":"1","duration_ms":null,"duration_ms":5,"is_sensitive":true,"is_sensitive":false}`,
	`{"event_data":null,"event_data":{"a":1}}`, `{"event_data":{"a":1},"event_data":"s"}`,
	`{"event_data":[1],"retention_days":1.5,"duration_ms":"5","is_sensitive":"yes"}`,
	`{"event_data":{"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":{"i":{"j":{}}}}}}}}}}}}`,
	`{"event_data":{"s":"\u0000"},"error_message":"line\nnext \"q\" \u00e9 \ud83d\ude00 \ud800"}`,
	"{\"event_type\":\"\xff\",\"event_data\":{\"\xfe\":1}}", `{"event_data":{"s":"\udc00"}}`,
	`{"event_id":"00000000-0000-0000-0000-000000000000","parent_event_id":"0192f3c4-5a6b-7c8d-9e0f-1a2b3c4d5e6f"}`,
	`{"parent_event_date":"2026-01-01","unknown":{"deep":[1,2,{"x":null}]},"actor_ip":"10.0.0.1"}`,
	`{"event_data":{"n":1e999999999999},"retention_days":99999999999999999999}`,
}

func decodeValidator() *Validator {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	return &Validator{MaxAge: 7 * 24 * time.Hour, MaxSkew: time.Hour, Now: func() time.Time { return now }}
}

// sameEvents compares decoded events, except the ids the server makes up.
func sameEvents(t *testing.T, body []byte, got, want []*Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%q: %d events; the reference gives %d", body, len(got), len(want))
	}
	for i := range got {
		g, w := *got[i], *want[i]
		if g.serverID && w.serverID {
			g.ID, w.ID = uuid.Nil, uuid.Nil
		}
		if ref, err := refCanonicalData(g.Data); err != nil || string(ref) != string(g.canonData) {
			t.Fatalf("%q: canonical event_data %q; the reference gives %q, %v", body, g.canonData, ref, err)
		}
		if !reflect.DeepEqual(g, w) {
			t.Fatalf("%q: event\n%+v\nthe reference gives\n%+v", body, g, w)
		}
	}
}

func sameErrors(t *testing.T, body []byte, fe, wantFE FieldErrors, err, wantErr error) {
	t.Helper()
	if !reflect.DeepEqual(fe, wantFE) {
		t.Fatalf("%q: field errors %v; the reference gives %v", body, fe, wantFE)
	}
	if (err == nil) != (wantErr == nil) || err != nil &&
		(reflect.TypeOf(err) != reflect.TypeOf(wantErr) || err.Error() != wantErr.Error()) {
		t.Fatalf("%q: error %T %v; the reference gives %T %v", body, err, err, wantErr, wantErr)
	}
	var se, wse *SyntaxError
	if errors.As(err, &se) && errors.As(wantErr, &wse) && se.Offset != wse.Offset {
		t.Fatalf("%q: syntax error at %d; the reference says %d", body, se.Offset, wse.Offset)
	}
}

func checkDecode(t *testing.T, body []byte) {
	t.Helper()
	v := decodeValidator()
	ev, fe, err := v.DecodeOne(body)
	wev, wfe, werr := v.refDecodeOne(body)
	sameErrors(t, body, fe, wfe, err, werr)
	if (ev == nil) != (wev == nil) {
		t.Fatalf("%q: event %v; the reference gives %v", body, ev, wev)
	}
	if ev != nil {
		sameEvents(t, body, []*Event{ev}, []*Event{wev})
	}
	for _, batch := range [][]byte{body, []byte("[" + string(body) + "," + string(body) + "]")} {
		for _, maxItems := range []int{1, 2, 3} {
			evs, fe, err := v.DecodeBatch(batch, maxItems)
			wevs, wfe, werr := v.refDecodeBatch(batch, maxItems)
			sameErrors(t, batch, fe, wfe, err, werr)
			sameEvents(t, batch, evs, wevs)
		}
	}
}

func TestDecodeMatchesReference(t *testing.T) {
	t.Parallel()
	for _, s := range decodeSeeds {
		checkDecode(t, []byte(s))
	}
	for _, s := range canonicalSeeds {
		for _, body := range []string{s, `{"event_data":` + s + `}`, strings.Replace(benchEvent, `"event_data":`, `"event_data":`+s+`,"x":`, 1)} {
			checkDecode(t, []byte(body))
		}
	}
}

func FuzzDecodeMatchesReference(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	for _, s := range canonicalSeeds {
		if len(s) < 4096 {
			f.Add([]byte(`{"event_data":` + s + `}`))
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkDecode(t, body)
	})
}
