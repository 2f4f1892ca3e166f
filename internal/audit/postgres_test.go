package audit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/testenv"
)

// These tests compare this package with a real PostgreSQL: the hash of an
// event is computed from the client's bytes at write time and recomputed
// from the stored jsonb at verification, so both must give the same
// canonical form.

func TestMain(m *testing.M) { testenv.Main(m) }

func connect(t *testing.T) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, testenv.NewDatabase(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// jsonbText returns PostgreSQL's text output of s read as jsonb, or the
// error PostgreSQL gives.
func jsonbText(t *testing.T, conn *pgx.Conn, s string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out string
	err := conn.QueryRow(ctx, `SELECT ($1::text)::jsonb::text`, s).Scan(&out)
	return out, err
}

// handPickedNumbers are the spellings most likely to differ.
var handPickedNumbers = []string{
	"0", "-0", "0.0", "-0.0", "-0.00", "0.000", "1", "-1", "42", "1.0", "1.50", "-2.500",
	"3.14159", "123456789012345678901234567890", "-98765432109876543210.0123456789",
	"1e2", "1E2", "1e+2", "1E+2", "1e-2", "1E-2", "1e0", "1e-0", "1e+0", "1.0e0", "1e002",
	"1e0000000000001", "1e-0000000000002", "1.50e1", "1.50E+1", "12.345e2", "12.345e3", "12.345e5",
	"123e-1", "1.5e-3", "-1.5e-1", "-2.5E+3", "0e-3", "-0e-3", "-0.0e-1", "0.00e1", "-0e5",
	"0e200000", "0.0e200000", "0e1073741822", "0.001e3", "0.0010e3", "0.001e2", "9.99e-1",
	"5e-324", "1.7976931348623157e308", "4.9406564584124654e-324", "2.2250738585072014E-308",
	"9007199254740993", "-9223372036854775809", "18446744073709551616", "0.1", "0.30000000000000004",
	"100e-2", "100e-3", "1000000e-6", "10.00e-1",
	"1e131071", "0.001e131074", "1e-16383", "0e-16383", "9.9e-16382",
	// Out of numeric's range: PostgreSQL refuses, NormalizeNumber must too.
	"1e131072", "1e131073", "100e131070", "1e-16384", "1.0e-16383", "10e-16384", "0e-16384",
	"1e1073741823", "1e-1073741823", "1e99999999999", "-1E-99999999999999999999",
}

// generatedNumbers returns n JSON numbers from a fixed seed: random signs,
// integer and fraction digits (trailing zeros included), and exponents in
// every spelling.
func generatedNumbers(n int) []string {
	r := rand.New(rand.NewPCG(20261122, 8))
	digits := func(k int) string {
		var b strings.Builder
		for range k {
			if r.IntN(4) == 0 {
				b.WriteByte('0') // zeros are where the rules are
			} else {
				b.WriteByte(byte('0' + r.IntN(10)))
			}
		}
		return b.String()
	}
	out := make([]string, 0, n)
	for range n {
		var b strings.Builder
		if r.IntN(2) == 0 {
			b.WriteByte('-')
		}
		if r.IntN(4) == 0 {
			b.WriteByte('0')
		} else {
			b.WriteByte(byte('1' + r.IntN(9)))
			b.WriteString(digits(r.IntN(25)))
		}
		if r.IntN(3) > 0 {
			b.WriteByte('.')
			b.WriteString(digits(1 + r.IntN(20)))
		}
		if r.IntN(3) > 0 {
			b.WriteString([]string{"e", "E"}[r.IntN(2)])
			b.WriteString([]string{"", "+", "-"}[r.IntN(3)])
			if r.IntN(5) == 0 {
				b.WriteString("00")
			}
			b.WriteString(fmt.Sprint(r.IntN(40)))
		}
		out = append(out, b.String())
	}
	return out
}

func TestNormalizeNumberMatchesPostgreSQLJSONB(t *testing.T) {
	t.Parallel()
	conn := connect(t)
	numbers := append(append([]string{}, handPickedNumbers...), generatedNumbers(200)...)
	for _, n := range numbers {
		require.True(t, json.Valid([]byte(n)), "test data: %q is not a JSON number", n)
		pg, pgErr := jsonbText(t, conn, n)
		got, err := audit.NormalizeNumber(n)
		if pgErr != nil {
			assert.ErrorIs(t, err, audit.ErrNumberRange, "%s: PostgreSQL refuses it (%v)", n, pgErr)
			continue
		}
		if assert.NoError(t, err, "%s: PostgreSQL gives %.40s", n, pg) {
			assert.Equal(t, pg, got, "%s", n)
		}
	}
}

// sameObjects are spellings a client might send, each of an object that
// PostgreSQL stores and writes back in its own spelling.
var sameObjects = []string{
	`{"event_type":"gateway.signal.received","b":1,"a":2,"aa":3,"ab":{"z":1,"y":[3,2,1]}}`,
	`{"s":"caf\u00e9 \u00E9t\u00e9","slash":"a\/b\/c","q":"\"quoted\"","bs":"back\\slash"}`,
	`{"ctl":"\b\f\n\r\t\u0001\u001f\u007f\u0020","del":"` + "\x7f" + `"}`,
	`{"html":"<script>&amp;</script>","ls":"\u2028\u2029","raw":"é😀"}`,
	`{"emoji":"\ud83d\ude00","pair":"\uD800\uDC00","text_escape":"\\u0000 \\ud800"}`,
	`{"n":[1e2,1E+2,-0,-0.00,1.50,1.50e1,1e-2,0e-3,123e-1,12345678901234567890.123456789000]}`,
	`{"nested":[[[1,[2,[3.0e0]]]],{"deep":{"deeper":{"deepest":[{"x":-1.5e-3}]}}}]}`,
	`{"empty_obj":{},"empty_arr":[],"t":true,"f":false,"nil":null,"zero":0,"neg":-42}`,
	`{"dup":1,"dup":2,"other":{"dup":"a","dup":"b"}}`,
	"{\n  \"spaced\" : [ 1 , 2 ] ,\r\n\t\"x\" : { }\n}",
	`{"":"empty key","a b":"space key","\u00e9":"escaped key","é2":"raw key"}`,
	`{"big":1e131071,"small":1e-16383,"zero":0e200000}`,
}

func TestCanonicalDataOfClientBytesEqualsCanonicalDataOfStoredJSONB(t *testing.T) {
	t.Parallel()
	conn := connect(t)
	for _, obj := range sameObjects {
		require.True(t, json.Valid([]byte(obj)), "test data: %s", obj)
		pgText, err := jsonbText(t, conn, obj)
		require.NoError(t, err, obj)

		// What the store reads back: the jsonb value scanned into a RawMessage.
		var stored json.RawMessage
		require.NoError(t, conn.QueryRow(context.Background(), `SELECT ($1::text)::jsonb`, obj).Scan(&stored))

		fromClient, err := audit.CanonicalData([]byte(obj))
		require.NoError(t, err, obj)
		fromText, err := audit.CanonicalData([]byte(pgText))
		require.NoError(t, err, pgText)
		fromStored, err := audit.CanonicalData(stored)
		require.NoError(t, err, string(stored))
		assert.Equal(t, string(fromClient), string(fromText), "client %s\nPostgreSQL %.200s", obj, pgText)
		assert.Equal(t, string(fromClient), string(fromStored), "client %s\nstored %.200s", obj, stored)
	}
}

func TestEventHashFromClientBytesVerifiesAgainstStoredJSONB(t *testing.T) {
	t.Parallel()
	conn := connect(t)
	for _, h := range []audit.Hasher{audit.NewHasher(nil), audit.NewHasher([]byte("k"))} {
		prev := ""
		for i, obj := range sameObjects {
			var stored json.RawMessage
			require.NoError(t, conn.QueryRow(context.Background(), `SELECT ($1::text)::jsonb`, obj).Scan(&stored))
			written := fullEvent()
			written.Data = json.RawMessage(obj)
			read := fullEvent()
			read.Data = stored
			w, err := written.Canonical()
			require.NoError(t, err)
			r, err := read.Canonical()
			require.NoError(t, err)
			hashAtWrite := h.Link(prev, w)
			assert.Equal(t, hashAtWrite, h.Link(prev, r), "%s event %d: %s", h.Algorithm(), i, obj)
			prev = hashAtWrite
		}
	}
}

// TestValidatorAcceptsExactlyWhatJSONBStores checks the event_data rules
// that exist because PostgreSQL refuses what encoding/json accepts: an
// accepted event_data must never become a database error, and a refused one
// must be one PostgreSQL refuses too.
func TestValidatorAcceptsExactlyWhatJSONBStores(t *testing.T) {
	t.Parallel()
	conn := connect(t)
	datas := []string{
		`{"a":"\u0000"}`, `{"a\u0000":1}`, `{"a":"\\u0000"}`, `{"a":"\\\u0000"}`, `{"a":"\\\\u0000"}`,
		`{"a":"\ud800"}`, `{"a":"\udc00"}`, `{"a":"\ud800x"}`, `{"a":"\ud800\u0041"}`, `{"a":"\ud800\ud800\udc00"}`,
		`{"a":"\udbff\udfff"}`, `{"a":"\ud800\udc00"}`, `{"a":"\\ud800"}`, `{"\ud800":1}`, `{"a":"\uDBFF"}`,
		`{"a":"\u0001"}`, `{"a":"\uFFFF"}`, `{"a":"\uFFFE\uFDD0"}`,
		`{"n":1e131071}`, `{"n":1e131072}`, `{"n":1e-16383}`, `{"n":1e-16384}`, `{"n":0e999999}`,
		`{"n":1e0000000000001}`, `{"n":-0e-16384}`, `{"n":[1e1073741823]}`,
	}
	for _, data := range datas {
		require.True(t, json.Valid([]byte(data)), "test data: %s", data)
		_, pgErr := jsonbText(t, conn, data)
		_, fe := decodeOne(t, map[string]any{"event_data": json.RawMessage(data)})
		if pgErr == nil {
			assert.Empty(t, fe, "%s: PostgreSQL stores it", data)
		} else {
			assert.Contains(t, fe, "event_data", "%s: PostgreSQL refuses it (%v)", data, pgErr)
		}
	}
}

// TestValidatorRefusesStringsPostgreSQLTextCannotHold covers the string
// members, which go to text columns.
func TestValidatorRefusesStringsPostgreSQLTextCannotHold(t *testing.T) {
	t.Parallel()
	conn := connect(t)
	tests := []struct {
		name     string
		raw      string // the JSON string as sent
		value    string // what it decodes to
		accepted bool
	}{
		{"plain", `"ok"`, "ok", true},
		{"escaped non-ASCII", `"caf\u00e9"`, "café", true},
		{"invalid UTF-8", "\"a\xffb\"", "a\xffb", false},
		{"truncated UTF-8 after an escape", "\"\\n\xc3\"", "\n\xc3", false},
		{"UTF-8 encoded surrogate", "\"\xed\xa0\x80\"", "\xed\xa0\x80", false},
		{"escaped NUL", `"a\u0000"`, "a\x00", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got string
			pgErr := conn.QueryRow(context.Background(), `SELECT $1::text`, tt.value).Scan(&got)
			assert.Equal(t, tt.accepted, pgErr == nil, "PostgreSQL: %v", pgErr)

			body := strings.Replace(validBody(t, map[string]any{"event_type": "PLACEHOLDER"}), `"PLACEHOLDER"`, tt.raw, 1)
			ev, fe, err := validator().DecodeOne([]byte(body))
			require.NoError(t, err)
			if tt.accepted {
				require.Empty(t, fe)
				assert.Equal(t, tt.value, ev.Type)
			} else {
				assert.Contains(t, fe, "event_type")
			}
		})
	}
}
