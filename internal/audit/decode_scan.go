package audit

import (
	"errors"
	"strconv"
	"unicode"
	"unicode/utf8"
)

// scanner reads a request body in one pass: it checks the syntax of the
// whole body as encoding/json would, fills a request with the members it
// knows, and learns what validation needs to know about event_data (depth,
// escapes, non-ASCII bytes) on the way, so nothing reads the body twice.
type scanner struct {
	b []byte
	i int
	// depth is the nesting of the value being read; the body's own object
	// or array is 1.
	depth int
}

// valueInfo is what scanning one value learnt about it.
type valueInfo struct {
	strInfo
	// maxDepth is the deepest nesting reached, counted like scanner.depth.
	maxDepth int
}

// errScanDisagrees would mean that the scanner refused a body that
// encoding/json accepts. The fuzz tests look for such a body; none is known.
var errScanDisagrees = errors.New("the request scanner refused valid JSON")

// syntaxError returns the error for a body the scanner refused. The scanner
// only knows that and where; encoding/json words the message and counts
// the offset, so both stay what clients saw before.
func (s *scanner) syntaxError(lead int64) error {
	if err := checkSyntax(s.b, lead); err != nil {
		return err
	}
	return &SyntaxError{Offset: lead + int64(s.i), Err: errScanDisagrees}
}

// value reads any JSON value at s.i and returns its first byte ('0' for a
// number) as its kind.
func (s *scanner) value(vi *valueInfo) (kind byte, ok bool) {
	if s.i >= len(s.b) {
		return 0, false
	}
	switch c := s.b[s.i]; {
	case c == '"':
		s.i, ok = scanString(s.b, s.i, &vi.strInfo)
		return '"', ok
	case c == '{':
		return '{', s.container(vi, '}')
	case c == '[':
		return '[', s.container(vi, ']')
	case c == '-' || isDigit(c):
		s.i, ok = scanNumber(s.b, s.i)
		return '0', ok
	case c == 't' || c == 'f' || c == 'n':
		s.i, ok = scanLiteral(s.b, s.i)
		return c, ok
	}
	return 0, false
}

// container reads an object (end '}') or an array (end ']') at s.i.
func (s *scanner) container(vi *valueInfo, end byte) bool {
	if s.depth++; s.depth > maxNesting {
		return false
	}
	vi.maxDepth = max(vi.maxDepth, s.depth)
	b := s.b
	s.i = skipSpace(b, s.i+1)
	if s.i < len(b) && b[s.i] == end {
		s.i++
		s.depth--
		return true
	}
	for {
		if end == '}' {
			if s.i >= len(b) || b[s.i] != '"' {
				return false
			}
			var ok bool
			if s.i, ok = scanString(b, s.i, &vi.strInfo); !ok {
				return false
			}
			if s.i = skipSpace(b, s.i); s.i >= len(b) || b[s.i] != ':' {
				return false
			}
			s.i = skipSpace(b, s.i+1)
		}
		if _, ok := s.value(vi); !ok {
			return false
		}
		if s.i = skipSpace(b, s.i); s.i >= len(b) {
			return false
		}
		switch b[s.i] {
		case ',':
			s.i = skipSpace(b, s.i+1)
		case end:
			s.i++
			s.depth--
			return true
		default:
			return false
		}
	}
}

// request reads the object at s.i into r. It reports false for a syntax
// error; what is wrong with the members is for validation to say.
func (s *scanner) request(r *request) bool {
	if s.depth++; s.depth > maxNesting {
		return false
	}
	b := s.b
	// The string members' values go to one buffer and become one string
	// at the end: one allocation instead of one per member.
	var buf [512]byte
	arena := buf[:0]
	s.i = skipSpace(b, s.i+1)
	if s.i < len(b) && b[s.i] == '}' {
		s.i++
		s.depth--
		return true
	}
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
		if s.i = skipSpace(b, s.i); s.i >= len(b) || b[s.i] != ':' {
			return false
		}
		s.i = skipSpace(b, s.i+1)
		vi := valueInfo{maxDepth: s.depth}
		start = s.i
		kind, ok := s.value(&vi)
		if !ok {
			return false
		}
		raw := b[start:s.i]
		str, known := r.take(string(name), kind, raw, &vi, s.depth)
		if !known && (key.esc || key.nonASCII || hasUpper(name)) {
			// encoding/json also matches a member whose decoded name
			// differs from the field's only in case.
			str = r.takeFolded(name, kind, raw, &vi, s.depth)
		}
		if str != nil {
			arena = str.take(kind, raw, &vi.strInfo, arena)
		}
		if s.i = skipSpace(b, s.i); s.i >= len(b) {
			return false
		}
		switch b[s.i] {
		case ',':
			s.i = skipSpace(b, s.i+1)
		case '}':
			s.i++
			s.depth--
			r.resolve(string(arena))
			return true
		default:
			return false
		}
	}
}

// resolve gives the string members that take left in the arena their values.
func (r *request) resolve(arena string) {
	for _, s := range [...]*jstr{
		&r.Version, &r.EventType, &r.EventTimestamp, &r.EventCategory, &r.EventAction,
		&r.EventOutcome, &r.CorrelationID, &r.EventID, &r.ActorType, &r.ActorID, &r.ActorIP,
		&r.ResourceType, &r.ResourceID, &r.ParentEventID, &r.Namespace, &r.ClusterID,
		&r.Severity, &r.ErrorCode, &r.ErrorMessage,
	} {
		if s.inArena {
			s.v, s.inArena = arena[s.off:s.end], false
		}
	}
}

