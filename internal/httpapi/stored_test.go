package httpapi_test

import (
	"context"
	"encoding/hex"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The store keeps actor_type, actor_id, resource_type and resource_id as
// NULL when they hold their default, and the hashes as bytea (migration
// 00005). None of it may show through the API.

// effective returns an event's value of key as the API returns it: the
// request's, or the contract's default (CONTRACT §2.1).
func effective(e map[string]any, key string) string {
	if v, ok := e[key].(string); ok && v != "" {
		return v
	}
	switch key {
	case "actor_type":
		return "service"
	case "actor_id":
		return e["event_category"].(string) + "-service"
	case "resource_type":
		return e["event_category"].(string)
	case "resource_id":
		return e["correlation_id"].(string)
	}
	return ""
}

// pages lists q page by page (limit 2, by cursor) and returns the ids.
func (b *bundle) pages(q string) []string {
	b.t.Helper()
	all := []string{}
	cursor := ""
	for range 100 {
		qq := q + "&limit=2"
		if cursor != "" {
			qq += "&cursor=" + url.QueryEscape(cursor)
		}
		ids, page := b.list(qq)
		all = append(all, ids...)
		if page["has_more"] != true {
			return all
		}
		cursor = page["next_cursor"].(string)
	}
	b.t.Fatalf("%s: more than 100 pages", q)
	return nil
}

func TestFiltersMatchDefaultedAndExplicitValuesAlike(t *testing.T) {
	t.Parallel()
	b := setup(t)
	x, y := "rr-stored-x", "rr-stored-y"
	base := time.Now().UTC().Add(-30 * time.Minute).Truncate(time.Second)
	at := func(s int) string { return base.Add(time.Duration(s) * time.Second).Format(time.RFC3339Nano) }
	in := []map[string]any{
		// Defaults of correlation x: stored as NULL.
		event(map[string]any{"correlation_id": x, "event_timestamp": at(1)}),
		event(map[string]any{"correlation_id": x, "event_timestamp": at(2)}),
		event(map[string]any{"correlation_id": x, "event_timestamp": at(5)}),
		// The defaults sent explicitly: the same values, stored as NULL too.
		event(map[string]any{"correlation_id": x, "event_timestamp": at(3), "actor_type": "service",
			"actor_id": "gateway-service", "resource_type": "gateway", "resource_id": x}),
		// The same values in another category and correlation: stored.
		event(map[string]any{"correlation_id": y, "event_category": "workflow", "event_timestamp": at(2),
			"actor_id": "gateway-service", "resource_type": "gateway", "resource_id": x}),
		event(map[string]any{"correlation_id": y, "event_category": "workflow", "event_timestamp": at(4),
			"actor_id": "gateway-service", "resource_type": "gateway", "resource_id": x}),
		event(map[string]any{"correlation_id": y, "event_category": "workflow", "event_timestamp": at(5),
			"actor_id": "gateway-service", "resource_type": "gateway", "resource_id": x}),
		// Other values.
		event(map[string]any{"correlation_id": x, "event_timestamp": at(4), "actor_type": "user",
			"actor_id": "alice", "resource_type": "Pod", "resource_id": "web-1"}),
		event(map[string]any{"correlation_id": y, "event_category": "workflow", "event_timestamp": at(3)}),
		event(map[string]any{"correlation_id": y, "event_timestamp": at(6), "resource_id": "web-1"}),
	}
	ids := b.seed(in...)
	stamp := map[string]string{}
	for i, id := range ids {
		stamp[id] = in[i]["event_timestamp"].(string)
	}

	// Both kinds are in the table: resource_id x stored as NULL (the
	// correlation's default) and stored as such; actor_id gateway-service
	// likewise.
	var kinds [4]int
	require.NoError(t, b.store.Pool().QueryRow(context.Background(), `
		SELECT count(*) FILTER (WHERE resource_id IS NULL AND correlation_id = $1),
		       count(*) FILTER (WHERE resource_id = $1),
		       count(*) FILTER (WHERE actor_id IS NULL AND event_category = 'gateway'),
		       count(*) FILTER (WHERE actor_id = 'gateway-service')
		FROM audit_events`, x).Scan(&kinds[0], &kinds[1], &kinds[2], &kinds[3]))
	require.Equal(t, [4]int{4, 3, 5, 3}, kinds)

	for _, q := range []string{
		"resource_id=" + x,
		"actor_id=gateway-service",
		"resource_type=gateway",
		"resource_id=" + x + "&actor_id=gateway-service",
		"resource_id=" + x + "&correlation_id=" + y,
		"resource_id=" + x + "&resource_type=gateway&event_category=gateway",
		"actor_id=workflow-service",
		"actor_id=workflow-service&resource_id=" + y,
		"resource_type=workflow",
		"resource_id=" + y,
		"resource_id=web-1",
		"actor_id=alice",
		"resource_type=Pod",
		"actor_id=nobody-service",
	} {
		t.Run(q, func(t *testing.T) {
			vals, err := url.ParseQuery(q)
			require.NoError(t, err)
			want := []string{}
			for i, e := range in {
				ok := true
				for k, v := range vals {
					ok = ok && effective(e, k) == v[0]
				}
				if ok {
					want = append(want, ids[i])
				}
			}
			// Newest first, event_id breaking ties.
			slices.SortFunc(want, func(a, b string) int {
				if c := strings.Compare(stamp[b], stamp[a]); c != 0 {
					return c
				}
				return strings.Compare(b, a)
			})
			got, page := b.list(q + "&limit=1000")
			assert.Equal(t, want, got, "one page")
			assert.EqualValues(t, len(want), page["total"])
			assert.Equal(t, want, b.pages(q), "pages by cursor")
			asc := slices.Clone(want)
			slices.Reverse(asc)
			assert.Equal(t, asc, b.pages(q+"&order=asc"), "pages by cursor, oldest first")
			byOffset := []string{}
			for off := 0; off < len(want)+2; off += 2 {
				ids, _ := b.list(q + "&limit=2&offset=" + strconv.Itoa(off))
				byOffset = append(byOffset, ids...)
			}
			assert.Equal(t, want, byOffset, "pages by offset")
		})
	}
}

func TestHashesTravelAsLowercaseHex(t *testing.T) {
	t.Parallel()
	b, _ := setupIntegrity(t, true)
	corr := "rr-hex"
	ids := b.seed(event(map[string]any{"correlation_id": corr, "event_timestamp": at(3)}),
		event(map[string]any{"correlation_id": corr, "event_timestamp": at(2)}),
		event(map[string]any{"correlation_id": corr, "event_timestamp": at(1)}))
	prev := ""
	for _, id := range ids {
		r := b.do("GET", "/api/v1/audit/events/"+id, nil)
		require.Equal(t, 200, r.status)
		e := r.json(t)
		assert.Regexp(t, `^[0-9a-f]{64}$`, e["event_hash"])
		assert.Equal(t, prev, e["previous_event_hash"], "the first link has \"\", the others their predecessor's hash")
		var stored, storedPrev []byte
		require.NoError(t, b.store.Pool().QueryRow(context.Background(),
			`SELECT event_hash, previous_event_hash FROM audit_events WHERE event_id = $1`, id).Scan(&stored, &storedPrev))
		assert.Len(t, stored, 32, "stored as the digest's bytes")
		assert.Equal(t, e["event_hash"], hex.EncodeToString(stored))
		assert.Equal(t, prev, hex.EncodeToString(storedPrev))
		prev = e["event_hash"].(string)
	}
	r := b.do("POST", "/api/v1/audit/verify-chain", map[string]any{"correlation_id": corr})
	require.Equal(t, 200, r.status, "%s", r.body)
	assert.Equal(t, true, r.json(t)["is_valid"], "%s", r.body)
}
