package console_test

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEveryPageSendsTheSecurityHeaders(t *testing.T) {
	t.Parallel()
	b := setup(t, false)
	now := time.Now().UTC()
	e := event("rr-headers", now.Add(-time.Minute), "success", `{"a":1}`)
	b.seed(e)
	br := b.browser()
	for _, path := range []string{"/console/", "/console/events", "/console/events/" + e.ID.String(), "/console/timeline/rr-headers",
		"/console/dashboards", "/console/integrity", "/console/nowhere", "/console/events/not-a-uuid"} {
		p := br.get(path)
		assert.Contains(t, []int{200, 404}, p.status, path)
		csp := p.header.Get("Content-Security-Policy")
		assert.Contains(t, csp, "default-src 'none'", path)
		assert.Contains(t, csp, "frame-ancestors 'none'", path)
		assert.NotContains(t, csp, "script-src", "%s: no script may run", path)
		assert.Equal(t, "nosniff", p.header.Get("X-Content-Type-Options"), path)
		assert.Equal(t, "same-origin", p.header.Get("Referrer-Policy"), "%s: nothing goes to other sites", path)
		assert.Equal(t, "DENY", p.header.Get("X-Frame-Options"), path)
		if strings.HasPrefix(p.header.Get("Content-Type"), "text/html") {
			assert.NotContains(t, p.body, "<script", "%s: the console works without script", path)
			assert.NotContains(t, p.body, "style=", "%s: no inline style (the policy forbids it)", path)
		}
	}
	p := br.get("/console/assets/console.css")
	assert.Equal(t, 200, p.status)
	assert.Contains(t, p.header.Get("Content-Type"), "text/css")
	p = br.get("/console")
	assert.Equal(t, http.StatusMovedPermanently, p.status)
}

// hostile is event data that would run script if it were not escaped.
const hostile = `{"note":"<script>alert(1)</script>","attr":"\"><img src=x onerror=alert(2)>","link":"javascript:alert(3)","<b>key</b>":1}`

func TestEventDataIsShownAsText(t *testing.T) {
	t.Parallel()
	b := setup(t, false)
	e := event("rr-<script>x</script>", time.Now().UTC().Add(-time.Minute), "failure", hostile)
	e.ErrorMessage = `<img src=x onerror=alert(4)>`
	b.seed(e)
	br := b.browser()
	for _, path := range []string{"/console/events/" + e.ID.String(), "/console/timeline/" + url.PathEscape(e.CorrelationID),
		"/console/events?correlation_id=" + url.QueryEscape(e.CorrelationID), "/console/"} {
		p := br.get(path)
		require.Equal(t, 200, p.status, path)
		for _, raw := range []string{"<script>", "<img src=x", "<b>key</b>"} {
			assert.NotContains(t, p.body, raw, "%s: %q reached the page unescaped", path, raw)
		}
		assert.NotRegexp(t, `href="javascript:`, p.body, path)
	}
	p := br.get("/console/events/" + e.ID.String())
	assert.Contains(t, p.body, "&lt;script&gt;alert(1)&lt;/script&gt;", "the data is there, as text")
	assert.Contains(t, p.body, `<span class="jk">&#34;&lt;b&gt;key&lt;/b&gt;&#34;</span>`, "keys are coloured and escaped")
}

func TestEventsArePagedOlderAndNewerWithoutSkippingOrRepeating(t *testing.T) {
	t.Parallel()
	b := setup(t, false)
	now := time.Now().UTC().Add(-time.Hour)
	var want []string
	for i := range 120 {
		e := event("rr-page", now.Add(time.Duration(i)*time.Second), "success", `{}`)
		b.seed(e)
		want = append([]string{e.ID.String()}, want...) // newest first
	}
	br := b.browser()
	ids := regexp.MustCompile(`href="/console/events/([0-9a-f-]{36})"`)
	link := func(body, rel string) string {
		m := regexp.MustCompile(`<a rel="` + rel + `" href="([^"]+)"`).FindStringSubmatch(body)
		if m == nil {
			return ""
		}
		return strings.ReplaceAll(m[1], "&amp;", "&")
	}
	rows := func(body string) []string {
		var out []string
		for _, m := range ids.FindAllStringSubmatch(body, -1) {
			out = append(out, m[1])
		}
		return out
	}
	var got []string
	var pages []string
	path := "/console/events?correlation_id=rr-page"
	for path != "" {
		p := br.get(path)
		require.Equal(t, 200, p.status)
		pages = append(pages, p.body)
		got = append(got, rows(p.body)...)
		path = link(p.body, "next")
	}
	assert.Equal(t, want, got, "older pages walk every event once, newest first")
	require.Len(t, pages, 3)
	assert.Empty(t, link(pages[0], "prev"), "the first page has no newer one")

	// From the last page back up with "newer".
	p := pages[2]
	var back [][]string
	for {
		newer := link(p, "prev")
		if newer == "" {
			break
		}
		p = br.get(newer).body
		back = append(back, rows(p))
	}
	require.Len(t, back, 2)
	assert.Equal(t, want[50:100], back[0])
	assert.Equal(t, want[:50], back[1])
	assert.Contains(t, p, "120 event(s) match")
}

