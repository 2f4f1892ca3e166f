package httpapi_test

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// seed writes events in one batch and returns their ids in input order.
func (b *bundle) seed(events ...map[string]any) []string {
	b.t.Helper()
	batch := make([]any, len(events))
	for i, e := range events {
		batch[i] = e
	}
	r := b.do("POST", "/api/v1/audit/events/batch", batch)
	require.Equal(b.t, 201, r.status, "%s", r.body)
	var ids []string
	for _, id := range r.json(b.t)["event_ids"].([]any) {
		ids = append(ids, id.(string))
	}
	return ids
}

// list runs GET /audit/events and returns the ids of data and the pagination.
func (b *bundle) list(q string) ([]string, map[string]any) {
	b.t.Helper()
	r := b.do("GET", "/api/v1/audit/events?"+q, nil)
	require.Equal(b.t, 200, r.status, "%s", r.body)
	body := r.json(b.t)
	data, ok := body["data"].([]any)
	require.True(b.t, ok, "data is an array, never null: %s", r.body)
	ids := []string{}
	for _, e := range data {
		ids = append(ids, e.(map[string]any)["event_id"].(string))
	}
	return ids, body["pagination"].(map[string]any)
}

func at(minutesAgo int) string {
	return time.Now().UTC().Add(-time.Duration(minutesAgo) * time.Minute).Format(time.RFC3339)
}

func TestListFiltersEachMatchExactly(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := b.seed(
		event(map[string]any{"correlation_id": "c1", "event_type": "t.a", "event_category": "gateway", "event_outcome": "success",
			"severity": "high", "namespace": "ns1", "cluster_id": "k1", "actor_id": "a1", "resource_type": "Pod", "resource_id": "r1",
			"event_data": map[string]any{"workflow_id": "wf-1", "n": 7}}),
		event(map[string]any{"correlation_id": "c2", "event_type": "t.b", "event_category": "workflow", "event_outcome": "failure",
			"severity": "low", "namespace": "ns2", "cluster_id": "k2", "actor_id": "a2", "resource_type": "Node", "resource_id": "r2",
			"event_data": map[string]any{"workflow_id": "wf-2", "n": 8}}),
	)
	for _, tc := range []struct{ q, want string }{
		{"correlation_id=c1", ids[0]}, {"event_type=t.b", ids[1]}, {"event_category=gateway", ids[0]},
		{"event_outcome=failure", ids[1]}, {"severity=high", ids[0]}, {"namespace=ns2", ids[1]},
		{"cluster_id=k1", ids[0]}, {"actor_id=a2", ids[1]}, {"resource_type=Pod", ids[0]}, {"resource_id=r2", ids[1]},
		{"detail_key=workflow_id&detail_value=wf-2", ids[1]},
		{"detail_key=n&detail_value=7", ids[0]}, // compared as text
		{"correlation_id=c1&event_outcome=success", ids[0]},
	} {
		got, page := b.list(tc.q)
		assert.Equal(t, []string{tc.want}, got, tc.q)
		assert.EqualValues(t, 1, page["total"], tc.q)
	}
	got, _ := b.list("correlation_id=c1&event_outcome=failure")
	assert.Empty(t, got)
}

func TestListSinceUntilGrammar(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := b.seed(
		event(map[string]any{"event_timestamp": at(3 * 24 * 60)}), // 3 days ago
		event(map[string]any{"event_timestamp": at(120)}),         // 2 hours ago
		event(map[string]any{"event_timestamp": at(10)}),          // 10 minutes ago
	)
	oneHourAgo := time.Now().UTC().Add(-time.Hour)
	for _, tc := range []struct {
		q    string
		want []string
	}{
		{"since=1d", []string{ids[2], ids[1]}},
		{"since=0.5d", []string{ids[2], ids[1]}},
		{"since=90m", []string{ids[2]}},
		{"since=24h&until=1h", []string{ids[1]}},
		{"since=" + url.QueryEscape(oneHourAgo.Format(time.RFC3339)), []string{ids[2]}},
		{"until=" + oneHourAgo.Format("2006-01-02T15:04:05"), []string{ids[1], ids[0]}},
		{"since=" + time.Now().UTC().AddDate(0, 0, -4).Format(time.DateOnly), ids[0:3:3]},
	} {
		got, _ := b.list(tc.q)
		want := tc.want
		if tc.q[:5] == "since" && len(want) == 3 {
			want = []string{ids[2], ids[1], ids[0]}
		}
		assert.Equal(t, want, got, tc.q)
	}
}

