package query_test

import (
	"maps"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/query"
)

// now is the fixed clock of these tests.
var now = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

const badTime = "must be <n>d, a duration such as 24h, an RFC 3339 timestamp, YYYY-MM-DDTHH:MM:SS or YYYY-MM-DD"

func parse(t *testing.T, q string) (query.ListParams, audit.FieldErrors) {
	t.Helper()
	v, err := url.ParseQuery(q)
	require.NoError(t, err)
	return query.ParseList(v, now)
}

func TestParseListDefaults(t *testing.T) {
	t.Parallel()
	p, fe := parse(t, "")
	require.Empty(t, fe)
	assert.Equal(t, query.ListParams{Limit: 50}, p)
	assert.Equal(t, 50, query.DefaultLimit)
	assert.Equal(t, 1000, query.MaxLimit)
}

func TestParseListCopiesEveryExactMatchFilter(t *testing.T) {
	t.Parallel()
	p, fe := parse(t, "correlation_id=rr-1&event_type=t&event_category=gateway&event_outcome=failure"+
		"&severity=high&namespace=prod&cluster_id=c1&actor_id=alice&resource_type=Pod&resource_id=pod%2F1"+
		"&unknown=ignored")
	require.Empty(t, fe)
	assert.Equal(t, query.EventFilter{
		CorrelationID: "rr-1", EventType: "t", EventCategory: "gateway", EventOutcome: "failure",
		Severity: "high", Namespace: "prod", ClusterID: "c1", ActorID: "alice", ResourceType: "Pod",
		ResourceID: "pod/1",
	}, p.Filter)
}

func TestParseListReadsSinceAndUntil(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		value string
		want  time.Time
	}{
		{"whole days", "1d", now.Add(-24 * time.Hour)},
		{"many days", "30d", now.AddDate(0, 0, -30)},
		{"zero days", "0d", now},
		{"fractional days", "0.5d", now.Add(-12 * time.Hour)},
		{"fractional days above one", "1.25d", now.Add(-30 * time.Hour)},
		{"minutes", "90m", now.Add(-90 * time.Minute)},
		{"hours", "24h", now.Add(-24 * time.Hour)},
		{"compound duration", "1h30m15s", now.Add(-(time.Hour + 30*time.Minute + 15*time.Second))},
		{"fractional hours", "1.5h", now.Add(-90 * time.Minute)},
		{"RFC 3339 UTC", "2026-11-20T08:00:00Z", time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)},
		{"RFC 3339 with fraction", "2026-11-20T08:00:00.123456Z", time.Date(2026, 11, 20, 8, 0, 0, 123456000, time.UTC)},
		{"RFC 3339 with positive offset", "2026-11-20T10:00:00+02:00", time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)},
		{"RFC 3339 with negative offset", "2026-11-20T03:00:00-05:00", time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)},
		{"date and time without zone is UTC", "2026-11-20T08:00:00", time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)},
		{"date only is UTC midnight", "2026-11-20", time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, param := range []string{"since", "until"} {
				p, fe := parse(t, param+"="+url.QueryEscape(tt.value))
				require.Empty(t, fe, param)
				got := p.Filter.Since
				if param == "until" {
					got = p.Filter.Until
				}
				assert.True(t, tt.want.Equal(got), "%s=%s: want %s, got %s", param, tt.value, tt.want, got)
				assert.Equal(t, time.UTC, got.Location(), "%s=%s", param, tt.value)
			}
		})
	}
}

func TestParseListRefusesBadSinceAndUntil(t *testing.T) {
	t.Parallel()
	for _, value := range []string{
		"yesterday", "1w", "1D", "-1d", "-24h", "1.d", ".5d", "d", "1e3d", "24", "1 d",
		"2026-13-01", "2026-02-30", "2026-11-20T25:00:00", "2026-11-20 08:00:00", "20261120",
		"2026-11-20T08:00:00+0200", "1000000d", "106752d", "99999999999999999999d", "9999999999h",
	} {
		for _, param := range []string{"since", "until"} {
			p, fe := parse(t, param+"="+url.QueryEscape(value))
			assert.Equal(t, audit.FieldErrors{param: badTime}, fe, "%s=%s", param, value)
			assert.Equal(t, query.ListParams{}, p)
		}
	}
}

