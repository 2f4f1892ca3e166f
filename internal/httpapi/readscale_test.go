package httpapi_test

import (
	"encoding/xml"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tsAgo returns a timestamp d before now, in RFC 3339.
func tsAgo(d time.Duration) string { return time.Now().UTC().Add(-d).Format(time.RFC3339Nano) }

func TestTimelineNestsChildrenUnderParentsInTimeOrderWhateverTheArrivalOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	corr := "tl-" + uuid.NewString()
	root, a, bb, a1 := uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()
	orphanParent := uuid.NewString()
	// Arrival order: root, then b (later) before a (earlier), then a's child
	// whose clock says it happened before a itself; plus an unrelated root.
	b.seed(event(map[string]any{"correlation_id": orphanParent, "event_id": orphanParent}))
	b.seed(
		event(map[string]any{"correlation_id": corr, "event_id": root, "event_timestamp": tsAgo(10 * time.Minute), "event_type": "signal.received"}),
		event(map[string]any{"correlation_id": corr, "event_id": bb, "parent_event_id": root, "event_timestamp": tsAgo(5 * time.Minute), "event_outcome": "failure"}),
		event(map[string]any{"correlation_id": corr, "event_id": a, "parent_event_id": root, "event_timestamp": tsAgo(8 * time.Minute)}),
		event(map[string]any{"correlation_id": corr, "event_id": a1, "parent_event_id": a, "event_timestamp": tsAgo(9 * time.Minute)}),
		event(map[string]any{"correlation_id": corr, "parent_event_id": orphanParent, "event_timestamp": tsAgo(2 * time.Minute), "event_outcome": "pending"}),
	)
	r := b.do("GET", "/api/v1/audit/timeline/"+corr, nil)
	require.Equal(t, 200, r.status, "%s", r.body)
	tl := r.json(t)
	assert.Equal(t, corr, tl["correlation_id"])
	assert.EqualValues(t, 5, tl["event_count"])
	assert.Equal(t, "pending", tl["outcome"], "the latest event's outcome")
	assert.EqualValues(t, 8*60*1000, tl["duration_ms"])

	type node struct {
		id       string
		children []node
	}
	var shape func(any) []node
	shape = func(v any) []node {
		var out []node
		for _, e := range v.([]any) {
			m := e.(map[string]any)
			out = append(out, node{id: m["event_id"].(string), children: shape(m["children"])})
		}
		return out
	}
	got := shape(tl["events"])
	require.Len(t, got, 2, "two roots: the remediation's first event, and one whose parent is in another correlation")
	assert.Equal(t, root, got[0].id)
	require.Len(t, got[0].children, 2)
	assert.Equal(t, a, got[0].children[0].id, "siblings in time order, not arrival order")
	assert.Equal(t, bb, got[0].children[1].id)
	require.Len(t, got[0].children[0].children, 1)
	assert.Equal(t, a1, got[0].children[0].children[0].id)
	assert.Empty(t, got[0].children[1].children)

	r = b.do("GET", "/api/v1/audit/timeline/nope-"+uuid.NewString(), nil)
	assert.Equal(t, 404, r.status)
}

func TestTimelineHTMLPageIsWellFormedAndShowsEveryEvent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	corr := "html-" + uuid.NewString()
	parent := uuid.NewString()
	ids := b.seed(
		event(map[string]any{"correlation_id": corr, "event_id": parent, "event_data": map[string]any{"note": "<script>alert(1)</script>"}}),
		event(map[string]any{"correlation_id": corr, "parent_event_id": parent, "event_outcome": "failure", "error_code": "E1", "error_message": "pod & node gone"}),
		event(map[string]any{"correlation_id": corr, "parent_event_id": parent, "event_outcome": "pending"}),
	)
	req, err := http.NewRequest("GET", b.srv.URL+"/api/v1/audit/timeline/"+corr, nil)
	require.NoError(t, err)
	req.Header.Set("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"))
	page := string(body)

	// Well-formed: every element closes, every attribute is quoted.
	dec := xml.NewDecoder(strings.NewReader(page))
	dec.Strict = true
	dec.Entity = xml.HTMLEntity
	for {
		_, err := dec.Token()
		if err == io.EOF {
			break
		}
		require.NoError(t, err, "the page is well-formed")
	}
	for _, id := range ids {
		assert.Contains(t, page, `id="e-`+id+`"`, "every event is on the page")
	}
	assert.Equal(t, 3, strings.Count(page, "<details>"), "each event's data folds open on click")
	assert.Contains(t, page, "card failure")
	assert.Contains(t, page, "card pending")
	assert.NotContains(t, page, "<script>", "event data is escaped")
	assert.Contains(t, page, "pod &amp; node gone")
	assert.NotContains(t, page, "http://", "no external assets")
	assert.NotContains(t, page, "https://")
}

