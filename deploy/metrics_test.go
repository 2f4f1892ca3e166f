package deploy_test

import (
	"encoding/json"
	"fmt"
	"go/ast"
	goparser "go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// Why the exported names are read from the source: the rules and the
// dashboard must only name metrics the server exports, with labels it sets.
// Scraping a running server would also see them, but only the series that
// have had a value (a histogram no request has touched yet, a counter of
// an error that did not happen) and only with the server's dependencies
// running; this module must stay free of both. So the test reads the
// service's Go sources with go/ast (not a regular expression), where every
// metric is declared with its type and its label names: prometheus.*Opts
// literals with Name "datastorage_…" and prometheus.NewDesc("datastorage_…",
// help, labels, …). The main module complements this: the client package's
// restart test scrapes the real binary and checks that every datastorage_*
// name the rules and the dashboard use is really served.

// metricInfo is what the rules may use of one exported series name.
type metricInfo struct {
	labels map[string]bool
	source string // file:line of the declaration
}

// targetLabels are attached by Prometheus and the Prometheus Operator to
// every scraped series.
var targetLabels = []string{"job", "instance", "namespace", "pod", "service", "container", "endpoint"}

// exportedMetrics collects every metric the service declares.
func exportedMetrics(t *testing.T) map[string]*metricInfo {
	t.Helper()
	out := map[string]*metricInfo{}
	add := func(name, kind string, lbls []string, pos string) {
		series := []string{name}
		var extra []string
		switch kind {
		case "Histogram":
			series = []string{name + "_bucket", name + "_sum", name + "_count"}
		case "Summary":
			series = []string{name, name + "_sum", name + "_count"}
			extra = []string{"quantile"}
		}
		for _, s := range series {
			m := &metricInfo{labels: map[string]bool{}, source: pos}
			for _, l := range append(slices.Clone(lbls), extra...) {
				m.labels[l] = true
			}
			if strings.HasSuffix(s, "_bucket") {
				m.labels["le"] = true
			}
			out[s] = m
		}
	}
	goCollectors := false
	for _, dir := range []string{repo("internal"), repo("cmd")} {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			fset := token.NewFileSet()
			f, err := goparser.ParseFile(fset, path, nil, 0)
			if err != nil {
				return err
			}
			known := stringSlices(f)
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				fn := selectorName(call.Fun)
				switch {
				case fn == "prometheus.NewDesc" && len(call.Args) >= 3:
					name, ok := stringLit(call.Args[0])
					if ok && strings.HasPrefix(name, "datastorage_") {
						// A Desc's type shows only at collection; the
						// declarations here are gauges and counters.
						add(name, "Desc", resolveStrings(call.Args[2], known), fset.Position(call.Pos()).String())
					}
				case strings.HasPrefix(fn, "prometheus.New") && len(call.Args) >= 1:
					lit, ok := call.Args[0].(*ast.CompositeLit)
					if !ok {
						return true
					}
					opts := selectorName(lit.Type) // prometheus.CounterOpts, HistogramOpts, …
					kind := strings.TrimSuffix(strings.TrimPrefix(opts, "prometheus."), "Opts")
					name := ""
					for _, el := range lit.Elts {
						kv, ok := el.(*ast.KeyValueExpr)
						if !ok {
							continue
						}
						if k, ok := kv.Key.(*ast.Ident); ok && k.Name == "Name" {
							name, _ = stringLit(kv.Value)
						}
					}
					if !strings.HasPrefix(name, "datastorage_") {
						return true
					}
					var lbls []string
					if strings.HasSuffix(fn, "Vec") && len(call.Args) >= 2 {
						lbls = resolveStrings(call.Args[1], known)
					}
					add(name, kind, lbls, fset.Position(call.Pos()).String())
				case fn == "collectors.NewGoCollector" || fn == "collectors.NewProcessCollector":
					goCollectors = true
				}
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if goCollectors {
		// The standard collectors' names are fixed by client_golang.
		for _, n := range []string{"process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
			"process_start_time_seconds", "go_goroutines", "go_memstats_heap_inuse_bytes", "go_gc_duration_seconds"} {
			out[n] = &metricInfo{labels: map[string]bool{}, source: "client_golang collectors"}
		}
	}
	// Prometheus's own series for every target.
	out["up"] = &metricInfo{labels: map[string]bool{}, source: "Prometheus"}
	return out
}

func selectorName(e ast.Expr) string {
	switch x := e.(type) {
	case *ast.SelectorExpr:
		if id, ok := x.X.(*ast.Ident); ok {
			return id.Name + "." + x.Sel.Name
		}
	case *ast.Ident:
		return x.Name
	}
	return ""
}

func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

// stringSlices maps the identifiers a file assigns a []string literal to
// (x := []string{…}, var x = []string{…}) to their values.
func stringSlices(f *ast.File) map[string][]string {
	out := map[string][]string{}
	ast.Inspect(f, func(n ast.Node) bool {
		switch x := n.(type) {
		case *ast.AssignStmt:
			for i, lhs := range x.Lhs {
				if id, ok := lhs.(*ast.Ident); ok && i < len(x.Rhs) {
					if v, ok := literalStrings(x.Rhs[i]); ok {
						out[id.Name] = v
					}
				}
			}
		case *ast.ValueSpec:
			for i, id := range x.Names {
				if i < len(x.Values) {
					if v, ok := literalStrings(x.Values[i]); ok {
						out[id.Name] = v
					}
				}
			}
		}
		return true
	})
	return out
}

func literalStrings(e ast.Expr) ([]string, bool) {
	lit, ok := e.(*ast.CompositeLit)
	if !ok {
		return nil, false
	}
	arr, ok := lit.Type.(*ast.ArrayType)
	if !ok || selectorName(arr.Elt) != "string" {
		return nil, false
	}
	var out []string
	for _, el := range lit.Elts {
		s, ok := stringLit(el)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

func resolveStrings(e ast.Expr, known map[string][]string) []string {
	if v, ok := literalStrings(e); ok {
		return v
	}
	if id, ok := e.(*ast.Ident); ok {
		return known[id.Name]
	}
	return nil
}

// apiRoutes returns the route patterns the API registers (the values of the
// route label), as far as they are constant expressions.
func apiRoutes(t *testing.T) []string {
	t.Helper()
	dir := repo("internal", "httpapi")
	fset := token.NewFileSet()
	var files []*ast.File
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := goparser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	consts := map[string]string{}
	for _, f := range files {
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, s := range gd.Specs {
				vs := s.(*ast.ValueSpec)
				for i, id := range vs.Names {
					if i < len(vs.Values) {
						if v, ok := stringLit(vs.Values[i]); ok {
							consts[id.Name] = v
						}
					}
				}
			}
		}
	}
	var eval func(e ast.Expr) (string, bool)
	eval = func(e ast.Expr) (string, bool) {
		switch x := e.(type) {
		case *ast.BasicLit:
			return stringLit(x)
		case *ast.Ident:
			v, ok := consts[x.Name]
			return v, ok
		case *ast.BinaryExpr:
			if x.Op != token.ADD {
				return "", false
			}
			a, ok1 := eval(x.X)
			b, ok2 := eval(x.Y)
			return a + b, ok1 && ok2
		}
		return "", false
	}
	var routes []string
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) < 2 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || (sel.Sel.Name != "HandleFunc" && sel.Sel.Name != "Handle") {
				return true
			}
			if r, ok := eval(call.Args[0]); ok {
				routes = append(routes, r)
			}
			return true
		})
	}
	if len(routes) < 4 {
		t.Fatalf("found only %d constant routes in internal/httpapi: %v", len(routes), routes)
	}
	return routes
}

