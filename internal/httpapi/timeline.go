package httpapi

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"kubernaut.ai/datastorage/internal/query"
)

// TimelineReader builds timelines.
type TimelineReader interface {
	Get(ctx context.Context, correlationID string) (*query.Timeline, error)
}

//go:embed timeline.html.tmpl
var templateFS embed.FS

// timelinePage renders a timeline for people. It is self-contained (inline
// CSS, no script, no external assets) because the cluster it runs in may
// have no internet access.
var timelinePage = template.Must(template.New("timeline.html.tmpl").Funcs(template.FuncMap{
	"clock": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000") },
	"pretty": func(raw json.RawMessage) string {
		var b bytes.Buffer
		if json.Indent(&b, raw, "", "  ") != nil {
			return string(raw)
		}
		return b.String()
	},
}).ParseFS(templateFS, "timeline.html.tmpl"))

func (a *API) getTimeline(w http.ResponseWriter, r *http.Request) {
	corr := r.PathValue("correlation_id")
	tl, err := a.timelines.Get(r.Context(), corr)
	if err != nil {
		a.readFailed(w, r, err)
		return
	}
	if !wantsHTML(r) {
		writeJSON(w, http.StatusOK, tl)
		return
	}
	if a.consoleOn {
		// A browser gets the console's timeline, with links to every event.
		http.Redirect(w, r, "/console/timeline/"+url.PathEscape(corr), http.StatusSeeOther)
		return
	}
	var b bytes.Buffer
	if err := timelinePage.Execute(&b, tl); err != nil {
		a.internalError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b.Bytes())
}

// wantsHTML reports whether the client prefers a page to JSON: browsers send
// text/html first; API clients send application/json or nothing.
func wantsHTML(r *http.Request) bool {
	accept := r.Header.Get("Accept")
	html, jsn := strings.Index(accept, "text/html"), strings.Index(accept, "application/json")
	return html >= 0 && (jsn < 0 || html < jsn)
}
