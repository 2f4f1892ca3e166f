package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Limits of CONTRACT §2.1 that are not plain string lengths.
const (
	// MaxDataBytes is the largest accepted event_data, encoded as the client
	// sent it and again in its stored (canonical) form: numbers written out
	// in full make the second larger than the first (1e131071 is 8 bytes on
	// the wire and 131,072 digits stored and returned).
	MaxDataBytes = 256 << 10
	// MaxBatchDataBytes bounds the stored (canonical) event_data of a whole
	// batch: 10,000 events of MaxDataBytes each would be 2.5 GiB held by the
	// server and stored by one commit. 32 MiB is the largest batch body
	// (CONTRACT §3), so a batch never stores more event_data than it may
	// carry on the wire.
	MaxBatchDataBytes = 32 << 20
	// MaxDataDepth is the deepest accepted nesting of event_data (the object itself is 1).
	MaxDataDepth = 10
	// MaxRetentionDays is the longest retention an event may ask for (7 years).
	MaxRetentionDays = 2555
	// MaxErrorMessage is the longest error_message, in characters.
	MaxErrorMessage = 64 << 10
)

// ErrNotArray is returned by DecodeBatch when the body is valid JSON but not an array.
var ErrNotArray = errors.New("request body must be a JSON array of audit events")

// ErrNotObject is returned by DecodeOne when the body is valid JSON but not an object.
var ErrNotObject = errors.New("request body must be a JSON object")

// ErrEmptyBatch is returned by DecodeBatch for an empty array.
var ErrEmptyBatch = errors.New("request body must contain at least one audit event")

// SyntaxError is returned by DecodeOne and DecodeBatch when the body is not JSON.
// It keeps the byte offset so the client can find the fault.
type SyntaxError struct {
	Offset int64
	Err    error
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("request body is not valid JSON (at byte %d): %v", e.Offset, e.Err)
}

func (e *SyntaxError) Unwrap() error { return e.Err }

// FieldErrors maps a field path (`event_type`, or `[3].event_type` in a batch) to
// what is wrong with it. It is the `field_errors` member of a validation problem.
type FieldErrors map[string]string