// checker checks PromQL expressions against the exported metrics.
type checker struct {
	metrics map[string]*metricInfo
	routes  []string
	used    map[string]bool
}

func newChecker(t *testing.T) *checker {
	return &checker{metrics: exportedMetrics(t), routes: apiRoutes(t), used: map[string]bool{}}
}

// check parses expr and returns every problem: unknown metrics, labels the
// metric does not have, route matchers that match no route, groupings by
// labels no selector below has.
func (c *checker) check(expr string) []string {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return []string{fmt.Sprintf("does not parse: %v", err)}
	}
	var problems []string
	parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
		switch n := node.(type) {
		case *parser.VectorSelector:
			problems = append(problems, c.checkSelector(n)...)
		case *parser.AggregateExpr:
			have := c.labelsBelow(n.Expr)
			for _, g := range n.Grouping {
				if !have[g] {
					problems = append(problems, fmt.Sprintf("%s by (%s): no series below has label %q", n.Op, strings.Join(n.Grouping, ", "), g))
				}
			}
		}
		return nil
	})
	return problems
}

func (c *checker) checkSelector(vs *parser.VectorSelector) []string {
	name := vs.Name
	for _, m := range vs.LabelMatchers {
		if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
			name = m.Value
		}
	}
	info, ok := c.metrics[name]
	if !ok {
		return []string{fmt.Sprintf("metric %q is not exported by the server", name)}
	}
	c.used[name] = true
	var problems []string
	for _, m := range vs.LabelMatchers {
		if m.Name == model.MetricNameLabel {
			continue
		}
		if !info.labels[m.Name] && !slices.Contains(targetLabels, m.Name) {
			problems = append(problems, fmt.Sprintf("%s has no label %q (it has %v)", name, m.Name, sortedKeys(info.labels)))
		}
		if m.Name == "route" && (m.Type == labels.MatchEqual || m.Type == labels.MatchRegexp) {
			matched := false
			for _, r := range c.routes {
				if m.Matches(r) {
					matched = true
				}
			}
			if !matched {
				problems = append(problems, fmt.Sprintf("%s: route matcher %s matches no route the API registers %v", name, m, c.routes))
			}
		}
	}
	return problems
}

