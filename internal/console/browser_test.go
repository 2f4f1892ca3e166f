package console_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests drive Debian's Chromium (scripts/deps.sh installs it for
// `make test`) headless against the real server on real PostgreSQL. Without
// Chromium they skip, except under CI, where a missing browser is a failure.

// chrome starts a headless Chromium for the test and returns its context.
// A JavaScript dialog (alert, confirm) fails the test: nothing the console
// shows may open one.
func chrome(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is not installed; scripts/deps.sh installs it")
		}
		t.Skip("chromium is not installed (scripts/deps.sh installs it)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // the tests may run as root
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first action starts the browser; it must not run under a timeout.
	require.NoError(t, chromedp.Do(ctx))
	require.NoError(t, chromedp.Listen(ctx, func(ev any) {
		if d, ok := ev.(*cdppage.EventJavascriptDialogOpening); ok {
			t.Errorf("a dialog opened: %q", d.Message)
			go func() {
				_, _ = chromedp.Call(ctx, cdppage.HandleJavaScriptDialog, cdppage.HandleJavaScriptDialogParams{Accept: false})
			}()
		}
	}))
	return ctx
}

// b drives one tab.
type tab struct {
	t   *testing.T
	ctx context.Context
}

func (tb tab) do(steps ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 90*time.Second)
	defer cancel()
	require.NoError(tb.t, chromedp.Do(ctx, steps...))
}

func value[T any](tb tab, a chromedp.Action[T]) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 90*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	require.NoError(tb.t, err)
	return v
}

func count(tb tab, sel string) int {
	tb.t.Helper()
	return value(tb, chromedp.Evaluate[int](`document.querySelectorAll(`+strconv.Quote(sel)+`).length`))
}

type css = chromedp.CSS

func TestBrowserSearchPageOpenEventTimelineAndBack(t *testing.T) {
	t.Parallel()
	b := setup(t, false)
	now := time.Now().UTC().Add(-time.Hour)
	for i := range 60 {
		e := event("rr-browse", now.Add(time.Duration(i)*time.Second), "success", fmt.Sprintf(`{"step":%d}`, i))
		if i == 59 {
			e.Type = "remediation.completed"
		}
		b.seed(e)
	}
	b.seed(event("rr-other", now, "failure", `{}`))
	tb := tab{t, chrome(t)}

	tb.do(chromedp.Navigate(b.srv.URL+"/console/events"),
		chromedp.SetValue(css(`input[name="correlation_id"]`), "rr-browse"),
		chromedp.Click(css(`.filters button[type="submit"]`)),
		chromedp.WaitVisible(css(`a[rel="next"]`)))
	assert.Contains(t, value(tb, chromedp.Location()), "correlation_id=rr-browse", "the filter is in the address")
	assert.Equal(t, 50, count(tb, "table.events tbody tr"))
	assert.Equal(t, "remediation.completed", value(tb, chromedp.Text(css(`table.events tbody tr td:nth-child(2)`))), "newest first")

	tb.do(chromedp.Click(css(`a[rel="next"]`)), chromedp.WaitVisible(css(`a[rel="prev"]`)))
	assert.Equal(t, 10, count(tb, "table.events tbody tr"), "the older page holds the rest")
	tb.do(chromedp.Click(css(`a[rel="prev"]`)), chromedp.WaitVisible(css(`a[rel="next"]`)))
	assert.Equal(t, 50, count(tb, "table.events tbody tr"), "newer leads back to the first page")

	tb.do(chromedp.Click(css(`table.events tbody tr td:first-child a`)), chromedp.WaitVisible(css(`pre.json`)))
	assert.Contains(t, value(tb, chromedp.Title()), "Event ")
	tb.do(chromedp.Click(css(`p.summary a`)), chromedp.WaitVisible(css(`ul.tree.root`)))
	assert.Equal(t, 60, count(tb, "ul.tree li"), "the timeline shows every event of the remediation")
	assert.Contains(t, value(tb, chromedp.Title()), "Timeline rr-browse")
	value(tb, chromedp.Evaluate[bool](`history.back(); true`)) // the browser's Back button
	require.Eventually(t, func() bool {
		return strings.Contains(value(tb, chromedp.Location()), "/console/events/") && count(tb, "pre.json") == 1
	}, 90*time.Second, 100*time.Millisecond, "Back returns to the event")
}

func TestBrowserShowsHostileEventDataAsText(t *testing.T) {
	t.Parallel()
	b := setup(t, false)
	e := event("rr-xss", time.Now().UTC().Add(-time.Minute), "failure", hostile)
	e.ErrorMessage = `<img src=x onerror=alert(4)>`
	b.seed(e)
	tb := tab{t, chrome(t)}
	for _, path := range []string{"/console/events/" + e.ID.String(), "/console/timeline/rr-xss", "/console/events?correlation_id=rr-xss"} {
		tb.do(chromedp.Navigate(b.srv.URL+path), chromedp.WaitVisible(css(`main`)),
			chromedp.Sleep(200*time.Millisecond)) // an injected onerror would have fired by now
		assert.Zero(t, count(tb, "main script, main img, main iframe, main [onerror], a[href^='javascript:']"), "%s: an element was injected", path)
		if strings.Contains(path, "/events/") {
			assert.Contains(t, value(tb, chromedp.Text(css(`main`))), "<script>alert(1)</script>", "%s: the data is shown as text", path)
		}
	}
}

