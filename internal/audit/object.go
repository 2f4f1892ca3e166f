package audit

import (
	"bytes"
	"encoding/json"
)

// DecodeObject reads a request body that must be a JSON object, for the
// small bodies that are not events (legal holds, verify-chain,
// notifications). It holds them to the rules the event decoder follows:
// member names are matched exactly as decoded (a name differing in case is
// just an unknown member, ignored per CONTRACT §0), and a name that appears
// twice is a field error naming it, since readers of the same body could
// take either occurrence. The values are returned raw, to be read with
// DecodeString or json.Unmarshal; with duplicates, the object comes back
// too (holding the last occurrence), so that the caller can report every
// fault at once.
//
// A body that is not JSON yields a *SyntaxError, one that is JSON but not an
// object ErrNotObject; both are the client's fault.
func DecodeObject(body []byte) (map[string]json.RawMessage, FieldErrors, error) {
	body, lead := trimJSONSpace(body)
	if len(body) == 0 || body[0] != '{' {
		if err := checkSyntax(body, lead); err != nil {
			return nil, nil, err
		}
		return nil, nil, ErrNotObject
	}
	obj := map[string]json.RawMessage{}
	fe := FieldErrors{}
	sc := scanner{b: body}
	ok := sc.members(func(name string, raw []byte) {
		if _, dup := obj[name]; dup {
			fe[name] = msgDuplicate
		}
		obj[name] = bytes.Clone(raw)
	})
	if !ok || sc.i != len(body) {
		return nil, nil, sc.syntaxError(lead)
	}
	if len(fe) == 0 {
		fe = nil
	}
	return obj, fe, nil
}

// DecodeString reads a member value that should be a string, with the
// checks of every string of an event: it reports what is wrong ("" when
// nothing is) for a value that is not a string, holds bytes that are not
// UTF-8, a lone UTF-16 surrogate escape or the NUL character (which
// PostgreSQL's text cannot store), or has fewer than min or more than max
// characters. A null or absent (nil) value counts as "", which min > 0
// refuses as "is required".
func DecodeString(raw json.RawMessage, min, max int) (string, string) {
	var s jstr
	if raw != nil {
		_ = s.UnmarshalJSON(raw) // never fails: every fault is a flag
	}
	fe := FieldErrors{}
	v := checker{fe: fe}.str("v", &s, min, max)
	return v, fe["v"]
}

// members reads the object at s.i, calling member with each member's
// decoded name and raw value. It reports false for a syntax error.
func (s *scanner) members(member func(name string, raw []byte)) bool {
	if s.depth++; s.depth > maxNesting {
		return false
	}
	b := s.b
	s.i = skipSpace(b, s.i+1)
	if s.i < len(b) && b[s.i] == '}' {
		s.i++
		s.depth--
		return true
	}
	var nameBuf []byte
	for {
		if s.i >= len(b) || b[s.i] != '"' {
			return false
		}
		var key strInfo
		start := s.i
		var ok bool
		if s.i, ok = scanString(b, s.i, &key); !ok {
			return false
		}
		name := b[start+1 : s.i-1]
		if key.esc || key.nonASCII {
			nameBuf = unquote(nameBuf[:0], name)
			name = nameBuf
		}
		if s.i = skipSpace(b, s.i); s.i >= len(b) || b[s.i] != ':' {
			return false
		}
		s.i = skipSpace(b, s.i+1)
		start = s.i
		if _, ok := s.value(new(valueInfo)); !ok {
			return false
		}
		member(string(name), b[start:s.i])
		if s.i = skipSpace(b, s.i); s.i >= len(b) {
			return false
		}
		switch b[s.i] {
		case ',':
			s.i = skipSpace(b, s.i+1)
		case '}':
			s.i++
			s.depth--
			return true
		default:
			return false
		}
	}
}
