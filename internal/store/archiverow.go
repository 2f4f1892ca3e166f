package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/google/uuid"

	"kubernaut.ai/datastorage/internal/archive"
)

// The archive's sorted rows decoded straight from PostgreSQL's binary
// format into Parquet rows. Going through audit.Event (scanEvent, then
// archive.RowOf) cost a string allocation per column, the hashes' hex
// encoding and decoding, and pgx's decoding plans: a third of the job's
// CPU. The values must stay exactly those of that path (the files of a
// month archived before read the same, and a month archived again is the
// same): archiverow_test.go compares both for awkward events.

// PostgreSQL's binary date and timestamp count from 2000-01-01.
const (
	pgEpochDays   = 10957 // 1970-01-01 to 2000-01-01
	pgEpochMicros = pgEpochDays * 86400 * 1_000_000
)

// rowDecoder decodes sorted rows; it remembers the last default actor_id it
// made, since a month's rows share a few categories.
type rowDecoder struct {
	cols [archiveColumnCount][]byte
	// category and actorID: the last category whose default actor_id was
	// made, and that id.
	category, actorID string
}

// rowExtras backs a row's optional values: one allocation per row for
// all of them instead of one each.
type rowExtras struct {
	actorIP, parentID, namespace, cluster, errCode, errMsg, holdReason, holdBy string
	parentDate, duration                                                       int32
	holdAt                                                                     time.Time
}

