package query

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"time"

	"github.com/google/uuid"

	"kubernaut.ai/datastorage/internal/store"
)

// Cursor is the position after the last row of a page. Its text form is
// opaque to clients: version byte, order, microseconds since the epoch, and
// the event id, base64url-encoded.
type Cursor struct {
	Timestamp time.Time
	ID        uuid.UUID
	Ascending bool
}

const cursorVersion = 1

var errBadCursor = errors.New("query: malformed cursor")

// The times a cursor may hold: years 1 to 9999, what RFC 3339 can write
// and well inside the ranges of Go and of PostgreSQL's timestamptz.
var (
	minCursorMicros = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()
	maxCursorMicros = time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC).UnixMicro()
)

// Encode returns the cursor's text form.
func (c Cursor) Encode() string {
	var b [26]byte
	b[0] = cursorVersion
	if c.Ascending {
		b[1] = 1
	}
	binary.BigEndian.PutUint64(b[2:10], uint64(c.Timestamp.UnixMicro()))
	copy(b[10:], c.ID[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// DecodeCursor parses a cursor's text form.
func DecodeCursor(s string) (Cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != 26 || b[0] != cursorVersion || b[1] > 1 {
		return Cursor{}, errBadCursor
	}
	var c Cursor
	c.Ascending = b[1] == 1
	micros := int64(binary.BigEndian.Uint64(b[2:10]))
	if micros < minCursorMicros || micros > maxCursorMicros {
		// Not a time this service stores: a forged cursor, which would
		// otherwise reach PostgreSQL as a timestamp out of its range.
		return Cursor{}, errBadCursor
	}
	c.Timestamp = time.UnixMicro(micros).UTC()
	copy(c.ID[:], b[10:])
	return c, nil
}

func (c *Cursor) keyset() *store.Keyset {
	if c == nil {
		return nil
	}
	return &store.Keyset{Timestamp: c.Timestamp, ID: c.ID}
}
