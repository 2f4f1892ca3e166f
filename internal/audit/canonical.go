package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// Hash algorithms, as reported in hash_algorithm.
const (
	AlgSHA256     = "sha256"
	AlgHMACSHA256 = "hmac-sha256"
)

// Hasher computes the links of the per-correlation hash chains (CONTRACT §8).
// The zero value hashes with plain SHA-256.
type Hasher struct {
	key []byte
}

// NewHasher returns a Hasher: HMAC-SHA256 with key, or SHA-256 when key is empty.
func NewHasher(key []byte) Hasher { return Hasher{key: bytes.Clone(key)} }

// Algorithm names the hash function.
func (h Hasher) Algorithm() string {
	if len(h.key) > 0 {
		return AlgHMACSHA256
	}
	return AlgSHA256
}

// Link returns hex(H(previous || canonical)), the event_hash of an event whose
// predecessor in its chain has hash previous ("" for the first event).
func (h Hasher) Link(previous string, canonical []byte) string {
	var m hash.Hash
	if len(h.key) > 0 {
		m = hmac.New(sha256.New, h.key)
	} else {
		m = sha256.New()
	}
	m.Write([]byte(previous))
	m.Write(canonical)
	return hex.EncodeToString(m.Sum(nil))
}

// canonicalEvent fixes the members an event hash covers and their order
// (alphabetical). The hash fields, legal hold and created_at are left out:
// they are set around or after the hash, and a legal hold must not look
// like tampering.
type canonicalEvent struct {
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

// Canonical returns the bytes the event's hash covers: its members in a fixed
// order, with event_data in canonical form (see CanonicalData). The same event
// gives the same bytes whether it comes from a client, from PostgreSQL or from
// an export file.
func (e *Event) Canonical() ([]byte, error) {
	data := e.canonData
	if data == nil {
		var err error
		if data, err = CanonicalData(e.Data); err != nil {
			return nil, err
		}
		e.canonData = data
	}
	c := canonicalEvent{
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

// CanonicalData returns event_data in a form that does not depend on how it
// was spelled: object keys sorted, no insignificant white space, string
// escapes resolved, and numbers written as PostgreSQL's jsonb writes them
// (1e2 becomes 100, -0 becomes 0, trailing fraction zeros are kept). That
// last rule is what lets the hash computed from a client's bytes at write
// time match the one recomputed from the stored jsonb at verification.
func CanonicalData(raw []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("audit: canonical event_data: %w", err)
	}
	v, err := normalizeNumbers(v)
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

func normalizeNumbers(v any) (any, error) {
	switch x := v.(type) {
	case json.Number:
		n, err := NormalizeNumber(string(x))
		return json.Number(n), err
	case map[string]any:
		for k, e := range x {
			n, err := normalizeNumbers(e)
			if err != nil {
				return nil, err
			}
			x[k] = n
		}
	case []any:
		for i, e := range x {
			n, err := normalizeNumbers(e)
			if err != nil {
				return nil, err
			}
			x[i] = n
		}
	}
	return v, nil
}

// Limits of PostgreSQL's numeric type, which jsonb uses for every number.
const (
	maxNumericIntDigits  = 131072
	maxNumericFracDigits = 16383
	// maxNumericExponent bounds the exponent numeric_in accepts at all
	// (INT_MAX/2, exclusive), whatever the digits: 0e1073741822 is 0.
	maxNumericExponent = 1<<30 - 1
)

// ErrNumberRange is returned (wrapped) by NormalizeNumber and CanonicalData
// for a number PostgreSQL's numeric type cannot hold.
var ErrNumberRange = errors.New("number out of PostgreSQL's numeric range")

// NormalizeNumber rewrites a JSON number the way PostgreSQL's numeric output
// writes it: exponent applied, the scale kept (digits after the point, less
// the exponent, never below zero), no sign on zero.
func NormalizeNumber(s string) (string, error) {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	mant, exp := s, 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		e, err := parseExponent(s[i+1:])
		if err != nil {
			return "", fmt.Errorf("audit: number %q: %w", s, err)
		}
		mant, exp = s[:i], e
	}
	intPart, frac, _ := strings.Cut(mant, ".")
	if exp == 0 && intPart != "" && (intPart == "0" || intPart[0] != '0') {
		if strings.Trim(intPart+frac, "0") == "" {
			neg = false // numeric has no negative zero
		}
		if len(intPart) > maxNumericIntDigits || len(frac) > maxNumericFracDigits {
			return "", fmt.Errorf("audit: number: %w", ErrNumberRange)
		}
		if neg {
			return "-" + mant, nil
		}
		return mant, nil
	}
	digits := intPart + frac
	point := len(intPart) + exp // position of the decimal point within digits
	scale := max(0, len(frac)-exp)
	if scale > maxNumericFracDigits {
		return "", fmt.Errorf("audit: number: %w", ErrNumberRange)
	}
	if strings.Trim(digits, "0") == "" {
		// Zero has no magnitude to overflow, whatever its exponent
		// (0e200000 is 0); only its scale counts.
		if scale == 0 {
			return "0", nil
		}
		return "0." + strings.Repeat("0", scale), nil
	}
	if point > maxNumericIntDigits+len(digits) {
		return "", fmt.Errorf("audit: number: %w", ErrNumberRange)
	}
	var ip, fp string
	switch {
	case point <= 0:
		ip, fp = "0", strings.Repeat("0", -point)+digits
	case point >= len(digits):
		ip, fp = digits+strings.Repeat("0", point-len(digits)), ""
	default:
		ip, fp = digits[:point], digits[point:]
	}
	ip = strings.TrimLeft(ip, "0")
	if ip == "" {
		ip = "0"
	}
	if len(ip) > maxNumericIntDigits {
		return "", fmt.Errorf("audit: number: %w", ErrNumberRange)
	}
	// Fit the fraction to the scale: the digits dropped are zeros by
	// construction, the digits added are zeros too.
	if len(fp) > scale {
		fp = fp[:scale]
	} else {
		fp += strings.Repeat("0", scale-len(fp))
	}
	if strings.Trim(ip+fp, "0") == "" {
		neg = false
	}
	out := ip
	if fp != "" {
		out += "." + fp
	}
	if neg {
		out = "-" + out
	}
	return out, nil
}

// parseExponent reads the digits after e or E the way numeric_in does:
// optional sign, any number of leading zeros, and a value below INT_MAX/2.
func parseExponent(s string) (int, error) {
	neg := false
	switch {
	case strings.HasPrefix(s, "+"):
		s = s[1:]
	case strings.HasPrefix(s, "-"):
		neg, s = true, s[1:]
	}
	if s == "" || strings.Trim(s, "0123456789") != "" {
		return 0, fmt.Errorf("bad exponent %q", s)
	}
	s = strings.TrimLeft(s, "0")
	if len(s) > len(strconv.Itoa(maxNumericExponent)) {
		return 0, ErrNumberRange
	}
	e := 0
	if s != "" {
		var err error
		if e, err = strconv.Atoi(s); err != nil {
			return 0, fmt.Errorf("bad exponent %q: %w", s, err)
		}
	}
	if e >= maxNumericExponent {
		return 0, ErrNumberRange
	}
	if neg {
		e = -e
	}
	return e, nil
}
