package console

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/query"
)

// listFilters are the filters of GET /api/v1/audit/events, in the order the
// search form shows them.
var listFilters = []string{"correlation_id", "event_type", "event_category", "event_outcome", "severity",
	"namespace", "cluster_id", "actor_id", "resource_type", "resource_id", "since", "until"}

// pageSize is the number of events a list page shows.
const pageSize = 50

// listAnswer is the API's list answer.
type listAnswer struct {
	Data       []audit.Event `json:"data"`
	Pagination struct {
		Total      int64  `json:"total"`
		Exact      *bool  `json:"total_is_exact"`
		HasMore    bool   `json:"has_more"`
		NextCursor string `json:"next_cursor"`
	} `json:"pagination"`
}

func (c *Console) index(w http.ResponseWriter, r *http.Request) {
	s, ok := c.signedIn(w, r)
	if !ok {
		return
	}
	var recent listAnswer
	if status, err := c.get(r.Context(), s, "/api/v1/audit/events?limit=15", &recent); err != nil {
		c.failAPI(w, r, s, status, err)
		return
	}
	c.render(w, r, http.StatusOK, "index", s, recent.Data)
}

// jump takes the correlation-id box of the index page to its timeline.
func (c *Console) jump(w http.ResponseWriter, r *http.Request) {
	corr := strings.TrimSpace(r.URL.Query().Get("correlation_id"))
	if corr == "" {
		http.Redirect(w, r, Prefix, http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, Prefix+"timeline/"+url.PathEscape(corr), http.StatusSeeOther)
}

// eventsPage is the search page's data.
type eventsPage struct {
	Filters    []filterField
	Events     []audit.Event
	Total      string
	OlderURL   string
	NewerURL   string
	ExportURL  string
	Error      string
	Categories []string
	Outcomes   []string
}

type filterField struct {
	Name, Label, Value string
}

// events is the search form and its results, newest first, paged by the
// API's keyset cursor. "Older" follows next_cursor; "newer" asks the API for
// the page before the first row (ascending from it) and shows it reversed,
// so both directions cost the same at any depth. The filter stays in the
// address, so a link to a search can be shared.
func (c *Console) events(w http.ResponseWriter, r *http.Request) {
	s, ok := c.signedIn(w, r)
	if !ok {
		return
	}
	in := r.URL.Query()
	filter := url.Values{}
	page := eventsPage{Categories: audit.Categories, Outcomes: audit.Outcomes}
	for _, name := range listFilters {
		v := in.Get(name)
		page.Filters = append(page.Filters, filterField{Name: name, Label: strings.ReplaceAll(name, "_", " "), Value: v})
		if v != "" {
			filter.Set(name, v)
		}
	}
	q := cloneValues(filter)
	q.Set("limit", strconv.Itoa(pageSize))
	before := in.Get("before")
	switch {
	case before != "":
		q.Set("cursor", before)
		q.Set("order", "asc")
	case in.Get("cursor") != "":
		q.Set("cursor", in.Get("cursor"))
	}
	var ans listAnswer
	status, err := c.get(r.Context(), s, "/api/v1/audit/events?"+q.Encode(), &ans)
	if err != nil {
		if status == http.StatusBadRequest {
			page.Error = err.Error()
			c.render(w, r, http.StatusBadRequest, "events", s, page)
			return
		}
		c.failAPI(w, r, s, status, err)
		return
	}
	page.Events = ans.Data
	if before != "" {
		slices.Reverse(page.Events)
	}
	page.Total = strconv.FormatInt(ans.Pagination.Total, 10)
	if ans.Pagination.Exact != nil && !*ans.Pagination.Exact {
		page.Total = "at least " + page.Total
	}
	link := func(key, cursor string) string {
		v := cloneValues(filter)
		v.Set(key, cursor)
		return Prefix + "events?" + v.Encode()
	}
	if n := len(page.Events); n > 0 {
		first, last := page.Events[0], page.Events[n-1]
		// Older: from the API's cursor, or (after paging newer) from the
		// last row shown, which the descending order continues after.
		switch {
		case before == "" && ans.Pagination.HasMore:
			page.OlderURL = link("cursor", ans.Pagination.NextCursor)
		case before != "":
			page.OlderURL = link("cursor", query.Cursor{Timestamp: last.Timestamp.Std(), ID: last.ID}.Encode())
		}
		// Newer: there is a newer page when this one did not start at the
		// top, or when the ascending query found more.
		if (before == "" && in.Get("cursor") != "") || (before != "" && ans.Pagination.HasMore) {
			page.NewerURL = link("before", query.Cursor{Timestamp: first.Timestamp.Std(), ID: first.ID, Ascending: true}.Encode())
		}
	}
	exp := url.Values{}
	for from, to := range map[string]string{"correlation_id": "correlation_id", "event_category": "event_category", "since": "start_time", "until": "end_time"} {
		if v := filter.Get(from); v != "" {
			exp.Set(to, v)
		}
	}
	exp.Set("format", "ndjson")
	page.ExportURL = Prefix + "export?" + exp.Encode()
	c.render(w, r, http.StatusOK, "events", s, page)
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = slices.Clone(vs)
	}
	return out
}