func TestAggregationsOnHandBuiltData(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.maxAge = 30 * 24 * time.Hour })
	ev := func(corr, ns, sev, typ, outcome string, ago time.Duration, data map[string]any) map[string]any {
		e := event(map[string]any{"correlation_id": corr, "severity": sev, "event_type": typ, "event_outcome": outcome,
			"event_timestamp": tsAgo(ago), "event_category": "workflowexecution"})
		if ns != "" {
			e["namespace"] = ns
		}
		if data != nil {
			e["event_data"] = data
		}
		return e
	}
	h := time.Hour
	b.seed(
		ev("r1", "prod", "critical", "wf.run", "success", 1*h, map[string]any{"workflow_id": "wf-a"}),
		ev("r1", "prod", "critical", "wf.run", "failure", 2*h, map[string]any{"workflow_id": "wf-a"}),
		ev("r2", "prod", "high", "wf.run", "success", 3*h, map[string]any{"workflow_id": "wf-a"}),
		ev("r3", "prod", "info", "wf.run", "pending", 4*h, map[string]any{"workflow_id": "wf-b"}),
		ev("r4", "staging", "warning", "wf.step", "success", 26*h, nil),
		ev("r4", "staging", "warning", "wf.step", "success", 27*h, nil),
		ev("r4", "staging", "warning", "wf.step", "success", 28*h, nil),
		ev("r5", "", "debug", "wf.step", "failure", 50*h, nil),
		ev("r6", "", "low", "wf.step", "success", 8*24*h-h, nil), // outside the default 7-day window
	)
	agg := func(q string) map[string]any {
		t.Helper()
		r := b.do("GET", "/api/v1/audit/aggregations/"+q, nil)
		require.Equal(t, 200, r.status, "%s: %s", q, r.body)
		return r.json(t)
	}
	sr := agg("success-rate?event_type=wf.run")
	assert.Equal(t, map[string]any{"total": 3.0, "successes": 2.0, "failures": 1.0, "success_rate": 2.0 / 3.0,
		"confidence": "insufficient_data", "min_samples_met": false}, sr, "pending events are not counted")
	sr = agg("success-rate?event_category=workflowexecution&min_samples=6")
	assert.Equal(t, map[string]any{"total": 7.0, "successes": 5.0, "failures": 2.0, "success_rate": 5.0 / 7.0,
		"confidence": "low", "min_samples_met": true}, sr)
	sr = agg("success-rate?workflow_id=wf-a")
	assert.EqualValues(t, 3, sr["total"])
	sr = agg("success-rate?event_type=wf.step&since=9d")
	assert.EqualValues(t, 5, sr["total"], "since widens the window")

	assert.Equal(t, []any{
		map[string]any{"namespace": "prod", "remediations": 3.0, "events": 4.0},
		map[string]any{"namespace": "staging", "remediations": 1.0, "events": 3.0},
	}, agg("by-namespace")["aggregations"])

	assert.Equal(t, []any{
		map[string]any{"severity": "critical", "count": 2.0},
		map[string]any{"severity": "high", "count": 1.0},
		map[string]any{"severity": "warning", "count": 3.0},
		map[string]any{"severity": "info", "count": 1.0},
		map[string]any{"severity": "debug", "count": 1.0},
	}, agg("by-severity")["aggregations"])

	tr := agg("trend?period=7d&interval=day")
	assert.Equal(t, "7d", tr["period"])
	points := tr["data_points"].([]any)
	assert.Len(t, points, 8, "every calendar day the 7-day window touches, empty ones included")
	var total, failures float64
	for _, p := range points {
		total += p.(map[string]any)["count"].(float64)
		failures += p.(map[string]any)["failures"].(float64)
	}
	assert.EqualValues(t, 8, total)
	assert.EqualValues(t, 2, failures)
	hourly := agg("trend?period=7d&interval=hour")["data_points"].([]any)
	assert.Len(t, hourly, 7*24+1)

	groups := agg("counts?group_by=event_type,event_outcome")["groups"].([]any)
	assert.Equal(t, map[string]any{"event_type": "wf.step", "event_outcome": "success", "count": 3.0}, groups[0])
	assert.Len(t, groups, 5)
	ns := agg("counts?group_by=namespace")["groups"].([]any)
	assert.Contains(t, ns, map[string]any{"namespace": nil, "count": 1.0}, "events without a namespace form their own group")
}

func TestAggregationParameterErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, tc := range []struct{ q, field string }{
		{"success-rate", "event_type"},
		{"success-rate?event_type=a&event_category=b", "event_type"},
		{"success-rate?event_type=a&min_samples=0", "min_samples"},
		{"trend?period=1y", "period"},
		{"trend?interval=minute", "interval"},
		{"counts", "group_by"},
		{"counts?group_by=event_data", "group_by"},
		{"counts?group_by=severity,severity", "group_by"},
		{"by-namespace?since=400d", "since"},
		{"by-severity?since=1h&until=2h", "since"},
		{"by-severity?until=soon", "until"},
	} {
		r := b.do("GET", "/api/v1/audit/aggregations/"+tc.q, nil)
		require.Equal(t, 400, r.status, tc.q)
		assert.Contains(t, r.fields(t), tc.field, tc.q)
	}
	r := b.do("GET", "/api/v1/audit/aggregations/mean", nil)
	assert.Equal(t, 404, r.status)
}
