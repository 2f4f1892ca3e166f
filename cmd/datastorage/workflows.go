package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/google/uuid"

	"kubernaut.ai/datastorage/client"
)

const workflowsUsage = `Usage: datastorage workflows <verb> [args] [flags]

Verbs (through the API; --server, --token-file, --output table|json on each):
  apply -f FILE|DIR       register every workflow file (YAML or JSON); prints created /
                          unchanged / conflict per file; exits 1 on any conflict or error
  list                    list versions (--name, --status, --action-type, --signal-type,
                          --latest, --limit, --cursor, --all)
  get ID|NAME@VERSION     one version with its content
  versions NAME           every version of a workflow, highest first
  search --signal-type T  rank the workflows for a signal (--explain prints the terms)
  validate DISCOVERY_ID ID|NAME@VERSION
                          was that workflow offered by that search, and is it still active?
                          exits 1 when not
  disable|enable|deprecate|archive ID|NAME@VERSION --reason TEXT
                          change a version's status (archive is final)

A version is addressed by its workflow_id or as NAME@VERSION (the id is derived from
both, CONTRACT §15.1).
`

func cmdWorkflows(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, workflowsUsage)
		return errUsage
	}
	verb, rest := args[0], args[1:]
	switch verb {
	case "apply":
		return cmdWorkflowsApply(ctx, rest, environ, stdout, stderr)
	case "list":
		return cmdWorkflowsList(ctx, rest, environ, stdout, stderr)
	case "get":
		return cmdWorkflowsGet(ctx, rest, environ, stdout, stderr)
	case "versions":
		return cmdWorkflowsVersions(ctx, rest, environ, stdout, stderr)
	case "search":
		return cmdWorkflowsSearch(ctx, rest, environ, stdout, stderr)
	case "validate":
		return cmdWorkflowsValidate(ctx, rest, environ, stdout, stderr)
	case "disable", "enable", "deprecate", "archive":
		return cmdWorkflowsStatus(ctx, verb, rest, environ, stdout, stderr)
	}
	fmt.Fprintf(stderr, "datastorage workflows: unknown verb %q\n\n%s", verb, workflowsUsage)
	return errUsage
}

// workflowFlags are the flags every verb shares.
type workflowFlags struct {
	fs                        *flag.FlagSet
	server, tokenFile, output *string
}

func newWorkflowFlags(name string, environ []string, stderr io.Writer, usage string) workflowFlags {
	fs := flag.NewFlagSet("workflows "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: datastorage workflows %s\n", usage)
		fs.PrintDefaults()
	}
	server, tokenFile, output := addClientFlags(fs, environ)
	return workflowFlags{fs: fs, server: server, tokenFile: tokenFile, output: output}
}

// parse reads flags and positional arguments in any order and checks that
// there are exactly nargs positional ones.
func (f workflowFlags) parse(args []string, nargs int) ([]string, error) {
	var pos []string
	for {
		if err := f.fs.Parse(args); err != nil {
			return nil, err
		}
		if f.fs.NArg() == 0 {
			break
		}
		pos = append(pos, f.fs.Arg(0))
		args = f.fs.Args()[1:]
	}
	if len(pos) != nargs {
		f.fs.Usage()
		return nil, errUsage
	}
	if *f.output != "table" && *f.output != "json" {
		return nil, fmt.Errorf("--output: must be table or json")
	}
	return pos, nil
}

func (f workflowFlags) client() (*client.Client, error) {
	var opts []client.Option
	if *f.tokenFile != "" {
		opts = append(opts, client.WithTokenFile(*f.tokenFile))
	}
	opts = append(opts, client.WithUserAgent("datastorage-cli"))
	return client.New(*f.server, opts...)
}

// workflowRef reads a version reference: a workflow_id, or NAME@VERSION.
func workflowRef(s string) (uuid.UUID, error) {
	if name, version, ok := strings.Cut(s, "@"); ok && name != "" && version != "" {
		return client.WorkflowID(name, version), nil
	}
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, fmt.Errorf("%q: want a workflow_id or NAME@VERSION", s)
	}
	return id, nil
}