func TestTrendChartHasOneColumnPerBucketInProportionToTheAPI(t *testing.T) {
	t.Parallel()
	b := setup(t, false)
	now := time.Now().UTC()
	for i := range 30 {
		outcome := "success"
		if i%4 == 0 {
			outcome = "failure"
		}
		b.seed(event(fmt.Sprintf("rr-dash-%d", i%5), now.Add(-time.Duration(i*37)*time.Minute), outcome, `{}`))
	}
	br := b.browser()
	p := br.get("/console/dashboards?window=24h")
	require.Equal(t, 200, p.status, p.body)

	resp, err := http.Get(b.srv.URL + "/api/v1/audit/aggregations/trend?since=24h&interval=hour")
	require.NoError(t, err)
	api := read(t, resp)
	counts := regexp.MustCompile(`"count":(\d+)`).FindAllStringSubmatch(api.body, -1)
	cols := regexp.MustCompile(`<rect class="total" x="[0-9.]+" y="[0-9.]+" width="[0-9.]+" height="([0-9.]+)" data-count="(\d+)"`).FindAllStringSubmatch(p.body, -1)
	require.Len(t, cols, len(counts), "one column per bucket the API returns")
	var max float64
	for _, c := range counts {
		n, _ := strconv.ParseFloat(c[1], 64)
		max = maxf(max, n)
	}
	for i, c := range cols {
		n, _ := strconv.ParseFloat(counts[i][1], 64)
		h, _ := strconv.ParseFloat(c[1], 64)
		assert.Equal(t, counts[i][1], c[2], "bucket %d", i)
		assert.InDelta(t, n/max*200, h, 0.01, "bucket %d: height in proportion to its count", i)
	}
	assert.Contains(t, p.body, "30 events, 8 failures")
	assert.Contains(t, p.body, `<table>`, "the numbers are beside the charts")
	assert.Contains(t, p.body, "workflow.step.executed")

	p = br.get("/console/dashboards?since=not-a-time")
	assert.Equal(t, 400, p.status)
	assert.Contains(t, p.body, "since")
}

func maxf(a, b float64) float64 {
	if a > b {
		return a
	}
	return b
}

func TestSignInChecksTheTokenAndKeepsItInAStrictCookie(t *testing.T) {
	t.Parallel()
	b := setup(t, true)
	br := b.browser()
	p := br.get("/console/events")
	assert.Equal(t, http.StatusSeeOther, p.status, "signed out: to the sign-in page")
	assert.Contains(t, p.header.Get("Location"), "/console/signin?next=")

	p = br.signIn("not-a-token")
	assert.Equal(t, http.StatusUnauthorized, p.status)
	assert.Contains(t, p.body, "not valid")

	p = br.signIn(readerToken)
	require.Equal(t, http.StatusSeeOther, p.status, p.body)
	var session *http.Cookie
	for _, c := range (&http.Response{Header: p.header}).Cookies() {
		if c.Name == "ds_session" {
			session = c
		}
	}
	require.NotNil(t, session)
	assert.True(t, session.HttpOnly)
	assert.Equal(t, http.SameSiteStrictMode, session.SameSite)
	assert.Positive(t, session.MaxAge, "the session expires")
	assert.Equal(t, 200, br.get("/console/events").status)

	p = br.post("/console/signout", url.Values{"csrf_token": {br.csrf()}}, "self")
	assert.Equal(t, http.StatusSeeOther, p.status)
	assert.Equal(t, http.StatusSeeOther, br.get("/console/events").status, "signed out again")
}

func TestAGetOnlyTokenSeesNoHoldButtonsAndAForgedPostIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, true)
	b.seed(event("rr-hold", time.Now().UTC().Add(-time.Minute), "success", `{}`))
	reader := b.browser()
	require.Equal(t, http.StatusSeeOther, reader.signIn(readerToken).status)
	p := reader.get("/console/integrity?correlation_id=rr-hold")
	require.Equal(t, 200, p.status)
	assert.NotContains(t, p.body, `action="/console/integrity/holds"`)
	assert.NotContains(t, p.body, "Place hold")
	p = reader.post("/console/integrity/holds", url.Values{"csrf_token": {reader.csrf()}, "correlation_id": {"rr-hold"}, "reason": {"x"}}, "self")
	assert.Equal(t, http.StatusForbidden, p.status, "the API refuses it with the caller's verbs")
	holds, err := b.st.ListHolds(t.Context())
	require.NoError(t, err)
	assert.Empty(t, holds)

	auditor := b.browser()
	require.Equal(t, http.StatusSeeOther, auditor.signIn(auditorToken).status)
	p = auditor.get("/console/integrity?correlation_id=rr-hold")
	assert.Contains(t, p.body, "Place hold")
	p = auditor.post("/console/integrity/holds", url.Values{"csrf_token": {auditor.csrf()}, "correlation_id": {"rr-hold"}, "reason": {"litigation 42"}}, "self")
	require.Equal(t, http.StatusSeeOther, p.status, p.body)
	p = auditor.get(p.header.Get("Location"))
	assert.Contains(t, p.body, "litigation 42")
	assert.Contains(t, p.body, "auditor", "placed by the signed-in identity")
	p = auditor.post("/console/integrity/holds/release", url.Values{"csrf_token": {auditor.csrf()}, "correlation_id": {"rr-hold"}, "reason": {"case closed"}}, "self")
	require.Equal(t, http.StatusSeeOther, p.status, p.body)
	holds, err = b.st.ListHolds(t.Context())
	require.NoError(t, err)
	assert.Empty(t, holds)
}

