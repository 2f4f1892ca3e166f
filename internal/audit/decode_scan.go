package audit

import (
	"errors"
	"strconv"
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
		if key.esc {
			// A member's name is its decoded value: "event\u005fid" is
			// event_id. Names are matched exactly, never by case folding.
			var nbuf [64]byte
			name = unquote(nbuf[:0], name)
		}
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
		str, _ := r.take(string(name), kind, raw, &vi, s.depth)
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
	for _, s := range r.strings() {
		if s.inArena {
			s.v, s.inArena = arena[s.off:s.end], false
		}
	}
}

// take records the value raw (of the given kind, at nesting depth) of the
// member called name, and reports whether r has such a member. An unknown
// member is ignored (CONTRACT §0); a known one seen before is recorded in
// r.dups, for validation to refuse. For a string member it records nothing
// but returns the member, for the caller to take.
func (r *request) take(name string, kind byte, raw []byte, vi *valueInfo, depth int) (*jstr, bool) {
	i, ok := memberIndex(name)
	if !ok {
		return nil, false
	}
	if r.seen&(1<<i) != 0 {
		r.dups = append(r.dups, requestMembers[i])
	}
	r.seen |= 1 << i
	switch i {
	case mDurationMS:
		r.DurationMS.take(kind, raw)
	case mRetentionDays:
		r.RetentionDays.take(kind, raw)
	case mIsSensitive:
		r.IsSensitive.take(kind)
	case mEventData:
		r.EventData.take(kind, raw, vi, depth)
	case mParentEventDate:
		// Ignored: the server takes it from the parent.
	default:
		return r.strings()[i], true
	}
	return nil, true
}

// The members of request, in the order of requestMembers: the string
// members first, in the order of (*request).strings.
const (
	mDurationMS = iota + 19
	mRetentionDays
	mIsSensitive
	mEventData
	mParentEventDate
)

// requestMembers names the members of request by index.
var requestMembers = [...]string{
	"version", "event_type", "event_timestamp", "event_category", "event_action",
	"event_outcome", "correlation_id", "event_id", "actor_type", "actor_id", "actor_ip",
	"resource_type", "resource_id", "parent_event_id", "namespace", "cluster_id",
	"severity", "error_code", "error_message",
	"duration_ms", "retention_days", "is_sensitive", "event_data", "parent_event_date",
}

// strings returns the string members of r, in the order of requestMembers.
func (r *request) strings() [19]*jstr {
	return [...]*jstr{
		&r.Version, &r.EventType, &r.EventTimestamp, &r.EventCategory, &r.EventAction,
		&r.EventOutcome, &r.CorrelationID, &r.EventID, &r.ActorType, &r.ActorID, &r.ActorIP,
		&r.ResourceType, &r.ResourceID, &r.ParentEventID, &r.Namespace, &r.ClusterID,
		&r.Severity, &r.ErrorCode, &r.ErrorMessage,
	}
}

// memberIndex finds the member called exactly name.
func memberIndex(name string) (int, bool) {
	switch name {
	case "version":
		return 0, true
	case "event_type":
		return 1, true
	case "event_timestamp":
		return 2, true
	case "event_category":
		return 3, true
	case "event_action":
		return 4, true
	case "event_outcome":
		return 5, true
	case "correlation_id":
		return 6, true
	case "event_id":
		return 7, true
	case "actor_type":
		return 8, true
	case "actor_id":
		return 9, true
	case "actor_ip":
		return 10, true
	case "resource_type":
		return 11, true
	case "resource_id":
		return 12, true
	case "parent_event_id":
		return 13, true
	case "namespace":
		return 14, true
	case "cluster_id":
		return 15, true
	case "severity":
		return 16, true
	case "error_code":
		return 17, true
	case "error_message":
		return 18, true
	case "duration_ms":
		return mDurationMS, true
	case "retention_days":
		return mRetentionDays, true
	case "is_sensitive":
		return mIsSensitive, true
	case "event_data":
		return mEventData, true
	case "parent_event_date":
		return mParentEventDate, true
	}
	return 0, false
}

// The take methods record one occurrence of a member the way the
// UnmarshalJSON methods of these types do. A repeated member is refused by
// validation (request.dups) whatever its occurrences hold.

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
	case info.uesc && loneSurrogate(raw):
		s.badSurrogate = true
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