// Validator turns client requests into events. It holds the configured rules;
// one Validator serves all requests concurrently.
type Validator struct {
	// MaxAge is how far in the past event_timestamp may lie.
	MaxAge time.Duration
	// MaxSkew is how far in the future event_timestamp may lie.
	MaxSkew time.Duration
	// DefaultRetentionDays is retention_days when the client sends none.
	DefaultRetentionDays int32
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (v *Validator) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

// DecodeOne decodes and validates a single AuditEventRequest. On invalid input it
// returns field errors keyed by field name and no event; a body that is not a
// JSON object yields a *SyntaxError or ErrNotObject.
func (v *Validator) DecodeOne(body []byte) (*Event, FieldErrors, error) {
	body, lead := trimJSONSpace(body)
	if len(body) == 0 || body[0] != '{' {
		if err := checkSyntax(body, lead); err != nil {
			return nil, nil, err
		}
		return nil, nil, ErrNotObject
	}
	var r request
	sc := scanner{b: body}
	if !sc.request(&r) || sc.i != len(body) {
		return nil, nil, sc.syntaxError(lead)
	}
	fe := FieldErrors{}
	ev := v.build(&r, "", fe, v.now())
	if len(fe) > 0 {
		return nil, fe, nil
	}
	return ev, nil, nil
}

// DecodeBatch decodes and validates a JSON array of AuditEventRequest. It is all
// or nothing: any invalid element yields field errors for every failing element
// (keys `[i].field`) and no events. maxItems bounds the array length; a longer
// array yields a *BatchTooLargeError.
func (v *Validator) DecodeBatch(body []byte, maxItems int) ([]*Event, FieldErrors, error) {
	body, lead := trimJSONSpace(body)
	if len(body) == 0 || body[0] != '[' {
		if err := checkSyntax(body, lead); err != nil {
			return nil, nil, err
		}
		return nil, nil, ErrNotArray
	}
	// One pass over the array, building events as it goes: a syntax error
	// anywhere still wins over everything else, an overlong array over field
	// errors, as when encoding/json checked the whole body first.
	sc := scanner{b: body, i: 1, depth: 1}
	now := v.now()
	fe := FieldErrors{}
	var events []*Event
	n := 0
	dataBytes, overData := 0, false
	if sc.i = skipSpace(body, sc.i); sc.i < len(body) && body[sc.i] == ']' {
		sc.i++
	} else {
		for {
			switch {
			case n >= maxItems:
				// Too many already: only the syntax still matters.
				if _, ok := sc.value(new(valueInfo)); !ok {
					return nil, nil, sc.syntaxError(lead)
				}
			case sc.i < len(body) && body[sc.i] == '{':
				var r request
				if !sc.request(&r) {
					return nil, nil, sc.syntaxError(lead)
				}
				if ev := v.build(&r, "["+strconv.Itoa(n)+"].", fe, now); ev != nil {
					events = append(events, ev)
					if dataBytes += len(ev.canonData); dataBytes > MaxBatchDataBytes && !overData {
						overData = true
						fe["["+strconv.Itoa(n)+"].event_data"] = fmt.Sprintf(
							"the batch's event_data exceeds %d MiB in stored form from this event on; send fewer events per batch",
							MaxBatchDataBytes>>20)
					}
				}
			default:
				if _, ok := sc.value(new(valueInfo)); !ok {
					return nil, nil, sc.syntaxError(lead)
				}
				fe["["+strconv.Itoa(n)+"]"] = "must be a JSON object"
			}
			n++
			if sc.i = skipSpace(body, sc.i); sc.i >= len(body) {
				return nil, nil, sc.syntaxError(lead)
			}
			if body[sc.i] == ']' {
				sc.i++
				break
			}
			if body[sc.i] != ',' {
				return nil, nil, sc.syntaxError(lead)
			}
			sc.i = skipSpace(body, sc.i+1)
		}
	}
	if sc.i != len(body) {
		return nil, nil, sc.syntaxError(lead)
	}
	if n == 0 {
		return nil, nil, ErrEmptyBatch
	}
	if n > maxItems {
		return nil, nil, &BatchTooLargeError{Got: n, Max: maxItems}
	}
	if len(fe) > 0 {
		return nil, fe, nil
	}
	return events, nil, nil
}

// BatchTooLargeError is returned by DecodeBatch when the array is longer than allowed.
type BatchTooLargeError struct{ Got, Max int }

func (e *BatchTooLargeError) Error() string {
	return fmt.Sprintf("batch holds %d events; the maximum is %d", e.Got, e.Max)
}

// trimJSONSpace removes the white space JSON allows around a value (space,
// tab, CR, LF; not every Unicode space) and returns how many bytes it removed
// in front, so that a syntax error's offset still counts from the start of
// the body.
func trimJSONSpace(body []byte) ([]byte, int64) {
	t := bytes.TrimLeft(body, " \t\r\n")
	return bytes.TrimRight(t, " \t\r\n"), int64(len(body) - len(t))
}

func checkSyntax(body []byte, lead int64) error {
	var x any
	if err := json.Unmarshal(body, &x); err != nil {
		return syntaxError(err, lead)
	}
	return nil
}

func syntaxError(err error, lead int64) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return &SyntaxError{Offset: lead + se.Offset, Err: err}
	}
	return &SyntaxError{Offset: lead, Err: err}
}

// request is the decoding target of one AuditEventRequest. Every member records
// what the client sent (absent, null, wrong type, or a value) instead of failing
// the whole decode, so validation can name every faulty field at once.
// (*request).take matches the member names; the json tags give the same
// names to the reference decoder of the tests.
type request struct {
	Version         jstr  `json:"version"`
	EventType       jstr  `json:"event_type"`
	EventTimestamp  jstr  `json:"event_timestamp"`
	EventCategory   jstr  `json:"event_category"`
	EventAction     jstr  `json:"event_action"`
	EventOutcome    jstr  `json:"event_outcome"`
	CorrelationID   jstr  `json:"correlation_id"`
	EventData       jraw  `json:"event_data"`
	EventID         jstr  `json:"event_id"`
	ActorType       jstr  `json:"actor_type"`
	ActorID         jstr  `json:"actor_id"`
	ActorIP         jstr  `json:"actor_ip"`
	ResourceType    jstr  `json:"resource_type"`
	ResourceID      jstr  `json:"resource_id"`
	ParentEventID   jstr  `json:"parent_event_id"`
	Namespace       jstr  `json:"namespace"`
	ClusterID       jstr  `json:"cluster_id"`
	Severity        jstr  `json:"severity"`
	DurationMS      jint  `json:"duration_ms"`
	ErrorCode       jstr  `json:"error_code"`
	ErrorMessage    jstr  `json:"error_message"`
	RetentionDays   jint  `json:"retention_days"`
	IsSensitive     jbool `json:"is_sensitive"`
	ParentEventDate jraw  `json:"parent_event_date"` // ignored: the server takes it from the parent

	// seen has bit i set once member requestMembers[i] was read; dups
	// lists the members read more than once, which validation refuses
	// (whichever occurrence a reader picked, another reader of the same
	// body could pick the other).
	seen uint32
	dups []string
}