// eventPage is one event with its neighbours in the tree.
type eventPage struct {
	Event    audit.Event
	Parent   *audit.Event
	Children []audit.Event
}

// event shows every field of one event, its data, its parent and children
// (from its remediation's timeline: one query for the family) and its
// place in the hash chain.
func (c *Console) event(w http.ResponseWriter, r *http.Request) {
	s, ok := c.signedIn(w, r)
	if !ok {
		return
	}
	id, err := uuid.Parse(r.PathValue("event_id"))
	if err != nil {
		c.fail(w, r, s, http.StatusNotFound, "There is no event with this id: an event id is a UUID.")
		return
	}
	var page eventPage
	if status, err := c.get(r.Context(), s, "/api/v1/audit/events/"+id.String(), &page.Event); err != nil {
		c.failAPI(w, r, s, status, err)
		return
	}
	var tl query.Timeline
	if _, err := c.get(r.Context(), s, "/api/v1/audit/timeline/"+url.PathEscape(page.Event.CorrelationID), &tl); err == nil {
		walkTimeline(tl.Events, nil, func(n, parent *query.TimelineNode) {
			if n.ID == id {
				for _, ch := range n.Children {
					page.Children = append(page.Children, ch.Event)
				}
			}
		})
	}
	if p := page.Event.ParentID; p != nil {
		var parent audit.Event
		if _, err := c.get(r.Context(), s, "/api/v1/audit/events/"+p.String(), &parent); err == nil {
			page.Parent = &parent
		}
	}
	c.render(w, r, http.StatusOK, "event", s, page)
}

func walkTimeline(nodes []*query.TimelineNode, parent *query.TimelineNode, fn func(n, parent *query.TimelineNode)) {
	for _, n := range nodes {
		fn(n, parent)
		walkTimeline(n.Children, n, fn)
	}
}

// timeline shows a remediation as a tree with offsets, durations and
// outcomes.
func (c *Console) timeline(w http.ResponseWriter, r *http.Request) {
	s, ok := c.signedIn(w, r)
	if !ok {
		return
	}
	corr := r.PathValue("correlation_id")
	var tl query.Timeline
	if status, err := c.get(r.Context(), s, "/api/v1/audit/timeline/"+url.PathEscape(corr), &tl); err != nil {
		c.failAPI(w, r, s, status, err)
		return
	}
	c.render(w, r, http.StatusOK, "timeline", s, timelinePage{Timeline: tl, Extras: c.remediationExtras(r, s, &tl)})
}

// timelinePage is a remediation's tree with its read models.
type timelinePage struct {
	Timeline query.Timeline
	Extras   timelineExtras
}

// windows are the dashboard's window choices.
var windows = []struct {
	Key   string
	Span  time.Duration
	Label string
}{
	{"24h", 24 * time.Hour, "24 h"},
	{"7d", 7 * 24 * time.Hour, "7 d"},
	{"30d", 30 * 24 * time.Hour, "30 d"},
	{"90d", 90 * 24 * time.Hour, "90 d"},
}