func writeJSONOut(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func cmdWorkflowsList(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	f := newWorkflowFlags("list", environ, stderr, "list [flags]")
	var q client.WorkflowQuery
	f.fs.StringVar(&q.WorkflowName, "name", "", "only this workflow_name")
	status := f.fs.String("status", "", "only this status: active, disabled, deprecated, archived")
	f.fs.StringVar(&q.ActionType, "action-type", "", "only this action_type")
	f.fs.StringVar(&q.SignalType, "signal-type", "", "only workflows for this signal type (case-insensitive)")
	f.fs.BoolVar(&q.Latest, "latest", false, "only the latest version of each name")
	f.fs.IntVar(&q.Limit, "limit", 50, "versions per page (1..1000)")
	f.fs.StringVar(&q.Cursor, "cursor", "", "next_cursor of an earlier page")
	all := f.fs.Bool("all", false, "follow the cursor through every page")
	if _, err := f.parse(args, 0); err != nil {
		return err
	}
	q.Status = client.WorkflowStatus(*status)
	c, err := f.client()
	if err != nil {
		return err
	}
	var (
		rows []client.Workflow
		next string
	)
	if *all {
		for w, err := range c.Workflows(ctx, q) {
			if err != nil {
				return err
			}
			rows = append(rows, w)
		}
	} else {
		page, err := c.ListWorkflows(ctx, q)
		if err != nil {
			return err
		}
		rows, next = page.Workflows, page.Pagination.NextCursor
		if *f.output == "json" {
			return writeJSONOut(stdout, page)
		}
	}
	if *f.output == "json" {
		return writeJSONOut(stdout, map[string]any{"workflows": nonNil(rows)})
	}
	if err := workflowTable(stdout, rows); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\n%d shown", len(rows))
	if next != "" {
		fmt.Fprintf(stdout, "; next page: --cursor %s", next)
	}
	fmt.Fprintln(stdout)
	return nil
}

func nonNil(ws []client.Workflow) []client.Workflow {
	if ws == nil {
		return []client.Workflow{}
	}
	return ws
}

// workflowTable prints versions one per line; the latest one is starred.
func workflowTable(w io.Writer, rows []client.Workflow) error {
	col := newColorizer(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVERSION\tSTATUS\tLATEST\tACTION\tSIGNAL TYPES\tWORKFLOW ID")
	for _, wf := range rows {
		latest := ""
		if wf.IsLatest {
			latest = "*"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", wf.WorkflowName, wf.Version, col.status(wf.Status), latest,
			wf.ActionType, strings.Join(wf.Labels.SignalType, ","), wf.WorkflowID)
	}
	return tw.Flush()
}

func (c colorizer) status(s client.WorkflowStatus) string {
	switch s {
	case client.WorkflowActive:
		return c.paint("32", string(s))
	case client.WorkflowDisabled:
		return c.paint("31", string(s))
	case client.WorkflowDeprecated:
		return c.paint("33", string(s))
	}
	return string(s)
}

func cmdWorkflowsGet(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	f := newWorkflowFlags("get", environ, stderr, "get ID|NAME@VERSION [flags]")
	pos, err := f.parse(args, 1)
	if err != nil {
		return err
	}
	id, err := workflowRef(pos[0])
	if err != nil {
		return err
	}
	c, err := f.client()
	if err != nil {
		return err
	}
	wf, err := c.GetWorkflow(ctx, id)
	if err != nil {
		return err
	}
	if *f.output == "json" {
		return writeJSONOut(stdout, wf)
	}
	col := newColorizer(stdout)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	row("name", col.bold(wf.WorkflowName)+" "+wf.Version)
	row("workflow_id", wf.WorkflowID.String())
	row("title", wf.Title)
	row("action_type", wf.ActionType)
	status := col.status(wf.Status)
	if wf.IsLatest {
		status += " (latest)"
	}
	row("status", status)
	row("status_reason", wf.StatusReason)
	l := wf.Labels
	for _, kv := range [][2]string{{"signal_type", strings.Join(l.SignalType, ",")}, {"severity", strings.Join(l.Severity, ",")},
		{"component", strings.Join(l.Component, ",")}, {"environment", strings.Join(l.Environment, ",")},
		{"priority", strings.Join(l.Priority, ",")}, {"risk_tolerance", strings.Join(l.RiskTolerance, ",")},
		{"business_category", strings.Join(l.BusinessCategory, ",")}} {
		row("labels."+kv[0], kv[1])
	}
	if b, _ := json.Marshal(wf.DetectedLabels); string(b) != "{}" {
		row("detected_labels", string(b))
	}
	for _, k := range sortedMapKeys(wf.CustomLabels) {
		row("custom_labels."+k, strings.Join(wf.CustomLabels[k], ","))
	}
	row("engine", wf.Execution.Engine)
	row("bundle", wf.Execution.Bundle)
	row("service_account", wf.Execution.ServiceAccount)
	for _, p := range wf.Parameters {
		desc := p.Type
		if p.Required {
			desc += ", required"
		}
		if p.Default != nil {
			desc += fmt.Sprintf(", default %v", p.Default)
		}
		row("parameter "+p.Name, desc)
	}
	row("content_hash", wf.ContentHash)
	row("created", wf.CreatedAt.Format("2006-01-02 15:04:05")+" by "+wf.CreatedBy)
	if !wf.UpdatedAt.Equal(wf.CreatedAt) {
		row("updated", wf.UpdatedAt.Format("2006-01-02 15:04:05")+" by "+wf.UpdatedBy)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\n%s\n", wf.Description.What)
	fmt.Fprintf(stdout, "\n--- content (%d bytes) ---\n%s", len(wf.Content), wf.Content)
	if !strings.HasSuffix(wf.Content, "\n") {
		fmt.Fprintln(stdout)
	}
	return nil
}

func sortedMapKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func cmdWorkflowsVersions(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	f := newWorkflowFlags("versions", environ, stderr, "versions NAME [flags]")
	pos, err := f.parse(args, 1)
	if err != nil {
		return err
	}
	c, err := f.client()
	if err != nil {
		return err
	}
	vs, err := c.WorkflowVersions(ctx, pos[0])
	if err != nil {
		return err
	}
	if *f.output == "json" {
		return writeJSONOut(stdout, vs)
	}
	return workflowTable(stdout, vs.Versions)
}

func cmdWorkflowsStatus(ctx context.Context, verb string, args, environ []string, stdout, stderr io.Writer) error {
	f := newWorkflowFlags(verb, environ, stderr, verb+" ID|NAME@VERSION --reason TEXT [flags]")
	reason := f.fs.String("reason", "", "why (required, 1..500 characters; recorded in the audit trail)")
	pos, err := f.parse(args, 1)
	if err != nil {
		return err
	}
	if strings.TrimSpace(*reason) == "" {
		return fmt.Errorf("--reason: required")
	}
	id, err := workflowRef(pos[0])
	if err != nil {
		return err
	}
	to := map[string]client.WorkflowStatus{"disable": client.WorkflowDisabled, "enable": client.WorkflowActive,
		"deprecate": client.WorkflowDeprecated, "archive": client.WorkflowArchived}[verb]
	c, err := f.client()
	if err != nil {
		return err
	}
	wf, err := c.SetWorkflowStatus(ctx, id, to, *reason)
	if err != nil {
		return err
	}
	if *f.output == "json" {
		return writeJSONOut(stdout, wf)
	}
	latest := ""
	if wf.IsLatest {
		latest = " (latest)"
	}
	fmt.Fprintf(stdout, "%s %s is now %s%s\n", wf.WorkflowName, wf.Version, wf.Status, latest)
	return nil
}

// keyValues collects repeated key=value flags.
type keyValues []string

func (k *keyValues) String() string { return strings.Join(*k, " ") }
func (k *keyValues) Set(v string) error {
	if key, val, ok := strings.Cut(v, "="); !ok || key == "" || val == "" {
		return fmt.Errorf("want key=value, got %q", v)
	}
	*k = append(*k, v)
	return nil
}

// detectedLabels reads --detected key=value flags into the request's
// detected labels; booleans are parsed, the tools taken as given.
func detectedLabels(kvs keyValues) (client.DetectedLabels, error) {
	var d client.DetectedLabels
	bools := map[string]**bool{"gitops_managed": &d.GitOpsManaged, "pdb_protected": &d.PDBProtected,
		"network_isolated": &d.NetworkIsolated, "helm_managed": &d.HelmManaged, "stateful": &d.Stateful, "hpa_enabled": &d.HPAEnabled}
	for _, kv := range kvs {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "gitops_tool":
			d.GitOpsTool = v
		case "service_mesh":
			d.ServiceMesh = v
		default:
			p, ok := bools[k]
			if !ok {
				return d, fmt.Errorf("--detected %s: unknown key (gitops_managed, pdb_protected, network_isolated, helm_managed, stateful, hpa_enabled, gitops_tool, service_mesh)", k)
			}
			switch v {
			case "true":
				*p = client.Bool(true)
			case "false":
				*p = client.Bool(false)
			default:
				return d, fmt.Errorf("--detected %s: want true or false, got %q", k, v)
			}
		}
	}
	return d, nil
}

func cmdWorkflowsSearch(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	f := newWorkflowFlags("search", environ, stderr, "search --signal-type TYPE [flags]")
	var req client.SearchRequest
	sc := &req.Context
	f.fs.StringVar(&sc.SignalType, "signal-type", "", "the signal's type (required), e.g. OOMKilled")
	f.fs.StringVar(&sc.Severity, "severity", "", "context: severity")
	f.fs.StringVar(&sc.Component, "component", "", "context: component")
	f.fs.StringVar(&sc.Environment, "environment", "", "context: environment")
	f.fs.StringVar(&sc.Priority, "priority", "", "context: priority")
	f.fs.StringVar(&sc.RiskTolerance, "risk-tolerance", "", "context: risk_tolerance")
	f.fs.StringVar(&sc.BusinessCategory, "business-category", "", "context: business_category")
	var detected, custom keyValues
	f.fs.Var(&detected, "detected", "a detected label of the target, key=value (repeatable), e.g. gitops_managed=true")
	f.fs.Var(&custom, "custom", "a custom label, key=v1,v2 (repeatable)")
	f.fs.StringVar(&req.Text, "text", "", "free text ranked against title and description")
	f.fs.StringVar(&req.ActionType, "action-type", "", "only this action_type")
	f.fs.IntVar(&req.TopK, "top-k", 0, "at most this many results (1..100; default 10)")
	f.fs.Float64Var(&req.MinScore, "min-score", 0, "drop results scoring below this (0..1)")
	f.fs.BoolVar(&req.Explain, "explain", false, "print the terms of each score")
	f.fs.StringVar(&req.RemediationID, "remediation-id", "", "the remediation this search is for (its audit correlation)")
	if _, err := f.parse(args, 0); err != nil {
		return err
	}
	if sc.SignalType == "" {
		return fmt.Errorf("--signal-type: required")
	}
	var err error
	if req.DetectedLabels, err = detectedLabels(detected); err != nil {
		return err
	}
	for _, kv := range custom {
		k, v, _ := strings.Cut(kv, "=")
		if req.CustomLabels == nil {
			req.CustomLabels = map[string][]string{}
		}
		req.CustomLabels[k] = append(req.CustomLabels[k], strings.Split(v, ",")...)
	}
	c, err := f.client()
	if err != nil {
		return err
	}
	res, err := c.SearchWorkflows(ctx, req)
	if err != nil {
		return err
	}
	if *f.output == "json" {
		return writeJSONOut(stdout, res)
	}
	return searchTable(stdout, res)
}

// searchTable prints the ranked results, then, when the search explained
// them, each result's terms in a table of their own.
func searchTable(w io.Writer, res *client.SearchResult) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RANK\tSCORE\tNAME\tVERSION\tACTION\tTITLE\tWORKFLOW ID")
	for _, h := range res.Results {
		fmt.Fprintf(tw, "%d\t%.4f\t%s\t%s\t%s\t%s\t%s\n", h.Rank, h.Score, h.Workflow.WorkflowName, h.Workflow.Version,
			h.Workflow.ActionType, h.Workflow.Title, h.Workflow.WorkflowID)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, h := range res.Results {
		if len(h.Terms) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n#%d %s %s: score %.4f = the sum of the contributions\n", h.Rank, h.Workflow.WorkflowName, h.Workflow.Version, h.Score)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  TERM\tREQUESTED\tOFFERED\tMATCH\tWEIGHT\tCONTRIBUTION")
		for _, t := range h.Terms {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%.4g\t%.4g\t%.4f\n", t.Term, compactJSON(t.Requested), compactJSON(t.Offered),
				t.Match, t.Weight, t.Contribution)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "\n%d shown of %d candidates; discovery %s\n", len(res.Results), res.TotalCandidates, res.DiscoveryID)
	if len(res.Results) > 0 {
		fmt.Fprintf(w, "check a choice: datastorage workflows validate %s %s\n", res.DiscoveryID, res.Results[0].Workflow.WorkflowID)
	}
	return nil
}

func compactJSON(b json.RawMessage) string {
	if len(b) == 0 {
		return "null"
	}
	return string(b)
}

func cmdWorkflowsValidate(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	f := newWorkflowFlags("validate", environ, stderr, "validate DISCOVERY_ID ID|NAME@VERSION [flags]")
	pos, err := f.parse(args, 2)
	if err != nil {
		return err
	}
	id, err := workflowRef(pos[1])
	if err != nil {
		return err
	}
	c, err := f.client()
	if err != nil {
		return err
	}
	v, err := c.ValidateSelection(ctx, pos[0], id)
	if err != nil {
		return err
	}
	if *f.output == "json" {
		if err := writeJSONOut(stdout, v); err != nil {
			return err
		}
	} else if v.Valid {
		fmt.Fprintf(stdout, "valid: %s was offered by discovery %s and is active\n", id, pos[0])
	}
	if !v.Valid {
		return fmt.Errorf("%w: %s", errSelectionInvalid, v.Reason)
	}
	return nil
}

// errSelectionInvalid makes validate exit 1 when the server refuses the choice.
var errSelectionInvalid = errors.New("not valid")