// build validates r and returns the event with defaults applied, or nil after
// recording every problem in fe under prefix.
func (v *Validator) build(r *request, prefix string, fe FieldErrors, now time.Time) *Event {
	before := len(fe)
	c := checker{prefix: prefix, fe: fe}
	for _, name := range r.dups {
		c.fail(name, msgDuplicate)
	}
	ev := &Event{
		Version:       c.str("version", &r.Version, 1, 10),
		Type:          c.str("event_type", &r.EventType, 1, 100),
		Category:      c.enum("event_category", &r.EventCategory, Categories),
		Action:        c.str("event_action", &r.EventAction, 1, 50),
		Outcome:       c.enum("event_outcome", &r.EventOutcome, Outcomes),
		CorrelationID: c.str("correlation_id", &r.CorrelationID, 1, 255),
		ActorType:     c.str("actor_type", &r.ActorType, 0, 50),
		ActorID:       c.str("actor_id", &r.ActorID, 0, 255),
		ActorIP:       c.str("actor_ip", &r.ActorIP, 0, 45),
		ResourceType:  c.str("resource_type", &r.ResourceType, 0, 100),
		ResourceID:    c.str("resource_id", &r.ResourceID, 0, 255),
		Namespace:     c.str("namespace", &r.Namespace, 0, 253),
		ClusterID:     c.str("cluster_id", &r.ClusterID, 0, 255),
		Severity:      c.str("severity", &r.Severity, 0, 20),
		ErrorCode:     c.str("error_code", &r.ErrorCode, 0, 50),
		ErrorMessage:  c.str("error_message", &r.ErrorMessage, 0, MaxErrorMessage),
		IsSensitive:   c.boolean("is_sensitive", &r.IsSensitive),
		RetentionDays: v.DefaultRetentionDays,
	}
	if ev.RetentionDays == 0 {
		ev.RetentionDays = MaxRetentionDays
	}
	if n, ok := c.integer("retention_days", &r.RetentionDays, 1, MaxRetentionDays); ok {
		ev.RetentionDays = int32(n)
	}
	if n, ok := c.integer("duration_ms", &r.DurationMS, 0, math.MaxInt32); ok {
		d := int32(n)
		ev.DurationMS = &d
	}
	if ts, ok := c.timestamp("event_timestamp", &r.EventTimestamp); ok {
		switch {
		case ts.Before(now.Add(-v.MaxAge)):
			c.fail("event_timestamp", fmt.Sprintf("must not be more than %s in the past", v.MaxAge))
		case ts.After(now.Add(v.MaxSkew)):
			c.fail("event_timestamp", fmt.Sprintf("must not be more than %s in the future", v.MaxSkew))
		default:
			ev.Timestamp = NewTime(ts)
			ev.Date = DateOf(ts)
		}
	}
	ev.Data = c.object("event_data", &r.EventData)
	if ev.Data != nil {
		// The canonical form is needed for the hash chain anyway; computing it
		// here also refuses numbers that PostgreSQL's jsonb cannot store.
		cd, err := CanonicalData(ev.Data)
		switch {
		case errors.Is(err, ErrCanonicalTooLarge):
			c.fail("event_data", fmt.Sprintf("must be at most %d bytes in stored form (numbers written out in full, keys sorted, strings escaped), got more than %d",
				MaxDataBytes, MaxCanonicalDataBytes))
		case err != nil:
			c.fail("event_data", "holds a number outside PostgreSQL's numeric range")
		case len(cd) > MaxDataBytes:
			// What is stored and returned is the canonical form, not the
			// client's spelling: that is the size the contract bounds.
			c.fail("event_data", fmt.Sprintf("must be at most %d bytes in stored form (numbers written out in full, keys sorted, strings escaped), got %d",
				MaxDataBytes, len(cd)))
		}
		ev.canonData = cd
	}
	if id, ok := c.uuid("event_id", &r.EventID); ok {
		if id == uuid.Nil {
			c.fail("event_id", "must not be the nil UUID")
		}
		ev.ID = id
	}
	if id, ok := c.uuid("parent_event_id", &r.ParentEventID); ok {
		ev.ParentID = &id
	}
	if ev.ActorIP != "" {
		if _, err := netip.ParseAddr(ev.ActorIP); err != nil {
			c.fail("actor_ip", "must be an IPv4 or IPv6 address")
		}
	}
	if len(fe) > before {
		return nil
	}
	if ev.ParentID != nil && *ev.ParentID == ev.ID {
		c.fail("parent_event_id", "must not be the event's own event_id")
		return nil
	}
	if ev.ID == uuid.Nil {
		// Version 7, time-ordered, so fresh ids land near the right edge of
		// the primary-key B-tree instead of splitting pages all over it; its
		// time is the event's, so the id names its date (NewServerID).
		ev.ID = NewServerID(ev.Timestamp)
		ev.serverID = true
	}
	ev.applyDefaults()
	return ev
}

