package audit_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
)

// Issue 18, item 10: what the decoder used to change silently is refused,
// or left alone, but never altered.

func TestMemberNamesAreExactNotCaseFolded(t *testing.T) {
	t.Parallel()
	body := validBody(t, map[string]any{"correlation_id": "A"})
	body = body[:len(body)-1] + `,"Correlation_ID":"B","CORRELATION_ID":"C","ſeverity":"critical"}`
	ev, fe, err := validator().DecodeOne([]byte(body))
	require.NoError(t, err)
	require.Nil(t, fe)
	assert.Equal(t, "A", ev.CorrelationID, "a differently-cased name is an unknown member, ignored")
	assert.Equal(t, "info", ev.Severity, "ſ does not fold to s")

	// An escape spells the same name: it is that member.
	body = validBody(t, map[string]any{"correlation_id": absent})
	body = body[:len(body)-1] + `,"correlation\u005fid":"E"}`
	ev, fe, err = validator().DecodeOne([]byte(body))
	require.NoError(t, err)
	require.Nil(t, fe)
	assert.Equal(t, "E", ev.CorrelationID)
}

func TestDuplicateMembersAreRefusedByName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ extra, field string }{
		{`"correlation_id":"B"`, "correlation_id"},
		{`"correlation\u005fid":"B"`, "correlation_id"},
		{`"event_data":{"x":1}`, "event_data"},
		{`"correlation_id":"A"`, "correlation_id"}, // even the same value
	} {
		body := validBody(t, map[string]any{"correlation_id": "A"})
		body = body[:len(body)-1] + "," + tc.extra + "}"
		ev, fe, err := validator().DecodeOne([]byte(body))
		require.NoError(t, err)
		require.Nil(t, ev, tc.extra)
		assert.Equal(t, audit.FieldErrors{tc.field: "must appear only once in the object"}, fe, tc.extra)

		evs, fe, err := validator().DecodeBatch([]byte("["+validBody(t, nil)+","+body+"]"), 10)
		require.NoError(t, err)
		require.Nil(t, evs)
		assert.Equal(t, audit.FieldErrors{"[1]." + tc.field: "must appear only once in the object"}, fe)
	}
	// Unknown members may repeat: nobody reads them.
	body := validBody(t, nil)
	body = body[:len(body)-1] + `,"x":1,"x":2}`
	_, fe, err := validator().DecodeOne([]byte(body))
	require.NoError(t, err)
	require.Nil(t, fe)
}

func TestLoneSurrogatesInStringMembersAreRefused(t *testing.T) {
	t.Parallel()
	const msg = `must not contain an unpaired UTF-16 surrogate escape such as \ud800`
	for _, s := range []string{`"\ud800"`, `"a\udc00b"`, `"\udc00\ud800"`, `"\ud800\u0041"`, `"\uDBFF"`} {
		_, fe, err := validator().DecodeOne([]byte(validBody(t, map[string]any{"event_action": json.RawMessage(s)})))
		require.NoError(t, err)
		assert.Equal(t, audit.FieldErrors{"event_action": msg}, fe, s)
	}
	for _, s := range []string{`"\ud83d\ude00"`, `"\\ud800"`, `"\u00e9"`} {
		ev, fe, err := validator().DecodeOne([]byte(validBody(t, map[string]any{"event_action": json.RawMessage(s)})))
		require.NoError(t, err)
		require.Nil(t, fe, s)
		var want string
		require.NoError(t, json.Unmarshal([]byte(s), &want))
		assert.Equal(t, want, ev.Action)
	}
}

func TestTimestampsOutsideRFC3339AreRefused(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"2026-11-22T09:30:00+24:00", "2026-11-22T09:30:00+23:60", "2026-11-22T09:30:00-24:00",
		"2026-11-22T09:30:00,5Z", "2026-11-22T09:60:00Z", "2026-11-22T09:30:00+0100", "2026-11-22T09:30:00"} {
		_, err := audit.ParseTimestamp(s)
		require.Error(t, err, s)
		_, fe, err := validator().DecodeOne([]byte(validBody(t, map[string]any{"event_timestamp": s})))
		require.NoError(t, err)
		assert.Contains(t, fe, "event_timestamp", s)
	}
	for _, s := range []string{"2026-11-22T09:30:00Z", "2026-11-22T09:30:00.5Z", "2026-11-22T23:30:00+23:59",
		"2026-11-22T09:30:00.123456789-00:00", "2026-11-21T10:30:00-23:59"} {
		_, err := audit.ParseTimestamp(s)
		require.NoError(t, err, s)
	}
}

func TestDecodeObjectAndDecodeString(t *testing.T) {
	t.Parallel()
	obj, fe, err := audit.DecodeObject([]byte(` {"a":"x","A":"y","b":1,"b":2,"\u0061":"z"} `))
	require.NoError(t, err)
	assert.Equal(t, audit.FieldErrors{"a": "must appear only once in the object", "b": "must appear only once in the object"}, fe)
	assert.Equal(t, `"y"`, string(obj["A"]))

	_, _, err = audit.DecodeObject([]byte(`[1]`))
	require.ErrorIs(t, err, audit.ErrNotObject)
	_, _, err = audit.DecodeObject([]byte(`{"a":}`))
	var se *audit.SyntaxError
	require.ErrorAs(t, err, &se)
	_, _, err = audit.DecodeObject([]byte(`{"a":1} x`))
	require.ErrorAs(t, err, &se)

	for raw, want := range map[string]string{
		`7`: "must be a string", "\"\xff\"": "must be valid UTF-8", `"\ud800"`: `must not contain an unpaired UTF-16 surrogate escape such as \ud800`,
		`"a\u0000"`: "must not contain the NUL character", `""`: "must not be empty", `null`: "is required", `"abcd"`: "must be at most 3 characters, got 4",
	} {
		_, msg := audit.DecodeString(json.RawMessage(raw), 1, 3)
		assert.Equal(t, want, msg, raw)
	}
	_, msg := audit.DecodeString(nil, 1, 3)
	assert.Equal(t, "is required", msg)
	v, msg := audit.DecodeString(json.RawMessage(`"\u00e9t\u00e9"`), 1, 3)
	assert.Empty(t, msg)
	assert.Equal(t, "été", v)
}

func TestDecodeNotificationNamesAreExactAndUnique(t *testing.T) {
	t.Parallel()
	body := notificationBody(t, nil)
	n, fe, err := validator().DecodeNotification([]byte(body[:len(body)-1] + `,"Recipient":"mallory@example.com"}`))
	require.NoError(t, err)
	require.Nil(t, fe)
	assert.NotEqual(t, "mallory@example.com", n.Recipient)

	_, fe, err = validator().DecodeNotification([]byte(body[:len(body)-1] + `,"recipient":"mallory@example.com","status":"bogus"}`))
	require.NoError(t, err)
	assert.Equal(t, "must appear only once in the object", fe["recipient"])
	assert.Contains(t, fe, "status", "every fault at once")

	_, fe, err = validator().DecodeNotification([]byte(notificationBody(t, map[string]any{"recipient": json.RawMessage(`"\ud800"`)})))
	require.NoError(t, err)
	assert.Contains(t, fe, "recipient")
}
