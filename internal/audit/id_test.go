package audit

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAServerIDNamesItsEventsDate(t *testing.T) {
	for _, ts := range []time.Time{
		time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 12, 6, 23, 59, 59, 999_999_000, time.UTC),
		time.Date(2026, 2, 28, 12, 0, 0, 1000, time.FixedZone("x", -11*3600)),
	} {
		id := NewServerID(NewTime(ts))
		assert.Equal(t, uuid.Version(7), id.Version())
		assert.Equal(t, uuid.RFC4122, id.Variant())
		sec, nsec := id.Time().UnixTime()
		assert.Equal(t, ts.UnixMilli(), time.Unix(sec, nsec).UnixMilli(), "the v7 timestamp is the event's")
		d, ok := IDDate(id)
		require.True(t, ok)
		assert.Equal(t, DateOf(ts), d)
	}
	a, b := NewServerID(NewTime(time.Now())), NewServerID(NewTime(time.Now()))
	assert.NotEqual(t, a, b)
}

func TestIDDateOnlyForV7(t *testing.T) {
	_, ok := IDDate(uuid.New())
	assert.False(t, ok, "v4")
	_, ok = IDDate(uuid.NewSHA1(uuid.NameSpaceURL, []byte("x")))
	assert.False(t, ok, "v5")
	id := NewServerID(NewTime(time.Now()))
	id[8] &= 0x3f // variant NCS
	_, ok = IDDate(id)
	assert.False(t, ok, "not RFC 9562's variant")
}

func TestDecodeMakesTheIDFromTheEventTimestamp(t *testing.T) {
	now := time.Now().UTC()
	v := &Validator{MaxAge: 7 * 24 * time.Hour, MaxSkew: time.Hour, DefaultRetentionDays: 30}
	ts := now.Add(-50 * time.Hour)
	ev, fe, err := v.DecodeOne([]byte(`{"version":"1.0","event_type":"a.b","event_timestamp":"` + ts.Format(time.RFC3339Nano) +
		`","event_category":"workflow","event_action":"x","event_outcome":"success","correlation_id":"c","event_data":{}}`))
	require.NoError(t, err)
	require.Empty(t, fe)
	require.True(t, ev.ServerID())
	d, ok := IDDate(ev.ID)
	require.True(t, ok)
	assert.Equal(t, ev.Date, d, "a server-made id names its event's date, not the arrival's")
}
