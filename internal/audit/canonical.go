package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
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

// Canonical returns the bytes the event's hash covers: its members in a fixed
// order, with event_data in canonical form (see CanonicalData). The same event
// gives the same bytes whether it comes from a client, from PostgreSQL or from
// an export file.
//
// The members are those of an alphabetically ordered JSON object. The hash
// fields, legal hold and created_at are left out: they are set around or
// after the hash, and a legal hold must not look like tampering. The bytes
// are exactly what json.Marshal made of such an object before this was
// written by hand (stored hashes depend on them); the reference in the tests
// keeps the two equal.
func (e *Event) Canonical() ([]byte, error) {
	data := e.canonData
	if data == nil {
		var err error
		if data, err = CanonicalData(e.Data); err != nil {
			return nil, err
		}
		e.canonData = data
	}
	b := make([]byte, 0, 640+len(data)+len(e.ErrorMessage))
	b = append(b, `{"actor_id":`...)
	b = appendString(b, e.ActorID)
	b = append(b, `,"actor_ip":`...)
	b = appendString(b, e.ActorIP)
	b = append(b, `,"actor_type":`...)
	b = appendString(b, e.ActorType)
	b = append(b, `,"cluster_id":`...)
	b = appendString(b, e.ClusterID)
	b = append(b, `,"correlation_id":`...)
	b = appendString(b, e.CorrelationID)
	b = append(b, `,"duration_ms":`...)
	if e.DurationMS != nil {
		b = strconv.AppendInt(b, int64(*e.DurationMS), 10)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"error_code":`...)
	b = appendString(b, e.ErrorCode)
	b = append(b, `,"error_message":`...)
	b = appendString(b, e.ErrorMessage)
	b = append(b, `,"event_action":`...)
	b = appendString(b, e.Action)
	b = append(b, `,"event_category":`...)
	b = appendString(b, e.Category)
	// data is CanonicalData's output: compact and escaped as json.Marshal
	// would have rewritten it.
	b = append(b, `,"event_data":`...)
	b = append(b, data...)
	b = append(b, `,"event_date":"`...)
	b = time.Time(e.Date).AppendFormat(b, time.DateOnly)
	b = append(b, `","event_id":`...)
	b = AppendJSONUUID(b, e.ID)
	b = append(b, `,"event_outcome":`...)
	b = appendString(b, e.Outcome)
	b = append(b, `,"event_timestamp":"`...)
	b = time.Time(e.Timestamp).UTC().AppendFormat(b, wireTime)
	b = append(b, `","event_type":`...)
	b = appendString(b, e.Type)
	b = append(b, `,"is_sensitive":`...)
	b = strconv.AppendBool(b, e.IsSensitive)
	b = append(b, `,"namespace":`...)
	b = appendString(b, e.Namespace)
	b = append(b, `,"parent_event_date":`...)
	if e.ParentDate != nil {
		b = append(b, '"')
		b = time.Time(*e.ParentDate).UTC().AppendFormat(b, wireTime)
		b = append(b, '"')
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"parent_event_id":`...)
	if e.ParentID != nil {
		b = AppendJSONUUID(b, *e.ParentID)
	} else {
		b = append(b, `""`...)
	}
	b = append(b, `,"resource_id":`...)
	b = appendString(b, e.ResourceID)
	b = append(b, `,"resource_type":`...)
	b = appendString(b, e.ResourceType)
	b = append(b, `,"retention_days":`...)
	b = strconv.AppendInt(b, int64(e.RetentionDays), 10)
	b = append(b, `,"severity":`...)
	b = appendString(b, e.Severity)
	b = append(b, `,"version":`...)
	b = appendString(b, e.Version)
	return append(b, '}'), nil
}

// AppendJSONUUID appends id's canonical text form as a JSON string, quotes
// included, without allocating: the canonical form uses it, and so does
// the API's answer to a single event (httpapi), the commonest response.
func AppendJSONUUID(b []byte, id uuid.UUID) []byte {
	var buf [36]byte
	hex.Encode(buf[0:8], id[0:4])
	buf[8] = '-'
	hex.Encode(buf[9:13], id[4:6])
	buf[13] = '-'
	hex.Encode(buf[14:18], id[6:8])
	buf[18] = '-'
	hex.Encode(buf[19:23], id[8:10])
	buf[23] = '-'
	hex.Encode(buf[24:], id[10:])
	b = append(b, '"')
	b = append(b, buf[:]...)
	return append(b, '"')
}

// CanonicalData returns event_data in a form that does not depend on how it
// was spelled: object keys sorted, no insignificant white space, string
// escapes resolved, and numbers written as PostgreSQL's jsonb writes them
// (1e2 becomes 100, -0 becomes 0, trailing fraction zeros are kept). That
// last rule is what lets the hash computed from a client's bytes at write
// time match the one recomputed from the stored jsonb at verification.
//
// The bytes are exactly those that decoding raw with encoding/json (numbers
// kept as written, a repeated key's last value winning) and marshaling the
// result gave before this encoder was written (stored hashes depend on
// them), including for strings that are not valid UTF-8. Like that decoder
// it reads the first JSON value in raw and ignores whatever follows.
func CanonicalData(raw []byte) ([]byte, error) {
	// The encoder itself lives on the stack; only its scratch space, which
	// grows to fit the documents seen, comes from the pool.
	sc := canonScratches.Get().(*canonScratch)
	e := canonEncoder{src: raw, out: make([]byte, 0, len(raw)), canonScratch: *sc}
	defer e.release(sc)
	e.i = skipSpace(raw, 0)
	ok, err := false, error(nil)
	if e.i < len(raw) {
		e.out, ok, err = e.value(e.out)
	}
	if !ok {
		return nil, fmt.Errorf("audit: canonical event_data: %w", canonicalSyntaxError(raw))
	}
	if err != nil {
		return nil, err
	}
	return e.out, nil
}

// canonicalSyntaxError returns encoding/json's word on raw that the encoder
// refused, so that the error reads as it always did.
func canonicalSyntaxError(raw []byte) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return err
	}
	return errors.New("the canonical encoder refused valid JSON")
}

// canonEncoder writes the canonical form of one JSON value while reading it.
// An object's members are written in the order they come and then, unless
// that order is already the sorted one, moved into order in one copy.
type canonEncoder struct {
	src   []byte
	i     int
	depth int
	out   []byte
	canonScratch
}

// canonScratch is an encoder's working space.
type canonScratch struct {
	// members holds the members of the objects being written, innermost
	// last; keys and str hold decoded keys and strings.
	members   []canonMember
	keys, str []byte
	// tmp is where an object is put in order before it goes back to out.
	tmp []byte
	// errs holds the numbers out of range that canonMember.err points to.
	errs []error
}

// canonScratches keeps working space grown by earlier encodings, so that
// an encoding allocates little more than its result.
var canonScratches = sync.Pool{New: func() any { return new(canonScratch) }}

// release returns e's working space to the pool, unless an unusual
// document grew it large.
func (e *canonEncoder) release(sc *canonScratch) {
	if cap(e.members) > 1024 || cap(e.keys)+cap(e.str)+cap(e.tmp) > 64<<10 {
		return
	}
	clear(e.errs[:cap(e.errs)])
	*sc = canonScratch{members: e.members[:0], keys: e.keys[:0], str: e.str[:0], tmp: e.tmp[:0], errs: e.errs[:0]}
	canonScratches.Put(sc)
}

// canonMember is one member of an object being written. It holds no
// pointers, so that sorting members is plain copying.
type canonMember struct {
	k0, k1 int // the decoded key: in keys if decoded, else in src
	m0, m1 int // "key":value in out
	// err is 1 + the index in errs of a number out of range in the value,
	// or 0. It counts only if no later member has the same key.
	err     int
	decoded bool
	// prefix is the key's first 8 bytes, big-endian, zero-padded: most
	// keys differ there, so most comparisons are one of integers.
	prefix uint64
}

func keyPrefix(k []byte) uint64 {
	if len(k) >= 8 {
		return binary.BigEndian.Uint64(k)
	}
	var p uint64
	for i := range 8 {
		p <<= 8
		if i < len(k) {
			p |= uint64(k[i])
		}
	}
	return p
}

// less orders members by key, bytewise as Go compares strings.
func (e *canonEncoder) less(a, b *canonMember) bool {
	if a.prefix != b.prefix {
		return a.prefix < b.prefix
	}
	return bytes.Compare(e.key(a), e.key(b)) < 0
}

// sortMembers sorts ms by key, stably, so that of members with the same key
// the last one, which encoding/json keeps, is the last of its run.
func (e *canonEncoder) sortMembers(ms []canonMember) {
	if len(ms) > 32 {
		slices.SortStableFunc(ms, func(a, b canonMember) int {
			switch {
			case e.less(&a, &b):
				return -1
			case e.less(&b, &a):
				return 1
			}
			return 0
		})
		return
	}
	for i := 1; i < len(ms); i++ {
		for j := i; j > 0 && e.less(&ms[j], &ms[j-1]); j-- {
			ms[j], ms[j-1] = ms[j-1], ms[j]
		}
	}
}

func (e *canonEncoder) key(m *canonMember) []byte {
	if m.decoded {
		return e.keys[m.k0:m.k1]
	}
	return e.src[m.k0:m.k1]
}

// value writes the value at e.i. ok false is a syntax error, which is final;
// err is a number out of range, after which the value is still read to the
// end, because a syntax error further on takes precedence.
func (e *canonEncoder) value(out []byte) (_ []byte, ok bool, err error) {
	if e.i >= len(e.src) {
		return out, false, nil
	}
	switch c := e.src[e.i]; {
	case c == '"':
		out, ok = e.string(out)
		return out, ok, nil
	case c == '{':
		return e.object(out)
	case c == '[':
		return e.array(out)
	case c == '-' || isDigit(c):
		return e.number(out)
	case c == 't' || c == 'f' || c == 'n':
		start := e.i
		if e.i, ok = scanLiteral(e.src, e.i); ok {
			out = append(out, e.src[start:e.i]...)
		}
		return out, ok, nil
	}
	return out, false, nil
}

// string writes the string at e.i as json.Marshal writes the string
// encoding/json decodes from it.
func (e *canonEncoder) string(out []byte) ([]byte, bool) {
	start := e.i
	var info strInfo
	var ok bool
	if e.i, ok = scanString(e.src, e.i, &info); !ok {
		return out, false
	}
	s := e.src[start+1 : e.i-1]
	if info.esc || info.nonASCII {
		e.str = unquote(e.str[:0], s)
		s = e.str
	}
	return appendString(out, s), true
}

func (e *canonEncoder) number(out []byte) (_ []byte, ok bool, err error) {
	start := e.i
	if e.i, ok = scanNumber(e.src, e.i); !ok {
		return out, false, nil
	}
	tok := e.src[start:e.i]
	if hasExponent(tok) {
		n, err := NormalizeNumber(string(tok))
		if err == nil && len(out)+len(n) > MaxCanonicalDataBytes {
			return out, true, fmt.Errorf("audit: canonical event_data: %w", ErrCanonicalTooLarge)
		}
		out = append(out, n...)
		return out, true, err
	}
	// Without an exponent NormalizeNumber changes nothing but the sign of
	// zero; this is its first branch without the allocations.
	mant := tok
	if mant[0] == '-' {
		mant = mant[1:]
	}
	intPart, frac, _ := bytes.Cut(mant, []byte{'.'})
	if len(intPart) > maxNumericIntDigits || len(frac) > maxNumericFracDigits {
		return out, true, fmt.Errorf("audit: number: %w", ErrNumberRange)
	}
	if len(mant) < len(tok) && len(bytes.Trim(mant, "0.")) == 0 {
		tok = mant // numeric has no negative zero
	}
	out = append(out, tok...)
	return out, true, nil
}

func hasExponent(tok []byte) bool {
	for _, c := range tok {
		if c == 'e' || c == 'E' {
			return true
		}
	}
	return false
}

func (e *canonEncoder) array(out []byte) (_ []byte, ok bool, err error) {
	if e.depth++; e.depth > maxNesting {
		return out, false, nil
	}
	src := e.src
	out = append(out, '[')
	e.i = skipSpace(src, e.i+1)
	if e.i < len(src) && src[e.i] == ']' {
		e.i++
		e.depth--
		out = append(out, ']')
		return out, true, nil
	}
	for {
		var verr error
		out, ok, verr = e.value(out)
		if !ok {
			return out, false, nil
		}
		if err == nil {
			err = verr
		}
		if e.i = skipSpace(src, e.i); e.i >= len(src) {
			return out, false, nil
		}
		switch src[e.i] {
		case ',':
			out = append(out, ',')
			e.i = skipSpace(src, e.i+1)
		case ']':
			out = append(out, ']')
			e.i++
			e.depth--
			return out, true, err
		default:
			return out, false, nil
		}
	}
}

func (e *canonEncoder) object(out []byte) (_ []byte, ok bool, err error) {
	if e.depth++; e.depth > maxNesting {
		return out, false, nil
	}
	src := e.src
	start := len(out)
	out = append(out, '{')
	e.i = skipSpace(src, e.i+1)
	if e.i < len(src) && src[e.i] == '}' {
		e.i++
		e.depth--
		out = append(out, '}')
		return out, true, nil
	}
	base, keysBase, errsBase := len(e.members), len(e.keys), len(e.errs)
	sorted := true
	for {
		if e.i >= len(src) || src[e.i] != '"' {
			return out, false, nil
		}
		k0 := e.i
		var info strInfo
		if e.i, ok = scanString(src, e.i, &info); !ok {
			return out, false, nil
		}
		m := canonMember{k0: k0 + 1, k1: e.i - 1}
		if info.esc || info.nonASCII {
			m.k0 = len(e.keys)
			e.keys = unquote(e.keys, src[k0+1:e.i-1])
			m.k1, m.decoded = len(e.keys), true
		}
		key := e.key(&m)
		m.prefix = keyPrefix(key)
		if e.i = skipSpace(src, e.i); e.i >= len(src) || src[e.i] != ':' {
			return out, false, nil
		}
		e.i = skipSpace(src, e.i+1)
		if len(e.members) > base {
			sorted = sorted && e.less(&e.members[len(e.members)-1], &m)
			out = append(out, ',')
		}
		m.m0 = len(out)
		out = appendString(out, key)
		out = append(out, ':')
		var verr error
		out, ok, verr = e.value(out)
		if !ok {
			return out, false, nil
		}
		m.m1 = len(out)
		if verr != nil {
			e.errs = append(e.errs, verr)
			m.err = len(e.errs)
		}
		e.members = append(e.members, m)
		if e.i = skipSpace(src, e.i); e.i >= len(src) {
			return out, false, nil
		}
		if src[e.i] == '}' {
			e.i++
			break
		}
		if src[e.i] != ',' {
			return out, false, nil
		}
		e.i = skipSpace(src, e.i+1)
	}
	ms := e.members[base:]
	firstErr := 0
	if sorted {
		for _, m := range ms {
			if m.err != 0 {
				firstErr = m.err
				break
			}
		}
		out = append(out, '}')
	} else {
		e.sortMembers(ms)
		e.tmp = append(e.tmp[:0], '{')
		for j := range ms {
			m := &ms[j]
			if j+1 < len(ms) && m.prefix == ms[j+1].prefix && bytes.Equal(e.key(m), e.key(&ms[j+1])) {
				continue
			}
			if len(e.tmp) > 1 {
				e.tmp = append(e.tmp, ',')
			}
			e.tmp = append(e.tmp, out[m.m0:m.m1]...)
			if firstErr == 0 {
				firstErr = m.err
			}
		}
		e.tmp = append(e.tmp, '}')
		out = append(out[:start], e.tmp...)
	}
	if firstErr != 0 {
		err = e.errs[firstErr-1]
	}
	e.members, e.keys, e.errs = e.members[:base], e.keys[:keysBase], e.errs[:errsBase]
	e.depth--
	return out, true, err
}

// Limits of PostgreSQL's numeric type, which jsonb uses for every number.
const (
	maxNumericIntDigits  = 131072
	maxNumericFracDigits = 16383
	// maxNumericExponent bounds the exponent numeric_in accepts at all
	// (INT_MAX/2, exclusive), whatever the digits: 0e1073741822 is 0.
	maxNumericExponent = 1<<30 - 1
)

// MaxCanonicalDataBytes bounds the work of CanonicalData. Numbers are
// written out in full, as PostgreSQL's numeric prints them, so 8 bytes of
// JSON (1e131071) become 131,072 digits: without a bound, an event_data
// well under MaxDataBytes could take gigabytes to hash. New events are held
// to the tighter MaxDataBytes by the decoder; this looser bound stays so
// that rows stored before that rule still verify.
const MaxCanonicalDataBytes = 4 * MaxDataBytes

// ErrCanonicalTooLarge is returned (wrapped) by CanonicalData when the
// canonical form would exceed MaxCanonicalDataBytes. The decoder reports it
// as a field error of event_data.
var ErrCanonicalTooLarge = errors.New("event_data is too large once its numbers are written out in full")

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