// decode fills r from an encoded sorted row (valid only during the call:
// r keeps none of it).
func (d *rowDecoder) decode(raw []byte, r *archive.Row) error {
	// Every text value is a substring of one copy of the row, the two
	// hashes share one slice: three allocations a row with extras.
	all := string(raw)
	at := 0
	var offs [archiveColumnCount][2]int // start, length (-1: NULL)
	for i := range offs {
		if len(raw)-at < 4 {
			return errShortRow
		}
		l := int(int32(binary.BigEndian.Uint32(raw[at:])))
		at += 4
		if l > len(raw)-at {
			return errShortRow
		}
		offs[i] = [2]int{at, l}
		if l < 0 {
			d.cols[i] = nil
			continue
		}
		d.cols[i] = raw[at : at+l]
		at += l
	}
	if at != len(raw) {
		return errors.New("store: archive sort: a row is longer than its columns")
	}
	text := func(i int) (string, bool) {
		if offs[i][1] < 0 {
			return "", false
		}
		return all[offs[i][0] : offs[i][0]+offs[i][1]], true
	}
	need := func(i int) (string, error) {
		s, ok := text(i)
		if !ok {
			return "", fmt.Errorf("store: archive sort: column %d is NULL", i)
		}
		return s, nil
	}
	// bad is the first fixed-size value of the wrong size; the row is
	// decoded on with zeros in its place and rejected at the end.
	var bad, err error
	fixed := func(i, n int) []byte {
		if len(d.cols[i]) != n {
			if bad == nil {
				bad = fmt.Errorf("store: archive sort: column %d has %d bytes, not %d", i, len(d.cols[i]), n)
			}
			return make([]byte, n)
		}
		return d.cols[i]
	}
	stamp := func(i int) time.Time {
		t, ok := pgTime(fixed(i, 8))
		if !ok && bad == nil {
			bad = fmt.Errorf("store: archive sort: column %d is an infinite timestamp", i)
		}
		return t
	}
	date := func(i int) int32 {
		v := int32(binary.BigEndian.Uint32(fixed(i, 4)))
		if (v == math.MaxInt32 || v == math.MinInt32) && bad == nil {
			bad = fmt.Errorf("store: archive sort: column %d is an infinite date", i)
		}
		return v + pgEpochDays
	}
	*r = archive.Row{}
	// ex is allocated only for a row that has an optional value.
	var ex *rowExtras
	extras := func() *rowExtras {
		if ex == nil {
			ex = &rowExtras{}
		}
		return ex
	}

	copy(r.EventID[:], fixed(0, 16))
	r.EventDate = date(1)
	r.EventTimestamp = stamp(2)
	strs := [...]*string{&r.Version, &r.EventType, &r.EventCategory, &r.EventAction, &r.EventOutcome, &r.CorrelationID}
	for i, p := range strs {
		if *p, err = need(3 + i); err != nil {
			return err
		}
	}
	// jsonb: a version byte (1), then the text.
	if data := d.cols[9]; len(data) < 1 || data[0] != 1 {
		return errors.New("store: archive sort: event_data is not jsonb version 1")
	}
	r.EventData = all[offs[9][0]+1 : offs[9][0]+offs[9][1]]
	var ok bool
	if r.ActorType, ok = text(10); !ok {
		r.ActorType = defaultActorType
	}
	if r.ActorID, ok = text(11); !ok {
		if r.EventCategory != d.category || d.actorID == "" {
			d.category, d.actorID = r.EventCategory, r.EventCategory+actorSuffix
		}
		r.ActorID = d.actorID
	}
	// opt is optString's rule: NULL and "" are both absent.
	opt := func(i int, field func(*rowExtras) *string, p **string) {
		if s, ok := text(i); ok && s != "" {
			dst := field(extras())
			*dst, *p = s, dst
		}
	}
	opt(12, func(x *rowExtras) *string { return &x.actorIP }, &r.ActorIP)
	if r.ResourceType, ok = text(13); !ok {
		r.ResourceType = r.EventCategory
	}
	if r.ResourceID, ok = text(14); !ok {
		r.ResourceID = r.CorrelationID
	}
	if d.cols[15] != nil {
		x := extras()
		x.parentID = uuid.UUID(fixed(15, 16)).String()
		r.ParentEventID = &x.parentID
	}
	if d.cols[16] != nil {
		x := extras()
		x.parentDate = date(16)
		r.ParentEventDate = &x.parentDate
	}
	opt(17, func(x *rowExtras) *string { return &x.namespace }, &r.Namespace)
	opt(18, func(x *rowExtras) *string { return &x.cluster }, &r.ClusterID)
	if r.Severity, err = need(19); err != nil {
		return err
	}
	if d.cols[20] != nil {
		x := extras()
		x.duration = int32(binary.BigEndian.Uint32(fixed(20, 4)))
		r.DurationMS = &x.duration
	}
	opt(21, func(x *rowExtras) *string { return &x.errCode }, &r.ErrorCode)
	opt(22, func(x *rowExtras) *string { return &x.errMsg }, &r.ErrorMessage)
	r.RetentionDays = int32(binary.BigEndian.Uint32(fixed(23, 4)))
	r.IsSensitive = fixed(24, 1)[0] != 0
	r.ChainSeq = int64(binary.BigEndian.Uint64(fixed(25, 8)))
	if d.cols[26] == nil || d.cols[27] == nil {
		return errors.New("store: archive sort: a row lacks event_hash or previous_event_hash")
	}
	hashes := make([]byte, len(d.cols[26])+len(d.cols[27]))
	n := copy(hashes, d.cols[26])
	copy(hashes[n:], d.cols[27])
	r.EventHash, r.PreviousEventHash = hashes[:n:n], hashes[n:]
	if r.HashAlgorithm, err = need(28); err != nil {
		return err
	}
	r.LegalHold = fixed(29, 1)[0] != 0
	opt(30, func(x *rowExtras) *string { return &x.holdReason }, &r.LegalHoldReason)
	opt(31, func(x *rowExtras) *string { return &x.holdBy }, &r.LegalHoldPlacedBy)
	if d.cols[32] != nil {
		x := extras()
		x.holdAt = stamp(32)
		r.LegalHoldPlacedAt = &x.holdAt
	}
	r.CreatedAt = stamp(33)
	return bad
}

// pgTime decodes a binary timestamptz (microseconds since 2000-01-01 UTC);
// ok is false for ±infinity, which has no time.Time (pgx refuses to scan
// it into one too).
func pgTime(b []byte) (t time.Time, ok bool) {
	v := int64(binary.BigEndian.Uint64(b))
	if v == math.MaxInt64 || v == math.MinInt64 {
		return time.Time{}, false
	}
	return time.UnixMicro(v + pgEpochMicros).UTC(), true
}