func TestListParameterErrorsNameTheParameter(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cursor := func() string {
		b.seed(event(nil), event(nil))
		_, page := b.list("limit=1")
		return page["next_cursor"].(string)
	}()
	for _, tc := range []struct{ q, field string }{
		{"limit=0", "limit"}, {"limit=1001", "limit"}, {"limit=ten", "limit"},
		{"offset=-1", "offset"}, {"offset=x", "offset"},
		{"since=yesterday", "since"}, {"until=2026-13-01", "until"},
		{"since=1h&until=2d", "since"},
		{"detail_key=a", "detail_value"}, {"detail_value=a", "detail_key"},
		{"detail_key=a-b&detail_value=1", "detail_key"},
		{"order=up", "order"},
		{"cursor=garbage", "cursor"},
		{"cursor=" + cursor + "&offset=0", "cursor"},
		{"cursor=" + cursor + "&order=asc", "cursor"},
	} {
		r := b.do("GET", "/api/v1/audit/events?"+tc.q, nil)
		require.Equal(t, 400, r.status, tc.q)
		assert.Contains(t, r.fields(t), tc.field, tc.q)
	}
}

func TestListDefaultsAndOffsetPaging(t *testing.T) {
	t.Parallel()
	b := setup(t)
	events := make([]map[string]any, 60)
	for i := range events {
		events[i] = event(map[string]any{"correlation_id": "page", "event_timestamp": at(60 - i)})
	}
	ids := b.seed(events...)
	got, page := b.list("correlation_id=page")
	assert.Len(t, got, 50, "default limit is 50")
	assert.Equal(t, ids[59], got[0], "newest first")
	assert.EqualValues(t, 50, page["limit"])
	assert.EqualValues(t, 0, page["offset"])
	assert.EqualValues(t, 60, page["total"])
	assert.Equal(t, true, page["total_is_exact"])
	assert.Equal(t, true, page["has_more"])
	assert.NotEmpty(t, page["next_cursor"])

	got, page = b.list("correlation_id=page&limit=25&offset=50")
	assert.Equal(t, []string{ids[9], ids[8], ids[7], ids[6], ids[5], ids[4], ids[3], ids[2], ids[1], ids[0]}, got)
	assert.Equal(t, false, page["has_more"])
	assert.NotContains(t, page, "next_cursor", "only present when has_more")

	got, _ = b.list("correlation_id=page&order=asc&limit=2")
	assert.Equal(t, []string{ids[0], ids[1]}, got)
}

func TestCursorPagingWithEqualTimestampsSkipsAndRepeatsNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	same := at(5)
	events := make([]map[string]any, 37)
	for i := range events {
		ts := same
		if i%3 == 0 {
			ts = at(6) // two distinct timestamps, each shared by many events
		}
		events[i] = event(map[string]any{"correlation_id": "ties", "event_timestamp": ts})
	}
	ids := b.seed(events...)
	for _, order := range []string{"desc", "asc"} {
		seen := map[string]int{}
		var pages int
		q := "correlation_id=ties&limit=5&order=" + order
		for {
			got, page := b.list(q)
			pages++
			for _, id := range got {
				seen[id]++
			}
			if page["has_more"] != true {
				break
			}
			q = "correlation_id=ties&limit=5&order=" + order + "&cursor=" + page["next_cursor"].(string)
			require.Less(t, pages, 20)
		}
		assert.Len(t, seen, len(ids), order)
		for id, n := range seen {
			assert.Equal(t, 1, n, "%s seen %d times (%s)", id, n, order)
		}
		assert.Equal(t, 8, pages, order)
	}
}

func TestGetEventErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.do("GET", "/api/v1/audit/events/"+uuid.NewString(), nil)
	require.Equal(t, 404, r.status)
	assert.Equal(t, "https://kubernaut.ai/problems/not-found", r.json(t)["type"])
	r = b.do("GET", "/api/v1/audit/events/not-a-uuid", nil)
	require.Equal(t, 400, r.status)
	assert.Contains(t, r.fields(t), "event_id")
}

func TestLargeTotalsAreBoundedAndSaySo(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.store.Pool().Exec(context.Background(), fmt.Sprintf(`
		INSERT INTO audit_events (event_id, event_date, event_timestamp, version, event_type, event_category,
			event_action, event_outcome, correlation_id, event_data, actor_type, actor_id, resource_type,
			resource_id, severity, retention_days, chain_seq, event_hash, previous_event_hash, hash_algorithm)
		SELECT gen_random_uuid(), current_date, now() - g * interval '1 ms', '1', 'bulk', 'gateway', 'a',
			'success', 'bulk', '{}', 'service', 's', 'gateway', 'bulk', 'info', 2555,
			g, sha256(g::text::bytea), '', 'sha256'
		FROM generate_series(1, %d) g`, 10_050))
	require.NoError(t, err)
	_, page := b.list("event_type=bulk&limit=10")
	assert.Equal(t, false, page["total_is_exact"])
	assert.EqualValues(t, 10_000, page["total"], "a lower bound")
	_, page = b.list("event_type=bulk&limit=5&offset=10010")
	assert.Equal(t, false, page["total_is_exact"])
	assert.EqualValues(t, 10_016, page["total"], "never below what the client has already seen")
	_, page = b.list("event_type=bulk&limit=1000&offset=9500")
	assert.Equal(t, true, page["total_is_exact"], "the last page knows the total")
	assert.EqualValues(t, 10_050, page["total"])
}