// labelsBelow is the union of the label names the series under e can have.
func (c *checker) labelsBelow(e parser.Expr) map[string]bool {
	out := map[string]bool{}
	for _, l := range targetLabels {
		out[l] = true
	}
	parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
		if vs, ok := node.(*parser.VectorSelector); ok {
			if info, ok := c.metrics[vs.Name]; ok {
				for l := range info.labels {
					out[l] = true
				}
			}
		}
		return nil
	})
	return out
}

func TestExportedMetricsAreFound(t *testing.T) {
	m := exportedMetrics(t)
	// A sample from each package that declares metrics: if the source
	// reading breaks, this says so instead of every rule failing.
	for name, wantLabels := range map[string][]string{
		"datastorage_http_requests_total":                  {"route", "method", "code"},
		"datastorage_http_request_duration_seconds_bucket": {"route", "method", "le"},
		"datastorage_ingest_events_total":                  {"result"},
		"datastorage_ingest_batch_size_sum":                nil,
		"datastorage_db_pool_connections":                  {"pool", "state"},
		"datastorage_spool_depth":                          {"stream"},
		"datastorage_replay_events_total":                  {"stream", "result"},
		"datastorage_partitions_ahead_months":              nil,
	} {
		info, ok := m[name]
		if !ok {
			t.Errorf("%s not found in the sources", name)
			continue
		}
		if got := sortedKeys(info.labels); !reflect.DeepEqual(got, sortedCopy(wantLabels)) {
			t.Errorf("%s: labels %v, want %v (%s)", name, got, sortedCopy(wantLabels), info.source)
		}
	}
	routes := apiRoutes(t)
	if !slices.Contains(routes, "POST /api/v1/audit/events/batch") {
		t.Errorf("the batch route is not among %v", routes)
	}
}

func sortedCopy(s []string) []string {
	out := append([]string{}, s...)
	slices.Sort(out)
	if out == nil {
		return []string{}
	}
	return out
}

// runbookAnchor matches runbook_url values and captures the anchor.
var runbookAnchor = regexp.MustCompile(`^https://github\.com/kubernaut-ai/datastorage/blob/main/docs/operations\.md#([a-z0-9-]+)$`)

