package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"kubernaut.ai/datastorage/internal/audit"
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
	if a.consoleOn && wantsHTML(r) {
		// A browser gets the console's timeline, with links to every event;
		// the console's page answers 404 itself when there is nothing.
		http.Redirect(w, r, "/console/timeline/"+url.PathEscape(corr), http.StatusSeeOther)
		return
	}
	if ts, ok := a.timelines.(timelineStreamer); ok && !wantsHTML(r) {
		a.streamTimeline(w, r, ts, corr)
		return
	}
	tl, err := a.timelines.Get(r.Context(), corr)
	if err != nil {
		a.readFailed(w, r, err)
		return
	}
	if !wantsHTML(r) {
		writeJSON(w, http.StatusOK, tl)
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

// timelineStreamer is a TimelineReader that reads a timeline's shape first
// and its events a few at a time (*query.Timelines is one).
type timelineStreamer interface {
	Outline(ctx context.Context, correlationID string) (*query.Timeline, error)
	Fill(ctx context.Context, correlationID string, nodes []*query.TimelineNode,
		each func(*query.TimelineNode, *audit.Event) error) error
}

// timelineChunk is how many events a streamed timeline holds at once.
const timelineChunk = 32

// streamTimeline writes a timeline's JSON as it reads the events: the
// shape (tree, times, outcome) comes from an outline of a few columns,
// then the nodes are written depth first, their events read timelineChunk
// at a time (issue 18 item 6). The bytes are those of writeJSON(timeline).
// The first chunk is read before the status is sent, so an unavailable
// database is still a 503; a failure after it aborts the response (see
// streamList).
func (a *API) streamTimeline(w http.ResponseWriter, r *http.Request, ts timelineStreamer, corr string) {
	ctx := r.Context()
	tl, err := ts.Outline(ctx, corr)
	if err != nil {
		a.readFailed(w, r, err)
		return
	}
	var order []*query.TimelineNode // depth first, as written
	var walk func([]*query.TimelineNode)
	walk = func(ns []*query.TimelineNode) {
		for _, n := range ns {
			order = append(order, n)
			walk(n.Children)
		}
	}
	walk(tl.Events)
	loaded := map[*query.TimelineNode][]byte{} // the current chunk, encoded
	next := 0                                  // the first node not loaded yet
	load := func() error {
		clear(loaded)
		end := min(next+timelineChunk, len(order))
		err := ts.Fill(ctx, corr, order[next:end], func(n *query.TimelineNode, e *audit.Event) error {
			b, err := json.Marshal(e)
			loaded[n] = b
			return err
		})
		next = end
		return err
	}
	if err := load(); err != nil {
		a.readFailed(w, r, err)
		return
	}
	events := tl.Events
	tl.Events = []*query.TimelineNode{}
	frame, err := json.Marshal(tl)
	if err != nil {
		a.internalError(w, r, err)
		return
	}
	head, tail, ok := bytes.Cut(frame, []byte(`,"events":[]`))
	if !ok {
		a.internalError(w, r, errors.New("timeline frame without events"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 32<<10)
	var write func([]*query.TimelineNode) error
	write = func(ns []*query.TimelineNode) error {
		for i, n := range ns {
			if i > 0 {
				bw.WriteByte(',')
			}
			b, ok := loaded[n]
			if !ok {
				if err := load(); err != nil {
					return err
				}
				b = loaded[n]
			}
			// The node is its event's members, then offset_ms and children,
			// as TimelineNode marshals.
			bw.Write(b[:len(b)-1])
			bw.WriteString(`,"offset_ms":`)
			bw.WriteString(strconv.FormatInt(n.OffsetMS, 10))
			bw.WriteString(`,"children":[`)
			if err := write(n.Children); err != nil {
				return err
			}
			if _, err := bw.WriteString("]}"); err != nil {
				return err
			}
		}
		return nil
	}
	bw.Write(head)
	bw.WriteString(`,"events":[`)
	err = write(events)
	if err == nil {
		bw.WriteByte(']')
		bw.Write(tail)
		bw.WriteByte('\n')
		err = bw.Flush()
	}
	if err != nil {
		a.log.Warn("timeline response aborted after its status was sent", "request_id", RequestID(ctx), "error", err)
		panic(http.ErrAbortHandler)
	}
}
