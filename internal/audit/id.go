package audit

import (
	"crypto/rand"
	"encoding/binary"
	"time"

	"github.com/google/uuid"
)

// NewServerID makes the id of an event that came without one: a UUIDv7
// whose timestamp is the event's own event_timestamp (in milliseconds), not
// the time of its arrival. So the id names its partition: IDDate of it is
// the event's event_date, exactly. That is what lets the store keep no
// audit_event_ids row for it (issue 15): a fresh id with 74 random bits
// cannot collide with any other, and every lookup that needs the id's date
// (GET /events/{id}, parents, a client's retry with this id) probes
// audit_events on that one date. RFC 9562 §6.1 lets an implementation take
// the timestamp from another source than the clock; ordering by id stays
// ordering by time, now by the event's.
func NewServerID(ts Time) uuid.UUID {
	var id uuid.UUID
	// crypto/rand.Read never fails (Go 1.24 and later).
	_, _ = rand.Read(id[6:])
	var ms [8]byte
	binary.BigEndian.PutUint64(ms[:], uint64(ts.Std().UnixMilli()))
	copy(id[:6], ms[2:])
	id[6] = id[6]&0x0f | 0x70 // version 7
	id[8] = id[8]&0x3f | 0x80 // variant RFC 9562
	return id
}

// IDDate returns the UTC calendar date of a UUIDv7's timestamp, and false
// for an id of any other version or variant. For an id made by
// NewServerID it is the event's event_date; for any other v7 id it is only
// where such an event would be, which the store checks before it trusts it.
func IDDate(id uuid.UUID) (Date, bool) {
	if id.Version() != 7 || id.Variant() != uuid.RFC4122 {
		return Date{}, false
	}
	var ms [8]byte
	copy(ms[2:], id[:6])
	return DateOf(time.UnixMilli(int64(binary.BigEndian.Uint64(ms[:])))), true
}