// applyDefaults fills the optional members the contract gives defaults.
func (e *Event) applyDefaults() {
	if e.ActorType == "" {
		e.ActorType = "service"
	}
	if e.ActorID == "" {
		e.ActorID = e.Category + "-service"
	}
	if e.ResourceType == "" {
		e.ResourceType = e.Category
	}
	if e.ResourceID == "" {
		e.ResourceID = e.CorrelationID
	}
	if e.Severity == "" {
		e.Severity = "info"
	}
}

// checker records field errors under a prefix.
type checker struct {
	prefix string
	fe     FieldErrors
}

func (c checker) fail(field, msg string) {
	key := c.prefix + field
	if _, dup := c.fe[key]; !dup {
		c.fe[key] = msg
	}
}

// str validates a string member. min > 0 makes it required; lengths count
// characters, not bytes. An empty optional string counts as absent.
func (c checker) str(field string, s *jstr, min, max int) string {
	switch {
	case s.wrongType:
		c.fail(field, "must be a string")
		return ""
	case s.badUTF8:
		c.fail(field, "must be valid UTF-8")
		return ""
	case s.badSurrogate:
		// Decoding it would silently store U+FFFD instead.
		c.fail(field, msgLoneSurrogate)
		return ""
	case !s.set || s.null:
		if min > 0 {
			c.fail(field, "is required")
		}
		return ""
	}
	n := utf8.RuneCountInString(s.v)
	switch {
	case n < min:
		c.fail(field, "must not be empty")
	case n > max:
		c.fail(field, fmt.Sprintf("must be at most %d characters, got %d", max, n))
	case strings.IndexByte(s.v, 0) >= 0:
		// PostgreSQL text cannot hold NUL; refusing it here keeps it from
		// becoming a database error later.
		c.fail(field, "must not contain the NUL character")
	default:
		return s.v
	}
	return ""
}

func (c checker) enum(field string, s *jstr, allowed []string) string {
	v := c.str(field, s, 1, 64)
	if v != "" && !slices.Contains(allowed, v) {
		c.fail(field, "must be one of "+strings.Join(allowed, ", "))
		return ""
	}
	return v
}

func (c checker) timestamp(field string, s *jstr) (time.Time, bool) {
	v := c.str(field, s, 1, 64)
	if v == "" {
		return time.Time{}, false
	}
	t, err := ParseTimestamp(v)
	if err != nil {
		c.fail(field, "must be an RFC 3339 timestamp with a time zone, e.g. 2026-11-22T10:00:00Z")
		return time.Time{}, false
	}
	return t, true
}