func TestAlertRules(t *testing.T) {
	raw, err := os.ReadFile("prometheus/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	if err := decodeYAMLStrict(raw, &rf); err != nil {
		t.Fatalf("prometheus/rules.yaml: %v", err)
	}
	anchors := markdownAnchors(t, repo("docs", "operations.md"))
	c := newChecker(t)
	alerts := map[string]bool{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			where := fmt.Sprintf("group %s, alert %s", g.Name, r.Alert)
			if r.Alert == "" {
				t.Errorf("%s: only alerting rules are expected here", where)
				continue
			}
			if alerts[r.Alert] {
				t.Errorf("%s: alert defined twice", where)
			}
			alerts[r.Alert] = true
			for _, p := range c.check(r.Expr) {
				t.Errorf("%s: %s\n%s", where, p, r.Expr)
			}
			if sev := r.Labels["severity"]; sev != "critical" && sev != "warning" {
				t.Errorf("%s: severity %q, want critical or warning", where, sev)
			}
			for _, k := range []string{"summary", "description", "runbook_url"} {
				if r.Annotations[k] == "" {
					t.Errorf("%s: annotation %s missing", where, k)
				}
			}
			m := runbookAnchor.FindStringSubmatch(r.Annotations["runbook_url"])
			switch {
			case m == nil:
				t.Errorf("%s: runbook_url %q is not a link to an anchor of docs/operations.md", where, r.Annotations["runbook_url"])
			case !anchors[m[1]]:
				t.Errorf("%s: docs/operations.md has no section #%s", where, m[1])
			case m[1] != strings.ToLower(r.Alert):
				t.Errorf("%s: the runbook section should be named after the alert (#%s)", where, strings.ToLower(r.Alert))
			}
			if _, err := model.ParseDuration(r.For); err != nil {
				t.Errorf("%s: for %q: %v", where, r.For, err)
			}
		}
	}
	// The alerts the issue asks for (#7), by what they watch.
	for _, want := range []string{"DataStorageHigh5xxRatio", "DataStorageWriteLatencyHigh", "DataStorageSpoolGrowing",
		"DataStorageSpoolOldestEntryStale", "DataStorageDeadLetters", "DataStorageReplayStalled",
		"DataStoragePartitionsNotCreatedAhead", "DataStoragePoolSaturated"} {
		if !alerts[want] {
			t.Errorf("alert %s is missing", want)
		}
	}
}

var updateRules = os.Getenv("DEPLOY_UPDATE_RULES") == "1"

// TestPrometheusRuleMatchesRulesFile keeps the PrometheusRule of the base
// identical to prometheus/rules.yaml, its source. DEPLOY_UPDATE_RULES=1
// rewrites the PrometheusRule from the rules file.
func TestPrometheusRuleMatchesRulesFile(t *testing.T) {
	raw, err := os.ReadFile("prometheus/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	if err := decodeYAMLStrict(raw, &rf); err != nil {
		t.Fatal(err)
	}
	const path = "base/prometheusrule.yaml"
	if updateRules {
		writePrometheusRule(t, path, raw)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var pr prometheusRule
	if err := decodeYAMLStrict(data, &pr); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if !reflect.DeepEqual(pr.Spec, rf) {
		t.Errorf("%s differs from prometheus/rules.yaml; run DEPLOY_UPDATE_RULES=1 go test ./... in deploy/", path)
	}
}

// writePrometheusRule wraps the rule file's groups in a PrometheusRule,
// keeping the expressions' text as written.
func writePrometheusRule(t *testing.T, path string, rules []byte) {
	t.Helper()
	var b strings.Builder
	b.WriteString("# Generated from ../prometheus/rules.yaml by deploy_test (DEPLOY_UPDATE_RULES=1);\n")
	b.WriteString("# edit the rules there, not here.\n")
	b.WriteString("apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata:\n  name: datastorage\n  labels:\n    app.kubernetes.io/name: datastorage\nspec:\n")
	inBody := false
	for _, line := range strings.Split(strings.TrimRight(string(rules), "\n"), "\n") {
		if strings.HasPrefix(line, "groups:") {
			inBody = true
		}
		if !inBody {
			continue
		}
		if line == "" {
			b.WriteString("\n")
			continue
		}
		b.WriteString("  " + line + "\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// markdownAnchors returns the GitHub anchors of a Markdown file's headings.
func markdownAnchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	inCode := false
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
		}
		if inCode || !strings.HasPrefix(line, "#") {
			continue
		}
		title := strings.TrimSpace(strings.TrimLeft(line, "#"))
		out[githubAnchor(title)] = true
	}
	return out
}

// githubAnchor is GitHub's heading slug: lower case, punctuation dropped,
// spaces to hyphens.
func githubAnchor(title string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(title) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteRune('-')
		}
	}
	return b.String()
}

