package audit_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
)

func TestTimeMarshalsAsUTCWithSixFractionalDigits(t *testing.T) {
	t.Parallel()
	plus2 := time.FixedZone("+02", 2*60*60)
	tests := []struct {
		name string
		in   time.Time
		want string
	}{
		{"whole second", time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC), `"2026-11-22T10:00:00.000000Z"`},
		{"microseconds", time.Date(2026, 11, 22, 10, 0, 0, 123456000, time.UTC), `"2026-11-22T10:00:00.123456Z"`},
		{"one microsecond", time.Date(2026, 11, 22, 10, 0, 0, 1000, time.UTC), `"2026-11-22T10:00:00.000001Z"`},
		{"nanoseconds are cut, not rounded", time.Date(2026, 11, 22, 10, 0, 0, 999999999, time.UTC), `"2026-11-22T10:00:00.999999Z"`},
		{"an offset is converted to UTC", time.Date(2026, 11, 22, 1, 30, 0, 0, plus2), `"2026-11-21T23:30:00.000000Z"`},
		{"a local zone is converted to UTC", time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("EST", -5*60*60)), `"2026-01-01T05:00:00.000000Z"`},
		{"zero time", time.Time{}, `"0001-01-01T00:00:00.000000Z"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := json.Marshal(audit.Time(tt.in))
			require.NoError(t, err)
			assert.Equal(t, tt.want, string(b))
			assert.Equal(t, tt.want[1:len(tt.want)-1], audit.Time(tt.in).String())
		})
	}
}

func TestNewTimeTruncatesToMicrosecondsInUTC(t *testing.T) {
	t.Parallel()
	in := time.Date(2026, 11, 22, 1, 30, 0, 123456789, time.FixedZone("+02", 2*60*60))
	got := audit.NewTime(in).Std()
	assert.Equal(t, time.Date(2026, 11, 21, 23, 30, 0, 123456000, time.UTC), got)
	assert.Equal(t, time.UTC, got.Location())
}

func TestTimeUnmarshalsAnyRFC3339Timestamp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want time.Time
	}{
		{"Z without fraction", `"2026-11-22T10:00:00Z"`, time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)},
		{"six digits", `"2026-11-22T10:00:00.123456Z"`, time.Date(2026, 11, 22, 10, 0, 0, 123456000, time.UTC)},
		{"nine digits truncated", `"2026-11-22T10:00:00.123456789Z"`, time.Date(2026, 11, 22, 10, 0, 0, 123456000, time.UTC)},
		{"offset moved to UTC", `"2026-11-22T12:00:00+02:00"`, time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)},
		{"negative offset", `"2026-11-21T23:00:00-11:00"`, time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got audit.Time
			require.NoError(t, json.Unmarshal([]byte(tt.in), &got))
			assert.Equal(t, tt.want, got.Std())
			assert.Equal(t, time.UTC, got.Std().Location())
		})
	}
}

func TestTimeRefusesWhatIsNotAnRFC3339Timestamp(t *testing.T) {
	t.Parallel()
	for _, in := range []string{`"2026-11-22T10:00:00"`, `"2026-11-22"`, `"2026-11-22 10:00:00Z"`, `"yesterday"`, `1764000000`, `""`} {
		var got audit.Time
		assert.Error(t, json.Unmarshal([]byte(in), &got), in)
	}
}

func TestDateMarshalsAsDateOnly(t *testing.T) {
	t.Parallel()
	d := audit.DateOf(time.Date(2026, 11, 22, 23, 59, 59, 999999999, time.UTC))
	b, err := json.Marshal(d)
	require.NoError(t, err)
	assert.Equal(t, `"2026-11-22"`, string(b))
	assert.Equal(t, "2026-11-22", d.String())
	assert.Equal(t, time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC), d.Std())

	var back audit.Date
	require.NoError(t, json.Unmarshal(b, &back))
	assert.Equal(t, d, back)
}

func TestDateOfIsTheUTCCalendarDate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   time.Time
		want string
	}{
		{"midnight UTC", time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC), "2026-11-22"},
		{"last nanosecond of the day", time.Date(2026, 11, 22, 23, 59, 59, 999999999, time.UTC), "2026-11-22"},
		{"east of UTC, before UTC midnight", time.Date(2026, 11, 22, 1, 0, 0, 0, time.FixedZone("+02", 2*3600)), "2026-11-21"},
		{"west of UTC, after UTC midnight", time.Date(2026, 11, 22, 20, 0, 0, 0, time.FixedZone("-05", -5*3600)), "2026-11-23"},
		{"leap day", time.Date(2028, 2, 29, 12, 0, 0, 0, time.UTC), "2028-02-29"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := audit.DateOf(tt.in)
			assert.Equal(t, tt.want, d.String())
			assert.Equal(t, time.UTC, d.Std().Location())
			assert.Zero(t, d.Std().Sub(d.Std().Truncate(24*time.Hour)), "midnight")
		})
	}
}

func TestDateRefusesWhatIsNotADate(t *testing.T) {
	t.Parallel()
	for _, in := range []string{`"2026-11-22T00:00:00Z"`, `"2026-13-01"`, `"2026-02-30"`, `"22-11-2026"`, `20261122`} {
		var d audit.Date
		assert.Error(t, json.Unmarshal([]byte(in), &d), in)
	}
}

func TestEventJSONUsesTheWireFormats(t *testing.T) {
	t.Parallel()
	e := audit.Event{
		ID:            uuid.MustParse("0192f3c4-5a6b-7c8d-9e0f-1a2b3c4d5e6f"),
		Version:       "1.0",
		Timestamp:     audit.NewTime(time.Date(2026, 11, 22, 10, 0, 0, 5000, time.UTC)),
		Date:          audit.DateOf(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)),
		Data:          json.RawMessage(`{}`),
		RetentionDays: 2555,
		CreatedAt:     audit.NewTime(time.Date(2026, 11, 22, 10, 0, 1, 0, time.UTC)),
	}
	b, err := json.Marshal(e)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	assert.Equal(t, "0192f3c4-5a6b-7c8d-9e0f-1a2b3c4d5e6f", m["event_id"])
	assert.Equal(t, "2026-11-22T10:00:00.000005Z", m["event_timestamp"])
	assert.Equal(t, "2026-11-22", m["event_date"])
	assert.Equal(t, "2026-11-22T10:00:01.000000Z", m["created_at"])
	assert.Contains(t, m, "parent_event_date")
	assert.Nil(t, m["parent_event_date"], "nullable: null, not omitted")
	assert.Contains(t, m, "legal_hold_placed_at")
	assert.Nil(t, m["legal_hold_placed_at"])
	assert.Equal(t, false, m["legal_hold"])
	assert.Equal(t, false, m["is_sensitive"])
	for _, k := range []string{"actor_type", "actor_id", "actor_ip", "resource_type", "resource_id", "parent_event_id",
		"namespace", "cluster_id", "severity", "duration_ms", "error_code", "error_message", "event_hash",
		"previous_event_hash", "hash_algorithm", "legal_hold_reason", "legal_hold_placed_by", "chain_seq"} {
		assert.NotContains(t, m, k, "empty optional members are omitted")
	}

	first := ""
	e.PreviousHash = &first
	b, err = json.Marshal(e)
	require.NoError(t, err)
	assert.Contains(t, string(b), `"previous_event_hash":""`, "the first event of a chain has an empty previous hash")
}
