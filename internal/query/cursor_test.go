package query_test

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/query"
)

func TestCursorRoundTripsThroughItsTextForm(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		c    query.Cursor
	}{
		{"descending", query.Cursor{Timestamp: time.Date(2026, 11, 22, 10, 0, 0, 123456000, time.UTC), ID: uuid.MustParse("0192f3c4-5a6b-7c8d-9e0f-1a2b3c4d5e6f")}},
		{"ascending", query.Cursor{Timestamp: time.Date(2026, 11, 22, 10, 0, 0, 1000, time.UTC), ID: uuid.MustParse("ffffffff-ffff-7fff-bfff-ffffffffffff"), Ascending: true}},
		{"epoch and nil id", query.Cursor{Timestamp: time.Unix(0, 0).UTC()}},
		{"before the epoch", query.Cursor{Timestamp: time.Date(1969, 7, 20, 20, 17, 40, 0, time.UTC), ID: uuid.New()}},
		{"far future", query.Cursor{Timestamp: time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC), ID: uuid.New(), Ascending: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := tt.c.Encode()
			assert.NotContains(t, s, "=", "unpadded")
			assert.Equal(t, queryEscaped(s), s, "safe in a query string as is")
			got, err := query.DecodeCursor(s)
			require.NoError(t, err)
			assert.Equal(t, tt.c, got)
		})
	}
}

// queryEscaped returns s with the characters a query string would need to escape
// replaced, so that equality means none are present.
func queryEscaped(s string) string {
	return strings.NewReplacer("+", "%2B", "/", "%2F", "&", "%26", "=", "%3D", "#", "%23").Replace(s)
}

func TestCursorKeepsMicrosecondsInUTC(t *testing.T) {
	t.Parallel()
	in := time.Date(2026, 11, 22, 12, 0, 0, 123456789, time.FixedZone("+02", 2*3600))
	got, err := query.DecodeCursor(query.Cursor{Timestamp: in}.Encode())
	require.NoError(t, err)
	assert.Equal(t, time.Date(2026, 11, 22, 10, 0, 0, 123456000, time.UTC), got.Timestamp)
	assert.Equal(t, time.UTC, got.Timestamp.Location())
}

func TestDecodeCursorRefusesTamperedAndTruncatedCursors(t *testing.T) {
	t.Parallel()
	c := query.Cursor{Timestamp: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC), ID: uuid.MustParse("0192f3c4-5a6b-7c8d-9e0f-1a2b3c4d5e6f")}
	good := c.Encode()
	raw, err := base64.RawURLEncoding.DecodeString(good)
	require.NoError(t, err)
	require.Len(t, raw, 26)
	with := func(f func(b []byte) []byte) string {
		b := f(append([]byte(nil), raw...))
		return base64.RawURLEncoding.EncodeToString(b)
	}
	tests := []struct {
		name string
		s    string
	}{
		{"empty", ""},
		{"truncated by one character", good[:len(good)-1]},
		{"truncated by one byte", with(func(b []byte) []byte { return b[:25] })},
		{"one byte too long", with(func(b []byte) []byte { return append(b, 0) })},
		{"doubled", good + good},
		{"unknown version", with(func(b []byte) []byte { b[0] = 2; return b })},
		{"version zero", with(func(b []byte) []byte { b[0] = 0; return b })},
		{"order byte out of range", with(func(b []byte) []byte { b[1] = 2; return b })},
		{"padded base64", base64.URLEncoding.EncodeToString(raw)},
		{"standard alphabet plus", good[:14] + "+" + good[15:]},
		{"standard alphabet slash", good[:14] + "/" + good[15:]},
		{"not base64", "!!!!" + good[4:]},
		{"white space", " " + good},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.NotEqual(t, good, tt.s)
			got, err := query.DecodeCursor(tt.s)
			require.Error(t, err)
			assert.Equal(t, query.Cursor{}, got)
		})
	}
}