func TestStateChangingFormsNeedTheCSRFTokenAndTheConsolesOrigin(t *testing.T) {
	t.Parallel()
	b := setup(t, false)
	b.seed(event("rr-csrf", time.Now().UTC().Add(-time.Minute), "success", `{}`))
	br := b.browser()
	br.get("/console/integrity")
	form := url.Values{"correlation_id": {"rr-csrf"}, "reason": {"x"}}
	p := br.post("/console/integrity/holds", form, "self")
	assert.Equal(t, http.StatusForbidden, p.status, "no CSRF token")
	form.Set("csrf_token", strings.Repeat("0", 64))
	p = br.post("/console/integrity/holds", form, "self")
	assert.Equal(t, http.StatusForbidden, p.status, "a wrong CSRF token")
	form.Set("csrf_token", br.csrf())
	p = br.post("/console/integrity/holds", form, "https://evil.example")
	assert.Equal(t, http.StatusForbidden, p.status, "another origin")
	p = br.post("/console/integrity/holds", form, "")
	assert.Equal(t, http.StatusForbidden, p.status, "no origin at all")
	holds, err := b.st.ListHolds(t.Context())
	require.NoError(t, err)
	assert.Empty(t, holds, "nothing was placed")
	p = br.post("/console/integrity/holds", form, "self")
	assert.Equal(t, http.StatusSeeOther, p.status, "the console's own form works")
}

func TestVerifyNamesTheFirstBrokenLink(t *testing.T) {
	t.Parallel()
	b := setup(t, false)
	now := time.Now().UTC().Add(-time.Minute)
	first, second := event("rr-verify", now, "success", `{"n":1}`), event("rr-verify", now.Add(time.Second), "success", `{"n":2}`)
	b.seed(first, second)
	br := b.browser()
	br.get("/console/integrity")
	p := br.post("/console/integrity/verify", url.Values{"csrf_token": {br.csrf()}, "correlation_id": {"rr-verify"}}, "self")
	require.Equal(t, 200, p.status, p.body)
	assert.Contains(t, p.body, "<b>Valid</b>")

	ctx := t.Context()
	_, err := b.st.Pool().Exec(ctx, `ALTER TABLE audit_events DISABLE TRIGGER USER`)
	require.NoError(t, err)
	_, err = b.st.Pool().Exec(ctx, `UPDATE audit_events SET event_data = '{"n":3}' WHERE event_id = $1`, second.ID)
	require.NoError(t, err)
	_, err = b.st.Pool().Exec(ctx, `ALTER TABLE audit_events ENABLE TRIGGER USER`)
	require.NoError(t, err)
	p = br.post("/console/integrity/verify", url.Values{"csrf_token": {br.csrf()}, "correlation_id": {"rr-verify"}}, "self")
	require.Equal(t, 200, p.status, p.body)
	assert.Contains(t, p.body, "<b>Broken</b>")
	assert.Contains(t, p.body, "First broken link: <a href=\"/console/events/"+second.ID.String())
}

func TestExportDownloadsTheSignedExportForAFilter(t *testing.T) {
	t.Parallel()
	b := setup(t, false)
	b.seed(event("rr-export", time.Now().UTC().Add(-time.Minute), "success", `{}`))
	br := b.browser()
	p := br.get("/console/export?correlation_id=rr-export&format=json")
	require.Equal(t, 200, p.status, p.body)
	assert.Contains(t, p.header.Get("Content-Disposition"), "attachment")
	assert.Contains(t, p.body, `"signature"`)
	assert.Contains(t, p.body, "rr-export")
}

func TestTheAPIsHTMLTimelineIsTheConsolesPage(t *testing.T) {
	t.Parallel()
	b := setup(t, false)
	b.seed(event("rr-html", time.Now().UTC().Add(-time.Minute), "success", `{}`))
	req, err := http.NewRequest(http.MethodGet, b.srv.URL+"/api/v1/audit/timeline/rr-html", nil)
	require.NoError(t, err)
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusSeeOther, resp.StatusCode)
	assert.Equal(t, "/console/timeline/rr-html", resp.Header.Get("Location"))
}