// grafanaVariables are replaced by sample values before parsing.
var grafanaVariables = strings.NewReplacer(
	"$__rate_interval", "5m",
	"$__interval", "1m",
	"$__range", "1h",
	"${namespace}", "kubernaut-system",
	"$namespace", "kubernaut-system",
)

type dashboardPanel struct {
	ID         int              `json:"id"`
	Type       string           `json:"type"`
	Title      string           `json:"title"`
	Datasource map[string]any   `json:"datasource"`
	Targets    []map[string]any `json:"targets"`
	Panels     []dashboardPanel `json:"panels"`
}

func TestGrafanaDashboard(t *testing.T) {
	raw, err := os.ReadFile("grafana/datastorage.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title      string           `json:"title"`
		UID        string           `json:"uid"`
		Panels     []dashboardPanel `json:"panels"`
		Templating struct {
			List []map[string]any `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("grafana/datastorage.json: %v", err)
	}
	if dash.Title == "" || dash.UID == "" {
		t.Error("the dashboard needs a title and a stable uid")
	}
	vars := map[string]bool{}
	for _, v := range dash.Templating.List {
		vars[fmt.Sprint(v["name"])] = true
	}
	for _, v := range []string{"datasource", "namespace"} {
		if !vars[v] {
			t.Errorf("template variable %s missing", v)
		}
	}
	c := newChecker(t)
	ids := map[int]string{}
	var rows []string
	var walk func(ps []dashboardPanel)
	walk = func(ps []dashboardPanel) {
		for _, p := range ps {
			if prev, dup := ids[p.ID]; dup {
				t.Errorf("panels %q and %q share id %d", prev, p.Title, p.ID)
			}
			ids[p.ID] = p.Title
			if p.Type == "row" {
				rows = append(rows, p.Title)
				walk(p.Panels)
				continue
			}
			if p.Datasource["uid"] != "${datasource}" {
				t.Errorf("panel %q: datasource should be ${datasource}, got %v", p.Title, p.Datasource)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				expr, _ := tg["expr"].(string)
				for _, prob := range c.check(grafanaVariables.Replace(expr)) {
					t.Errorf("panel %q: %s\n%s", p.Title, prob, expr)
				}
				if !strings.Contains(expr, "$namespace") && !strings.Contains(expr, "${namespace}") {
					t.Errorf("panel %q: the query does not filter on $namespace: %s", p.Title, expr)
				}
			}
		}
	}
	walk(dash.Panels)
	for _, want := range []string{"Ingest", "Spool and replay", "Queries", "Workflow catalog", "Database pool", "Partitions and process",
		"Read replicas", "Archive"} {
		if !slices.Contains(rows, want) {
			t.Errorf("row %q missing (have %v)", want, rows)
		}
	}
	// The list: ingest rate and latency, batch sizes, spool and
	// replay, query latency by route, pool, partitions.
	for _, m := range []string{"datastorage_ingest_events_total", "datastorage_http_request_duration_seconds_bucket",
		"datastorage_ingest_batch_size_bucket", "datastorage_spool_depth", "datastorage_replay_events_total",
		"datastorage_db_pool_connections", "datastorage_partitions_ahead_months",
		// The workflow catalog (issue 11): registrations by outcome, status
		// changes, search duration, candidates per search.
		"datastorage_catalog_registrations_total", "datastorage_catalog_status_changes_total",
		"datastorage_catalog_search_duration_seconds_bucket", "datastorage_catalog_search_candidates_bucket",
		// Beyond one node (issue 13): reads by target, each standby's lag
		// and state, refused standby connections, the spool's WAIT and its
		// shortfalls, both pools' saturation; and the archive tier.
		"datastorage_db_reads_total", "datastorage_db_replica_lag_seconds", "datastorage_db_replica_up",
		"datastorage_db_replica_refused_total", "datastorage_spool_wait_seconds_bucket", "datastorage_spool_wait_shortfalls_total",
		"datastorage_db_pool_empty_acquires_total", "datastorage_archive_runs_total", "datastorage_archive_events_archived_total",
		"datastorage_archive_bytes_written_total", "datastorage_archive_months_archived_total", "datastorage_archive_months_pending",
		"datastorage_archive_last_success_timestamp_seconds"} {
		if !c.used[m] {
			t.Errorf("the dashboard shows nothing of %s", m)
		}
	}
}
