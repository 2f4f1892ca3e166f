package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/query"
)

// serverEnv names the API address for the read commands. It is deliberately
// outside the DATASTORAGE_ prefix, which belongs to the service's config keys.
const serverEnv = "KUBERNAUT_DATASTORAGE_URL"

// apiClient is the read commands' view of the HTTP API.
type apiClient struct {
	base  string
	token string
	http  *http.Client
}

// addClientFlags registers the flags every read command shares.
func addClientFlags(fs *flag.FlagSet, environ []string) (server, tokenFile, output *string) {
	def := "http://127.0.0.1:8080"
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, serverEnv+"="); ok && v != "" {
			def = v
		}
	}
	server = fs.String("server", def, "API base URL (default $"+serverEnv+" or http://127.0.0.1:8080)")
	tokenFile = fs.String("token-file", "", "file holding a bearer token")
	output = fs.String("output", "table", "table, or json for scripts")
	return
}

func newAPIClient(server, tokenFile string) (*apiClient, error) {
	c := &apiClient{base: strings.TrimRight(server, "/"), http: &http.Client{Timeout: 30 * time.Second}}
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return nil, fmt.Errorf("read --token-file: %w", err)
		}
		c.token = strings.TrimSpace(string(b))
	}
	return c, nil
}

// get fetches path and returns the body; a non-200 answer becomes an error
// carrying the problem's title and detail.
func (c *apiClient) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var p struct {
			Title       string            `json:"title"`
			Detail      string            `json:"detail"`
			FieldErrors map[string]string `json:"field_errors"`
		}
		if json.Unmarshal(body, &p) == nil && p.Title != "" {
			msg := fmt.Sprintf("%s (%d): %s", p.Title, resp.StatusCode, p.Detail)
			for k, v := range p.FieldErrors {
				msg += fmt.Sprintf("\n  %s: %s", k, v)
			}
			return nil, fmt.Errorf("%s", msg)
		}
		return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return body, nil
}

func cmdEvents(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("events", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server, tokenFile, output := addClientFlags(fs, environ)
	params := map[string]*string{}
	for _, name := range []string{"correlation-id", "event-type", "event-category", "event-outcome", "severity",
		"namespace", "cluster-id", "actor-id", "resource-type", "resource-id", "since", "until", "order", "cursor"} {
		params[name] = fs.String(name, "", "filter: "+strings.ReplaceAll(name, "-", "_"))
	}
	limit := fs.Int("limit", query.DefaultLimit, "events per page (1..1000)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *output != "table" && *output != "json" {
		return fmt.Errorf("--output: must be table or json")
	}
	q := url.Values{}
	for name, v := range params {
		if *v != "" {
			q.Set(strings.ReplaceAll(name, "-", "_"), *v)
		}
	}
	q.Set("limit", fmt.Sprint(*limit))
	c, err := newAPIClient(*server, *tokenFile)
	if err != nil {
		return err
	}
	body, err := c.get(ctx, "/api/v1/audit/events?"+q.Encode())
	if err != nil {
		return err
	}
	if *output == "json" {
		_, err := stdout.Write(body)
		return err
	}
	var page struct {
		Data       []audit.Event `json:"data"`
		Pagination struct {
			Total      int64  `json:"total"`
			Exact      bool   `json:"total_is_exact"`
			HasMore    bool   `json:"has_more"`
			NextCursor string `json:"next_cursor"`
		} `json:"pagination"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	col := newColorizer(stdout)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tTYPE\tOUTCOME\tACTOR\tCORRELATION\tEVENT ID")
	for _, e := range page.Data {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Timestamp.Std().Format("2006-01-02 15:04:05.000"),
			e.Type, col.outcome(e.Outcome), e.ActorID, e.CorrelationID, e.ID)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	total := fmt.Sprint(page.Pagination.Total)
	if !page.Pagination.Exact {
		total = "at least " + total
	}
	fmt.Fprintf(stdout, "\n%d shown, %s in all", len(page.Data), total)
	if page.Pagination.HasMore {
		fmt.Fprintf(stdout, "; next page: --cursor %s", page.Pagination.NextCursor)
	}
	fmt.Fprintln(stdout)
	return nil
}

func cmdTimeline(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("timeline", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server, tokenFile, output := addClientFlags(fs, environ)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: datastorage timeline CORRELATION_ID [flags]")
		fs.PrintDefaults()
	}
	// Accept the id before or after the flags.
	var id string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		id, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if id == "" && fs.NArg() == 1 {
		id = fs.Arg(0)
	}
	if id == "" {
		fs.Usage()
		return errUsage
	}
	if *output == "table" {
		*output = "tree"
	}
	if *output != "tree" && *output != "json" {
		return fmt.Errorf("--output: must be tree or json")
	}
	c, err := newAPIClient(*server, *tokenFile)
	if err != nil {
		return err
	}
	body, err := c.get(ctx, "/api/v1/audit/timeline/"+url.PathEscape(id))
	if err != nil {
		return err
	}
	if *output == "json" {
		_, err := stdout.Write(body)
		return err
	}
	var tl query.Timeline
	if err := json.Unmarshal(body, &tl); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	col := newColorizer(stdout)
	fmt.Fprintf(stdout, "%s  %s  %s → %s  (%d ms, %d events)\n", col.bold(tl.CorrelationID), col.outcome(tl.Outcome),
		tl.StartedAt.Std().Format("2006-01-02 15:04:05.000"), tl.EndedAt.Std().Format("15:04:05.000"), tl.DurationMS, tl.EventCount)
	var walk func(nodes []*query.TimelineNode, prefix string)
	walk = func(nodes []*query.TimelineNode, prefix string) {
		for i, n := range nodes {
			branch, next := "├─ ", "│  "
			if i == len(nodes)-1 {
				branch, next = "└─ ", "   "
			}
			line := fmt.Sprintf("%s%s%s  %s  %s  +%dms", prefix, branch, n.Timestamp.Std().Format("15:04:05.000"),
				n.Type, col.outcome(n.Outcome), n.OffsetMS)
			if n.DurationMS != nil {
				line += fmt.Sprintf("  took %dms", *n.DurationMS)
			}
			if n.ErrorMessage != "" {
				line += "  " + col.red(n.ErrorMessage)
			}
			fmt.Fprintln(stdout, line)
			walk(n.Children, prefix+next)
		}
	}
	walk(tl.Events, "")
	if tl.Truncated {
		fmt.Fprintln(stdout, "(only the first events are shown)")
	}
	return nil
}

// colorizer adds ANSI colours when writing to a terminal, and nothing when
// writing to a pipe or file, or when NO_COLOR is set.
type colorizer struct{ on bool }

func newColorizer(w io.Writer) colorizer {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("NO_COLOR") != "" {
		return colorizer{}
	}
	fi, err := f.Stat()
	return colorizer{on: err == nil && fi.Mode()&os.ModeCharDevice != 0}
}

func (c colorizer) paint(code, s string) string {
	if !c.on {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

func (c colorizer) bold(s string) string { return c.paint("1", s) }
func (c colorizer) red(s string) string  { return c.paint("31", s) }

func (c colorizer) outcome(s string) string {
	switch s {
	case "success":
		return c.paint("32", s)
	case "failure":
		return c.paint("31", s)
	case "pending":
		return c.paint("33", s)
	}
	return s
}