func TestBrowserDashboardDrawsOneColumnPerBucket(t *testing.T) {
	t.Parallel()
	b := setup(t, false)
	now := time.Now().UTC()
	for i := range 20 {
		b.seed(event("rr-chart", now.Add(-time.Duration(i)*3*time.Hour), "success", `{}`))
	}
	tb := tab{t, chrome(t)}
	tb.do(chromedp.Navigate(b.srv.URL+"/console/dashboards?window=7d"), chromedp.WaitVisible(css(`#trend svg`)))
	assert.Equal(t, 8, count(tb, "#trend rect.total"), "a 7-day window touches 8 calendar days")
	heights := value(tb, chromedp.Evaluate[[]float64](`[...document.querySelectorAll("#trend rect.total")].map(r => r.getBBox().height)`))
	counts := value(tb, chromedp.Evaluate[[]float64](`[...document.querySelectorAll("#trend rect.total")].map(r => +r.dataset.count)`))
	var max float64
	for _, c := range counts {
		max = maxf(max, c)
	}
	for i := range heights {
		assert.InDelta(t, counts[i]/max*200, heights[i], 0.01, "bucket %d", i)
	}
}

func TestBrowserSignInAndVerbs(t *testing.T) {
	t.Parallel()
	b := setup(t, true)
	b.seed(event("rr-signin", time.Now().UTC().Add(-time.Minute), "success", `{}`))
	tb := tab{t, chrome(t)}
	tb.do(chromedp.Navigate(b.srv.URL+"/console/integrity"), chromedp.WaitVisible(css(`#token`)),
		chromedp.SendKeys(css(`#token`), "wrong-token"), chromedp.Submit(css(`#token`)),
		chromedp.WaitVisible(css(`p.error`)))
	assert.Contains(t, value(tb, chromedp.Text(css(`p.error`))), "not valid")
	tb.do(chromedp.SetValue(css(`#token`), readerToken), chromedp.Submit(css(`#token`)),
		chromedp.WaitVisible(css(`table.holds`)))
	assert.Contains(t, value(tb, chromedp.Location()), "/console/integrity", "back where the person wanted to go")
	assert.Equal(t, "reader", value(tb, chromedp.Text(css(`.who span`))))
	assert.Zero(t, count(tb, "#place-hold"), "a get-only token is offered no hold form")
}

// TestScreenshots writes a screenshot of every page in light and dark when
// DATASTORAGE_SCREENSHOTS names a directory (make screenshots); docs/console.md
// shows them.
func TestScreenshots(t *testing.T) {
	dir := os.Getenv("DATASTORAGE_SCREENSHOTS")
	if dir == "" {
		t.Skip("set DATASTORAGE_SCREENSHOTS=DIR (make screenshots) to write them")
	}
	b := setup(t, false)
	now := time.Now().UTC()
	types := []string{"gateway.signal.received", "aianalysis.completed", "workflow.step.executed", "notification.sent"}
	for i := range 160 {
		outcome := "success"
		if i%7 == 0 {
			outcome = "failure"
		}
		e := event(fmt.Sprintf("rr-2026-%03d", i%12), now.Add(-time.Duration(i*9)*time.Minute), outcome,
			`{"signal":"OOMKilled","confidence":0.93,"steps":["inspect","raise-limit"],"dry_run":false}`)
		e.Type = types[i%len(types)]
		e.Namespace = []string{"prod", "payments", "staging"}[i%3]
		e.Severity = []string{"critical", "warning", "info", "info"}[i%4]
		b.seed(e)
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	tb := tab{t, chrome(t)}
	tb.do(chromedp.Navigate(b.srv.URL + "/console/events"))
	first := value(tb, chromedp.AttributeValue(css(`table.events tbody tr td:first-child a`), "href")).Value
	pages := map[string]string{"index": "/console/", "events": "/console/events", "event": first,
		"timeline": "/console/timeline/rr-2026-001", "dashboards": "/console/dashboards?window=24h", "integrity": "/console/integrity"}
	for name, path := range pages {
		for _, scheme := range []string{"light", "dark"} {
			_, err := chromedp.Call(tb.ctx, emulation.SetEmulatedMedia,
				emulation.SetEmulatedMediaParams{Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}})
			require.NoError(t, err)
			tb.do(chromedp.Navigate(b.srv.URL+path), chromedp.WaitVisible(css(`main`)))
			png := value(tb, chromedp.FullScreenshot(100))
			require.NoError(t, os.WriteFile(filepath.Join(dir, name+"-"+scheme+".png"), png, 0o644))
		}
	}
}