func TestParseTimeAcceptsTheLargestDayCountADurationHolds(t *testing.T) {
	t.Parallel()
	got, err := query.ParseTime("106751d", now)
	require.NoError(t, err)
	assert.Equal(t, now.Add(-106751*24*time.Hour), got)
	assert.True(t, got.Before(now))
}

func TestParseListRefusesSinceAfterUntil(t *testing.T) {
	t.Parallel()
	_, fe := parse(t, "since=2026-11-21&until=2026-11-20")
	assert.Equal(t, audit.FieldErrors{"since": "must not be later than until"}, fe)

	_, fe = parse(t, "since=1d&until=2d")
	assert.Equal(t, audit.FieldErrors{"since": "must not be later than until"}, fe)

	p, fe := parse(t, "since=2026-11-20&until=2026-11-20T00:00:00Z")
	require.Empty(t, fe, "equal bounds are one instant, both inclusive")
	assert.Equal(t, p.Filter.Since, p.Filter.Until)
}

func TestParseListReadsDetailKeyAndValueTogether(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		query     string
		wantKey   string
		wantValue string
		wantErr   audit.FieldErrors
	}{
		{"both", "detail_key=workflow_id&detail_value=wf-1", "workflow_id", "wf-1", nil},
		{"empty value", "detail_key=Some_Key9&detail_value=", "Some_Key9", "", nil},
		{"value with any characters", "detail_key=k&detail_value=" + url.QueryEscape(`a b/"c'`), "k", `a b/"c'`, nil},
		{"key without value", "detail_key=k", "", "", audit.FieldErrors{"detail_value": "is required with detail_key"}},
		{"value without key", "detail_value=v", "", "", audit.FieldErrors{"detail_key": "is required with detail_value"}},
		{"key with a hyphen", "detail_key=a-b&detail_value=v", "", "", audit.FieldErrors{"detail_key": "must match ^[a-zA-Z0-9_]+$"}},
		{"key with a dot path", "detail_key=a.b&detail_value=v", "", "", audit.FieldErrors{"detail_key": "must match ^[a-zA-Z0-9_]+$"}},
		{"key with SQL", "detail_key=" + url.QueryEscape("a' OR '1'='1") + "&detail_value=v", "", "", audit.FieldErrors{"detail_key": "must match ^[a-zA-Z0-9_]+$"}},
		{"empty key", "detail_key=&detail_value=v", "", "", audit.FieldErrors{"detail_key": "must match ^[a-zA-Z0-9_]+$"}},
		{"key with a trailing newline", "detail_key=" + url.QueryEscape("k\n") + "&detail_value=v", "", "", audit.FieldErrors{"detail_key": "must match ^[a-zA-Z0-9_]+$"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, fe := parse(t, tt.query)
			if tt.wantErr != nil {
				assert.Equal(t, tt.wantErr, fe)
				return
			}
			require.Empty(t, fe)
			assert.Equal(t, tt.wantKey, p.Filter.DetailKey)
			assert.Equal(t, tt.wantValue, p.Filter.DetailValue)
		})
	}
}

func TestParseListBoundsLimitAndOffset(t *testing.T) {
	t.Parallel()
	const limitErr = "must be an integer between 1 and 1000"
	const offsetErr = "must be an integer of at least 0"
	tests := []struct {
		query      string
		wantLimit  int
		wantOffset int
		wantErr    audit.FieldErrors
	}{
		{"limit=1", 1, 0, nil},
		{"limit=1000", 1000, 0, nil},
		{"limit=", 50, 0, nil},
		{"limit=0", 0, 0, audit.FieldErrors{"limit": limitErr}},
		{"limit=1001", 0, 0, audit.FieldErrors{"limit": limitErr}},
		{"limit=-5", 0, 0, audit.FieldErrors{"limit": limitErr}},
		{"limit=ten", 0, 0, audit.FieldErrors{"limit": limitErr}},
		{"limit=1.5", 0, 0, audit.FieldErrors{"limit": limitErr}},
		{"limit=99999999999999999999", 0, 0, audit.FieldErrors{"limit": limitErr}},
		{"offset=0", 50, 0, nil},
		{"offset=123456", 50, 123456, nil},
		{"offset=-1", 0, 0, audit.FieldErrors{"offset": offsetErr}},
		{"offset=x", 0, 0, audit.FieldErrors{"offset": offsetErr}},
		{"offset=1e3", 0, 0, audit.FieldErrors{"offset": offsetErr}},
		{"limit=0&offset=-1", 0, 0, audit.FieldErrors{"limit": limitErr, "offset": offsetErr}},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			t.Parallel()
			p, fe := parse(t, tt.query)
			if tt.wantErr != nil {
				assert.Equal(t, tt.wantErr, fe)
				assert.Equal(t, query.ListParams{}, p, "nothing but errors")
				return
			}
			require.Empty(t, fe)
			assert.Equal(t, tt.wantLimit, p.Limit)
			assert.Equal(t, tt.wantOffset, p.Offset)
		})
	}
}