// dashboardPage holds every chart with its numbers.
type dashboardPage struct {
	Window            string
	Since, Until      string
	Windows           []windowLink
	Interval          string
	Trend             Chart
	TrendRows         []trendRow
	ByType, ByCat     Chart
	ByTypeRows        []rateRow
	ByCatRows         []rateRow
	Namespace         Chart
	NamespaceRows     []namespaceRow
	Severity          Chart
	SeverityRows      []severityRow
	Error             string
	TotalEvents       int64
	TotalFailures     int64
	OverallRate       string
	OverallConfidence string
}

type windowLink struct {
	Key, Label, URL string
	Current         bool
}

type trendRow struct {
	Bucket          string
	Count, Failures int64
}

type rateRow struct {
	Key                          string
	Successes, Failures, Pending int64
	Rate                         string
	Confidence                   string
}

type namespaceRow struct {
	Namespace            string
	Remediations, Events int64
}

type severityRow struct {
	Severity string
	Count    int64
}

// dashboards draws the aggregations of one window. The window is given as
// since/until (the API's grammar) or picked from the presets.
func (c *Console) dashboards(w http.ResponseWriter, r *http.Request) {
	s, ok := c.signedIn(w, r)
	if !ok {
		return
	}
	in := r.URL.Query()
	page := dashboardPage{Window: in.Get("window"), Since: in.Get("since"), Until: in.Get("until")}
	span := 24 * time.Hour
	switch {
	case page.Since != "" || page.Until != "":
		page.Window = "custom"
		if d, err := spanOf(page.Since, page.Until, c.cfg.Now()); err == nil {
			span = d
		}
	default:
		if page.Window == "" {
			page.Window = "24h"
		}
		found := false
		for _, win := range windows {
			if win.Key == page.Window {
				span, found = win.Span, true
			}
		}
		if !found {
			c.fail(w, r, s, http.StatusBadRequest, "window must be one of 24h, 7d, 30d, 90d, or give since and until.")
			return
		}
		page.Since = page.Window
	}
	for _, win := range windows {
		page.Windows = append(page.Windows, windowLink{Key: win.Key, Label: win.Label, Current: win.Key == page.Window,
			URL: Prefix + "dashboards?window=" + win.Key})
	}
	window := url.Values{}
	window.Set("since", page.Since)
	if page.Until != "" {
		window.Set("until", page.Until)
	}
	page.Interval = "day"
	if span <= 48*time.Hour {
		page.Interval = "hour"
	}

	var trend struct {
		Points []struct {
			Bucket   audit.Time `json:"bucket"`
			Count    int64      `json:"count"`
			Failures int64      `json:"failures"`
		} `json:"data_points"`
	}
	tq := cloneValues(window)
	tq.Set("interval", page.Interval)
	countsPath := func(key string) string {
		q := cloneValues(window)
		q.Set("group_by", key+",event_outcome")
		return "/api/v1/audit/aggregations/counts?" + q.Encode()
	}
	trendPath := "/api/v1/audit/aggregations/trend?" + tq.Encode()
	nsPath := "/api/v1/audit/aggregations/by-namespace?" + window.Encode()
	sevPath := "/api/v1/audit/aggregations/by-severity?" + window.Encode()
	// The five aggregations are independent: ask for them at once, so that
	// PostgreSQL works on them side by side instead of one after another.
	get := c.getAll(r.Context(), s, trendPath, countsPath("event_type"), countsPath("event_category"), nsPath, sevPath)
	if status, err := get(trendPath, &trend); err != nil {
		if status == http.StatusBadRequest {
			page.Error = err.Error()
			c.render(w, r, http.StatusBadRequest, "dashboards", s, page)
			return
		}
		c.failAPI(w, r, s, status, err)
		return
	}
	var columns []Column
	for _, p := range trend.Points {
		label := p.Bucket.Std().UTC().Format("Jan 2")
		if page.Interval == "hour" {
			label = p.Bucket.Std().UTC().Format("15:04")
		}
		columns = append(columns, Column{Label: label, Total: p.Count, Part: p.Failures})
		page.TrendRows = append(page.TrendRows, trendRow{Bucket: p.Bucket.Std().UTC().Format("2006-01-02 15:04"), Count: p.Count, Failures: p.Failures})
		page.TotalEvents += p.Count
		page.TotalFailures += p.Failures
	}
	page.Trend = StackedColumns(columns, "events", "failures")

	rates := func(key string) ([]rateRow, Chart, error) {
		var ans struct {
			Groups []map[string]any `json:"groups"`
		}
		if _, err := get(countsPath(key), &ans); err != nil {
			return nil, Chart{}, err
		}
		rows := successRates(ans.Groups, key)
		var bars []Bar
		for _, row := range rows {
			if row.Rate == "" {
				continue
			}
			f, _ := strconv.ParseFloat(strings.TrimSuffix(row.Rate, " %"), 64)
			bars = append(bars, Bar{Label: row.Key, Value: f, Note: row.Rate + " · " + row.Confidence})
		}
		return rows, BarChart(bars, 100), nil
	}
	var err error
	if page.ByTypeRows, page.ByType, err = rates("event_type"); err != nil {
		c.failAPI(w, r, s, http.StatusInternalServerError, err)
		return
	}
	if page.ByCatRows, page.ByCat, err = rates("event_category"); err != nil {
		c.failAPI(w, r, s, http.StatusInternalServerError, err)
		return
	}
	var ns struct {
		Rows []namespaceRow `json:"aggregations"`
	}
	if status, err := get(nsPath, &ns); err != nil {
		c.failAPI(w, r, s, status, err)
		return
	}
	page.NamespaceRows = ns.Rows
	var nsBars []Bar
	for _, row := range ns.Rows {
		nsBars = append(nsBars, Bar{Label: row.Namespace, Value: float64(row.Remediations),
			Note: fmt.Sprintf("%d remediations · %d events", row.Remediations, row.Events)})
	}
	page.Namespace = BarChart(nsBars, 0)
	var sev struct {
		Rows []severityRow `json:"aggregations"`
	}
	if status, err := get(sevPath, &sev); err != nil {
		c.failAPI(w, r, s, status, err)
		return
	}
	page.SeverityRows = sev.Rows
	var sevBars []Bar
	for _, row := range sev.Rows {
		sevBars = append(sevBars, Bar{Label: row.Severity, Value: float64(row.Count), Note: strconv.FormatInt(row.Count, 10), Class: "sev-" + row.Severity})
	}
	page.Severity = BarChart(sevBars, 0)
	if done := page.TotalEvents; done > 0 {
		page.OverallRate = fmt.Sprintf("%.1f %%", 100*float64(done-page.TotalFailures)/float64(done))
	}
	c.render(w, r, http.StatusOK, "dashboards", s, page)
}

