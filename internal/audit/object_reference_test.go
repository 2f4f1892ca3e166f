package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

// refDecodeObject is DecodeObject written with encoding/json's token
// stream: the oracle of a differential test and a fuzz target.
func refDecodeObject(body []byte) (map[string]json.RawMessage, map[string]bool, error) {
	if err := json.Unmarshal(body, new(json.RawMessage)); err != nil {
		return nil, nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, _ := dec.Token()
	if tok != json.Delim('{') {
		return nil, nil, ErrNotObject
	}
	obj, dups := map[string]json.RawMessage{}, map[string]bool{}
	for dec.More() {
		tok, _ := dec.Token()
		name := tok.(string)
		var raw json.RawMessage
		_ = dec.Decode(&raw)
		if _, seen := obj[name]; seen {
			dups[name] = true
		}
		obj[name] = raw
	}
	return obj, dups, nil
}

func checkDecodeObject(t *testing.T, body []byte) {
	t.Helper()
	obj, fe, err := DecodeObject(body)
	wobj, wdups, werr := refDecodeObject(body)
	if (err == nil) != (werr == nil) {
		t.Fatalf("%q: error %v; the reference gives %v", body, err, werr)
	}
	if err != nil {
		var se *SyntaxError
		if errors.Is(werr, ErrNotObject) != errors.Is(err, ErrNotObject) || !errors.Is(werr, ErrNotObject) && !errors.As(err, &se) {
			t.Fatalf("%q: error %T %v; the reference gives %v", body, err, err, werr)
		}
		return
	}
	if len(obj) != len(wobj) || len(fe) != len(wdups) {
		t.Fatalf("%q: %d members, field errors %v; the reference gives %d members, duplicates %v", body, len(obj), fe, len(wobj), wdups)
	}
	for name, raw := range wobj {
		if !bytes.Equal(obj[name], raw) {
			t.Fatalf("%q: member %q is %q; the reference gives %q", body, name, obj[name], raw)
		}
		if wdups[name] != (fe[name] == msgDuplicate) {
			t.Fatalf("%q: member %q duplicate %v; the reference says %v", body, name, fe[name], wdups[name])
		}
	}
}

var objectSeeds = []string{
	`{}`, `{"a":1}`, `{"a":1,"a":2}`, `{"a":1,"A":2}`, `{"a\u0062":1,"ab":2}`, `{"\ud800":1,"\udfff":2}`,
	"{\"\xff\":1,\"\xfe\":2}", `{"a":{"a":1,"a":2}}`, `[1]`, `"x"`, `{"a":}`, `{"a":1}x`, ` {"a" : [1, {"b":null}] } `,
	`{"correlation_id":"rr","reason":"r","reason":"s"}`, ``, `{`, `{"a":1,}`,
}

func TestDecodeObjectMatchesReference(t *testing.T) {
	t.Parallel()
	for _, s := range objectSeeds {
		checkDecodeObject(t, []byte(s))
	}
}

func FuzzDecodeObjectMatchesReference(f *testing.F) {
	for _, s := range objectSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkDecodeObject(t, body)
	})
}
