package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"kubernaut.ai/datastorage/client"
	"kubernaut.ai/datastorage/internal/query"
)

// serverEnv names the API address for the read commands. It is deliberately
// outside the DATASTORAGE_ prefix, which belongs to the service's config keys.
const serverEnv = "KUBERNAUT_DATASTORAGE_URL"

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

// newAPIClient returns the SDK client of the read commands: a 30-second
// timeout per request and, with --token-file, its token as bearer.
func newAPIClient(server, tokenFile string) (*client.Client, error) {
	opts := []client.Option{client.WithHTTPClient(&http.Client{Timeout: 30 * time.Second})}
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return nil, fmt.Errorf("read --token-file: %w", err)
		}
		opts = append(opts, client.WithToken(strings.TrimSpace(string(b))))
	}
	c, err := client.New(server, opts...)
	if err != nil {
		return nil, fmt.Errorf("--server: %w", err)
	}
	return c, nil
}

// readError turns a problem answer into "Title (status): detail" and one
// line per field error, the form the read commands print.
func readError(err error) error {
	var p *client.Problem
	if !errors.As(err, &p) {
		return err
	}
	msg := fmt.Sprintf("%s (%d): %s", p.Title, p.Status, p.Detail)
	for _, k := range slices.Sorted(maps.Keys(p.FieldErrors)) {
		msg += fmt.Sprintf("\n  %s: %s", k, p.FieldErrors[k])
	}
	return errors.New(msg)
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
	q := client.Query{
		CorrelationID: *params["correlation-id"],
		Type:          *params["event-type"],
		Category:      client.Category(*params["event-category"]),
		Outcome:       client.Outcome(*params["event-outcome"]),
		Severity:      *params["severity"],
		Namespace:     *params["namespace"],
		ClusterID:     *params["cluster-id"],
		ActorID:       *params["actor-id"],
		ResourceType:  *params["resource-type"],
		ResourceID:    *params["resource-id"],
		Since:         *params["since"],
		Until:         *params["until"],
		Order:         client.Order(*params["order"]),
		Cursor:        *params["cursor"],
		Limit:         *limit,
	}
	c, err := newAPIClient(*server, *tokenFile)
	if err != nil {
		return err
	}
	page, err := c.QueryEvents(ctx, q)
	if err != nil {
		return readError(err)
	}
	if *output == "json" {
		_, err := stdout.Write(page.Raw)
		return err
	}
	col := newColorizer(stdout)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tTYPE\tOUTCOME\tACTOR\tCORRELATION\tEVENT ID")
	for _, e := range page.Data {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Timestamp.UTC().Format("2006-01-02 15:04:05.000"),
			e.Type, col.outcome(string(e.Outcome)), e.ActorID, e.CorrelationID, e.ID)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	total := fmt.Sprint(page.Pagination.Total)
	if !page.Pagination.TotalIsExact {
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
	id, err := parseOneArg(fs, args)
	if err != nil {
		return err
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
	tl, err := c.Timeline(ctx, id)
	if err != nil {
		return readError(err)
	}
	if *output == "json" {
		_, err := stdout.Write(tl.Raw)
		return err
	}
	col := newColorizer(stdout)
	fmt.Fprintf(stdout, "%s  %s  %s → %s  (%d ms, %d events)\n", col.bold(tl.CorrelationID), col.outcome(string(tl.Outcome)),
		tl.StartedAt.UTC().Format("2006-01-02 15:04:05.000"), tl.EndedAt.UTC().Format("15:04:05.000"), tl.DurationMS, tl.EventCount)
	var walk func(nodes []client.TimelineEvent, prefix string)
	walk = func(nodes []client.TimelineEvent, prefix string) {
		for i, n := range nodes {
			branch, next := "├─ ", "│  "
			if i == len(nodes)-1 {
				branch, next = "└─ ", "   "
			}
			line := fmt.Sprintf("%s%s%s  %s  %s  +%dms", prefix, branch, n.Timestamp.UTC().Format("15:04:05.000"),
				n.Type, col.outcome(string(n.Outcome)), n.OffsetMS)
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

// parseOneArg parses fs with the one positional argument a read command
// takes (a correlation id), given before or after the flags. Without it the
// usage is printed and errUsage returned.
func parseOneArg(fs *flag.FlagSet, args []string) (string, error) {
	var arg string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		arg, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if arg == "" && fs.NArg() == 1 {
		arg = fs.Arg(0)
	}
	if arg == "" {
		fs.Usage()
		return "", errUsage
	}
	return arg, nil
}