func TestParseListReadsOrder(t *testing.T) {
	t.Parallel()
	for q, asc := range map[string]bool{"": false, "order=": false, "order=desc": false, "order=asc": true} {
		p, fe := parse(t, q)
		require.Empty(t, fe, q)
		assert.Equal(t, asc, p.Ascending, q)
	}
	for _, q := range []string{"order=ASC", "order=ascending", "order=up", "order=DESC"} {
		_, fe := parse(t, q)
		assert.Equal(t, audit.FieldErrors{"order": "must be asc or desc"}, fe, q)
	}
}

func TestParseListReadsACursorForItsOwnOrderWithoutOffset(t *testing.T) {
	t.Parallel()
	const notOurs = "is not a cursor this service issued; use pagination.next_cursor as given"
	ts := time.Date(2026, 11, 21, 9, 0, 0, 123456000, time.UTC)
	id := uuid.MustParse("0192f3c4-5a6b-7c8d-9e0f-1a2b3c4d5e6f")
	desc := query.Cursor{Timestamp: ts, ID: id}.Encode()
	asc := query.Cursor{Timestamp: ts, ID: id, Ascending: true}.Encode()

	p, fe := parse(t, "cursor="+desc)
	require.Empty(t, fe)
	require.NotNil(t, p.Cursor)
	assert.Equal(t, query.Cursor{Timestamp: ts, ID: id}, *p.Cursor)

	p, fe = parse(t, "order=asc&limit=10&cursor="+asc)
	require.Empty(t, fe)
	require.NotNil(t, p.Cursor)
	assert.True(t, p.Cursor.Ascending)
	assert.Equal(t, 10, p.Limit)

	tests := []struct {
		name  string
		query string
		want  audit.FieldErrors
	}{
		{"with offset", "offset=10&cursor=" + desc, audit.FieldErrors{"cursor": "cannot be combined with offset"}},
		{"with offset zero", "offset=0&cursor=" + desc, audit.FieldErrors{"cursor": "cannot be combined with offset"}},
		{"with a bad offset", "offset=x&cursor=" + desc, audit.FieldErrors{"cursor": "cannot be combined with offset", "offset": "must be an integer of at least 0"}},
		{"descending cursor with order=asc", "order=asc&cursor=" + desc, audit.FieldErrors{"cursor": "was issued for the other order; keep the order parameter of the first page"}},
		{"ascending cursor without order", "cursor=" + asc, audit.FieldErrors{"cursor": "was issued for the other order; keep the order parameter of the first page"}},
		{"ascending cursor with order=desc", "order=desc&cursor=" + asc, audit.FieldErrors{"cursor": "was issued for the other order; keep the order parameter of the first page"}},
		{"garbage", "cursor=hello", audit.FieldErrors{"cursor": notOurs}},
		{"truncated", "cursor=" + desc[:len(desc)-1], audit.FieldErrors{"cursor": notOurs}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, fe := parse(t, tt.query)
			assert.Equal(t, tt.want, fe)
			assert.Nil(t, p.Cursor)
		})
	}
}

func TestParseListReportsEveryBadParameterAtOnce(t *testing.T) {
	t.Parallel()
	p, fe := parse(t, "since=never&until=nope&detail_key=x&limit=0&offset=-1&order=sideways&cursor=zzz")
	assert.Equal(t, query.ListParams{}, p)
	assert.Equal(t, []string{"cursor", "detail_value", "limit", "offset", "order", "since", "until"}, slices.Sorted(maps.Keys(fe)))
	for k, msg := range fe {
		assert.NotEmpty(t, strings.TrimSpace(msg), k)
	}
}