func hasUpper(b []byte) bool {
	for _, c := range b {
		if 'A' <= c && c <= 'Z' {
			return true
		}
	}
	return false
}

// requestMembers lists the members of request, for the case-insensitive match.
var requestMembers = []string{
	"version", "event_type", "event_timestamp", "event_category", "event_action",
	"event_outcome", "correlation_id", "event_data", "event_id", "actor_type", "actor_id",
	"actor_ip", "resource_type", "resource_id", "parent_event_id", "namespace",
	"cluster_id", "severity", "duration_ms", "error_code", "error_message",
	"retention_days", "is_sensitive",
}

// takeFolded is take for a member name (still quoted-string content) that
// is not exactly a field's: encoding/json decodes the name and matches it
// to a field whose name folds to the same.
func (r *request) takeFolded(name []byte, kind byte, raw []byte, vi *valueInfo, depth int) *jstr {
	var buf, fbuf [64]byte
	folded := appendFoldedName(fbuf[:0], unquote(buf[:0], name))
	for _, m := range requestMembers {
		if len(m) == len(folded) && string(appendFoldedName(buf[:0], []byte(m))) == string(folded) {
			s, _ := r.take(m, kind, raw, vi, depth)
			return s
		}
	}
	return nil
}

// take records the value raw (of the given kind, at nesting depth) of the
// member called name, and reports whether r has such a member. An unknown
// member is ignored, as encoding/json ignores it. For a string member it
// records nothing but returns the member, for the caller to take.
func (r *request) take(name string, kind byte, raw []byte, vi *valueInfo, depth int) (*jstr, bool) {
	var s *jstr
	switch name {
	case "version":
		s = &r.Version
	case "event_type":
		s = &r.EventType
	case "event_timestamp":
		s = &r.EventTimestamp
	case "event_category":
		s = &r.EventCategory
	case "event_action":
		s = &r.EventAction
	case "event_outcome":
		s = &r.EventOutcome
	case "correlation_id":
		s = &r.CorrelationID
	case "event_id":
		s = &r.EventID
	case "actor_type":
		s = &r.ActorType
	case "actor_id":
		s = &r.ActorID
	case "actor_ip":
		s = &r.ActorIP
	case "resource_type":
		s = &r.ResourceType
	case "resource_id":
		s = &r.ResourceID
	case "parent_event_id":
		s = &r.ParentEventID
	case "namespace":
		s = &r.Namespace
	case "cluster_id":
		s = &r.ClusterID
	case "severity":
		s = &r.Severity
	case "error_code":
		s = &r.ErrorCode
	case "error_message":
		s = &r.ErrorMessage
	case "duration_ms":
		r.DurationMS.take(kind, raw)
		return nil, true
	case "retention_days":
		r.RetentionDays.take(kind, raw)
		return nil, true
	case "is_sensitive":
		r.IsSensitive.take(kind)
		return nil, true
	case "event_data":
		r.EventData.take(kind, raw, vi, depth)
		return nil, true
	default:
		return nil, false
	}
	return s, true
}

// The take methods record one occurrence of a member the way the
// UnmarshalJSON methods of these types (and encoding/json calling them for
// each occurrence) always did: a repeated member adds to what the earlier
// ones left, so null or a wrong type anywhere still counts.

// take appends a string value to arena, for request.resolve to pick up.
func (s *jstr) take(kind byte, raw []byte, info *strInfo, arena []byte) []byte {
	s.set = true
	switch {
	case kind == 'n':
		s.null = true
	case kind != '"':
		s.wrongType = true
	case info.nonASCII && !utf8.Valid(raw):
		s.badUTF8 = true
	default:
		s.off = len(arena)
		if info.esc {
			arena = unquote(arena, raw[1:len(raw)-1])
		} else {
			arena = append(arena, raw[1:len(raw)-1]...)
		}
		s.end, s.inArena = len(arena), true
	}
	return arena
}

func (n *jint) take(kind byte, raw []byte) {
	n.set = true
	switch kind {
	case 'n':
		n.null = true
		return
	case '0':
		if v, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
			n.v = v
			return
		}
	}
	// Fractions, exponents, strings and out-of-range numbers all land here.
	n.wrongType = true
}

func (p *jbool) take(kind byte) {
	p.set = true
	switch kind {
	case 't':
		p.v = true
	case 'f', 'n':
	default:
		p.wrongType = true
	}
}

func (w *jraw) take(kind byte, raw []byte, vi *valueInfo, depth int) {
	w.set = true
	if kind == 'n' {
		w.null = true
		return
	}
	w.v = raw
	w.depth = vi.maxDepth - depth
	w.uesc, w.nonASCII = vi.uesc, vi.nonASCII
}

// appendFoldedName appends the case-folded form of a decoded object key
// under which encoding/json matches it to a struct field when the exact
// name is not there: ASCII upper case, and every other rune the smallest of
// its fold set (so ſ matches s and K matches k).
func appendFoldedName(out, in []byte) []byte {
	for i := 0; i < len(in); {
		if c := in[i]; c < utf8.RuneSelf {
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			out = append(out, c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(in[i:])
		out = utf8.AppendRune(out, foldRune(r))
		i += n
	}
	return out
}

func foldRune(r rune) rune {
	for {
		r2 := unicode.SimpleFold(r)
		if r2 <= r {
			return r2
		}
		r = r2
	}
}