// ParseTimestamp parses an RFC 3339 timestamp that carries its zone (Z or an
// offset); fractional seconds are optional. It refuses what time.Parse lets
// through but RFC 3339 does not: an offset of 24 hours or more or with 60 or
// more minutes (+24:00, +23:60), and a comma before the fraction.
func ParseTimestamp(s string) (time.Time, error) {
	if err := checkRFC3339Tail(s); err != nil {
		return time.Time{}, err
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, err
	}
	return t, nil
}

// errRFC3339 is returned by ParseTimestamp for what time.Parse accepts but
// RFC 3339 does not.
var errRFC3339 = errors.New("not an RFC 3339 timestamp: the fraction must follow a '.' and the offset be Z or ±HH:MM with HH ≤ 23, MM ≤ 59")

// checkRFC3339Tail checks what follows the seconds of a timestamp that
// time.Parse checks too loosely; the rest is left to time.Parse.
func checkRFC3339Tail(s string) error {
	const secondsEnd = len("2006-01-02T15:04:05")
	if len(s) <= secondsEnd {
		return nil // too short: time.Parse says why
	}
	zone := len(s) - 1
	if s[zone] != 'Z' {
		zone = len(s) - len("+07:00")
		if zone < secondsEnd {
			return nil
		}
		z := s[zone:]
		if (z[0] != '+' && z[0] != '-') || z[3] != ':' || !isDigit(z[1]) || !isDigit(z[2]) || !isDigit(z[4]) || !isDigit(z[5]) {
			return nil
		}
		if (z[1]-'0')*10+(z[2]-'0') > 23 || (z[4]-'0')*10+(z[5]-'0') > 59 {
			return errRFC3339
		}
	}
	if frac := s[secondsEnd:zone]; frac != "" && frac[0] != '.' {
		return errRFC3339
	}
	return nil
}

func (c checker) uuid(field string, s *jstr) (uuid.UUID, bool) {
	v := c.str(field, s, 0, 36)
	if v == "" {
		return uuid.UUID{}, false
	}
	id, err := ParseUUID(v)
	if err != nil {
		c.fail(field, "must be a UUID like 0192f3c4-5a6b-7c8d-9e0f-1a2b3c4d5e6f")
		return uuid.UUID{}, false
	}
	return id, true
}

// ParseUUID accepts only the canonical 36-character form, so one event has one
// spelling of its id.
func ParseUUID(s string) (uuid.UUID, error) {
	if len(s) != 36 {
		return uuid.UUID{}, fmt.Errorf("uuid %q: want 36 characters", s)
	}
	return uuid.Parse(s)
}

func (c checker) integer(field string, n *jint, min, max int64) (int64, bool) {
	switch {
	case n.wrongType:
		c.fail(field, "must be an integer")
	case !n.set || n.null:
	case n.v < min || n.v > max:
		c.fail(field, fmt.Sprintf("must be between %d and %d", min, max))
	default:
		return n.v, true
	}
	return 0, false
}

func (c checker) boolean(field string, b *jbool) bool {
	if b.wrongType {
		c.fail(field, "must be a boolean")
	}
	return b.v
}

func (c checker) object(field string, r *jraw) json.RawMessage {
	switch {
	case !r.set || r.null:
		c.fail(field, "is required and must be a JSON object")
		return nil
	case r.v[0] != '{':
		c.fail(field, "must be a JSON object")
		return nil
	case len(r.v) > MaxDataBytes:
		c.fail(field, fmt.Sprintf("must be at most %d bytes encoded, got %d", MaxDataBytes, len(r.v)))
		return nil
	case r.nonASCII && !utf8.Valid(r.v):
		c.fail(field, "must be valid UTF-8")
		return nil
	}
	if r.uesc {
		if msg := badEscape(r.v); msg != "" {
			c.fail(field, msg)
			return nil
		}
	}
	if r.depth > MaxDataDepth {
		c.fail(field, fmt.Sprintf("must not nest deeper than %d levels, got %d", MaxDataDepth, r.depth))
		return nil
	}
	// r.v is part of the request body, which the caller may reuse.
	return bytes.Clone(r.v)
}