// spanOf is the length of a since/until window, for choosing the trend's
// interval; the API checks the values themselves.
func spanOf(since, until string, now time.Time) (time.Duration, error) {
	from, to := now.Add(-7*24*time.Hour), now
	var err error
	if since != "" {
		if from, err = query.ParseTime(since, now); err != nil {
			return 0, err
		}
	}
	if until != "" {
		if to, err = query.ParseTime(until, now); err != nil {
			return 0, err
		}
	}
	return to.Sub(from), nil
}

// successRates folds counts grouped by key and outcome into one row per
// key: successes over finished events (success and failure; pending ones
// have not finished), with the confidence the API's success-rate uses.
// Rows come most events first, at most 15.
func successRates(groups []map[string]any, key string) []rateRow {
	byKey := map[string]*rateRow{}
	var order []string
	for _, g := range groups {
		k, _ := g[key].(string)
		n, _ := g["count"].(float64)
		row, ok := byKey[k]
		if !ok {
			row = &rateRow{Key: k}
			byKey[k] = row
			order = append(order, k)
		}
		switch g["event_outcome"] {
		case "success":
			row.Successes += int64(n)
		case "failure":
			row.Failures += int64(n)
		default:
			row.Pending += int64(n)
		}
	}
	rows := make([]rateRow, 0, len(order))
	for _, k := range order {
		row := byKey[k]
		if done := row.Successes + row.Failures; done > 0 {
			row.Rate = fmt.Sprintf("%.1f %%", 100*float64(row.Successes)/float64(done))
		}
		row.Confidence = query.Confidence(row.Successes + row.Failures)
		rows = append(rows, *row)
	}
	slices.SortStableFunc(rows, func(a, b rateRow) int {
		ta, tb := a.Successes+a.Failures+a.Pending, b.Successes+b.Failures+b.Pending
		if ta != tb {
			if ta > tb {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Key, b.Key)
	})
	return rows[:min(len(rows), 15)]
}