// badEscape finds the string escapes that PostgreSQL's json parser refuses
// although encoding/json accepts them, so that they are a field error and not
// a database error: \u0000 (jsonb cannot store U+0000; see str) and a UTF-16
// surrogate escape that is not a high one followed by a low one (encoding/json
// would turn it into U+FFFD). b is valid JSON. It returns "" when all is well.
func badEscape(b []byte) string {
	inStr := false
	for i := 0; i < len(b); i++ {
		switch {
		case !inStr:
			inStr = b[i] == '"'
		case b[i] == '"':
			inStr = false
		case b[i] != '\\':
		case b[i+1] != 'u':
			i++ // a two-character escape
		default:
			r := hexRune(b[i+2 : i+6])
			i += 5
			switch {
			case r == 0:
				return `must not contain the escaped NUL character \u0000`
			case r >= 0xD800 && r < 0xDC00:
				if i+6 < len(b) && b[i+1] == '\\' && b[i+2] == 'u' {
					if lo := hexRune(b[i+3 : i+7]); lo >= 0xDC00 && lo < 0xE000 {
						i += 6
						continue
					}
				}
				return msgLoneSurrogate
			case r >= 0xDC00 && r < 0xE000:
				return msgLoneSurrogate
			}
		}
	}
	return ""
}

// Field error messages shared by several checks.
const (
	msgDuplicate     = "must appear only once in the object"
	msgLoneSurrogate = `must not contain an unpaired UTF-16 surrogate escape such as \ud800`
)

// loneSurrogate reports whether the string token b (quotes included, valid
// JSON) holds a \u surrogate escape that is not a high one followed by a
// low one: encoding/json would decode it to U+FFFD, changing the value.
func loneSurrogate(b []byte) bool {
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		if b[i+1] != 'u' {
			i++ // a two-character escape
			continue
		}
		r := hexRune(b[i+2 : i+6])
		i += 5
		switch {
		case r >= 0xD800 && r < 0xDC00:
			if i+6 < len(b) && b[i+1] == '\\' && b[i+2] == 'u' {
				if lo := hexRune(b[i+3 : i+7]); lo >= 0xDC00 && lo < 0xE000 {
					i += 6
					continue
				}
			}
			return true
		case r >= 0xDC00 && r < 0xE000:
			return true
		}
	}
	return false
}

// jstr is a JSON member that should be a string.
type jstr struct {
	set, null, wrongType, badUTF8, badSurrogate bool
	v                                           string
	// inArena says that the value is arena[off:end] of the scanner that
	// is reading it, and not yet in v.
	inArena  bool
	off, end int
}

func (s *jstr) UnmarshalJSON(b []byte) error {
	s.set = true
	switch {
	case string(b) == "null":
		s.null = true
	case len(b) < 2 || b[0] != '"':
		s.wrongType = true
	case !utf8.Valid(b):
		// encoding/json does not check UTF-8: PostgreSQL would refuse the
		// raw bytes, and decoding them would silently alter the value.
		s.badUTF8 = true
	case bytes.IndexByte(b, '\\') < 0:
		// Fast path: no escapes, so the bytes between the quotes are the value
		// (encoding/json has already checked the token).
		s.v = string(b[1 : len(b)-1])
	case loneSurrogate(b):
		s.badSurrogate = true
	default:
		return json.Unmarshal(b, &s.v)
	}
	return nil
}

// jint is a JSON member that should be an integer.
type jint struct {
	set, null, wrongType bool
	v                    int64
}

func (n *jint) UnmarshalJSON(b []byte) error {
	n.set = true
	if string(b) == "null" {
		n.null = true
		return nil
	}
	v, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		// Fractions, exponents, strings and out-of-range numbers all land here.
		n.wrongType = true
		return nil
	}
	n.v = v
	return nil
}

// jbool is a JSON member that should be a boolean.
type jbool struct {
	set, wrongType, v bool
}

// jraw keeps a member's raw JSON, with what the scan that found it learnt
// about it, so that validating event_data needs no second pass over it.
type jraw struct {
	set, null bool
	v         json.RawMessage
	// depth is the deepest nesting in v (an object alone is 1).
	depth int
	// uesc and nonASCII say whether v may hold a \u escape, or bytes that
	// are not ASCII; without them it needs no escape or UTF-8 check.
	uesc, nonASCII bool
}
