package query

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"kubernaut.ai/datastorage/internal/audit"
)

// Aggregation names (CONTRACT §7).
const (
	AggSuccessRate = "success-rate"
	AggByNamespace = "by-namespace"
	AggBySeverity  = "by-severity"
	AggTrend       = "trend"
	AggCounts      = "counts"
)

// Aggregations lists the aggregation names in the order of the contract.
var Aggregations = []string{AggSuccessRate, AggByNamespace, AggBySeverity, AggTrend, AggCounts}

const (
	// defaultWindow is the aggregation window when since is absent.
	defaultWindow = 7 * 24 * time.Hour
	// maxWindow bounds every aggregation: an unbounded scan of the whole
	// store would be a denial of service by query.
	maxWindow = 366 * 24 * time.Hour
	// defaultMinSamples is min_samples when absent.
	defaultMinSamples = 5
)

// severityOrder is the order of the by-severity answer; others follow by name.
var severityOrder = []string{"critical", "high", "warning", "medium", "low", "info"}

// periods are the trend periods.
var periods = map[string]time.Duration{"7d": 7 * 24 * time.Hour, "30d": 30 * 24 * time.Hour, "90d": 90 * 24 * time.Hour}

// AggregateStore is the part of the store aggregations read.
type AggregateStore interface {
	CountOutcomes(ctx context.Context, w Window, f SuccessFilter) (OutcomeCounts, error)
	CountByNamespace(ctx context.Context, w Window) ([]NamespaceCount, error)
	Trend(ctx context.Context, w Window, interval string) ([]TrendBucket, error)
	CountGroups(ctx context.Context, w Window, columns []string) ([]Group, error)
}

// AggregateParams is a parsed aggregation request.
type AggregateParams struct {
	Name       string
	Window     Window
	Success    SuccessFilter
	MinSamples int
	Period     string
	Interval   string
	GroupBy    []string
}

// ErrUnknownAggregation is returned by ParseAggregate for a name that is not
// one of Aggregations.
var ErrUnknownAggregation = fmt.Errorf("query: unknown aggregation")

// ParseAggregate reads an aggregation request, naming every bad parameter.
func ParseAggregate(name string, v url.Values, now time.Time) (AggregateParams, audit.FieldErrors, error) {
	if !slices.Contains(Aggregations, name) {
		return AggregateParams{}, nil, fmt.Errorf("%w %q; one of %s", ErrUnknownAggregation, name, strings.Join(Aggregations, ", "))
	}
	fe := audit.FieldErrors{}
	p := AggregateParams{Name: name, MinSamples: defaultMinSamples, Period: "7d", Interval: "day"}
	until := now
	if s := v.Get("until"); s != "" {
		t, err := ParseTime(s, now)
		if err != nil {
			fe["until"] = err.Error()
		}
		until = t
	}
	since := until.Add(-defaultWindow)
	explicitSince := v.Get("since") != ""
	if s := v.Get("since"); explicitSince {
		t, err := ParseTime(s, now)
		if err != nil {
			fe["since"] = err.Error()
		}
		since = t
	}
	switch name {
	case AggSuccessRate:
		p.Success = SuccessFilter{EventType: v.Get("event_type"), EventCategory: v.Get("event_category"), WorkflowID: v.Get("workflow_id")}
		set := 0
		for _, x := range []string{p.Success.EventType, p.Success.EventCategory, p.Success.WorkflowID} {
			if x != "" {
				set++
			}
		}
		if set != 1 {
			fe["event_type"] = "give exactly one of event_type, event_category, workflow_id"
		}
		if s := v.Get("min_samples"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > 1_000_000 {
				fe["min_samples"] = "must be an integer between 1 and 1000000"
			}
			p.MinSamples = n
		}
	case AggTrend:
		if s := v.Get("period"); s != "" {
			if _, ok := periods[s]; !ok {
				fe["period"] = "must be 7d, 30d or 90d"
			}
			p.Period = s
		}
		if s := v.Get("interval"); s != "" {
			if s != "hour" && s != "day" {
				fe["interval"] = "must be hour or day"
			}
			p.Interval = s
		}
		// An explicit since wins; period only sets the window's default
		// length, so a dashboard can ask for "the 7-day view" while a tool
		// that knows its exact window is never silently overridden.
		if !explicitSince {
			since = until.Add(-periods[p.Period])
		}
	case AggCounts:
		raw := v.Get("group_by")
		if raw == "" {
			fe["group_by"] = "is required: a comma list of " + strings.Join(GroupColumns, ", ")
		}
		for _, c := range strings.Split(raw, ",") {
			c = strings.TrimSpace(c)
			switch {
			case c == "" && raw == "":
			case !slices.Contains(GroupColumns, c):
				fe["group_by"] = fmt.Sprintf("%q is not one of %s", c, strings.Join(GroupColumns, ", "))
			case slices.Contains(p.GroupBy, c):
				fe["group_by"] = fmt.Sprintf("%q is listed twice", c)
			default:
				p.GroupBy = append(p.GroupBy, c)
			}
		}
	}
	if _, bad := fe["since"]; !bad {
		if _, bad := fe["until"]; !bad {
			switch {
			case since.After(until):
				fe["since"] = "must not be later than until"
			case until.Sub(since) > maxWindow:
				fe["since"] = "the window may span at most 366 days"
			}
		}
	}
	if len(fe) > 0 {
		return AggregateParams{}, fe, nil
	}
	p.Window = Window{From: since, To: until}
	return p, nil, nil
}

// SuccessRate is the success-rate aggregation. Total counts the events with a
// final outcome (success or failure); pending ones have not finished yet and
// would only dilute the rate.
type SuccessRate struct {
	Total         int64   `json:"total"`
	Successes     int64   `json:"successes"`
	Failures      int64   `json:"failures"`
	SuccessRate   float64 `json:"success_rate"`
	Confidence    string  `json:"confidence"`
	MinSamplesMet bool    `json:"min_samples_met"`
}

// Confidence is the tier of a success rate over n finished events
// (CONTRACT §7): insufficient_data, low, medium or high.
func Confidence(n int64) string {
	switch {
	case n >= 100:
		return "high"
	case n >= 20:
		return "medium"
	case n >= 5:
		return "low"
	default:
		return "insufficient_data"
	}
}

// NamespaceAggregation is the by-namespace answer.
type NamespaceAggregation struct {
	Aggregations []NamespaceCount `json:"aggregations"`
}

// SeverityCount is one row of by-severity.
type SeverityCount struct {
	Severity string `json:"severity"`
	Count    int64  `json:"count"`
}

// SeverityAggregation is the by-severity answer.
type SeverityAggregation struct {
	Aggregations []SeverityCount `json:"aggregations"`
}

// TrendPoint is one bucket of the trend answer.
type TrendPoint struct {
	Bucket   audit.Time `json:"bucket"`
	Count    int64      `json:"count"`
	Failures int64      `json:"failures"`
}

// TrendAggregation is the trend answer.
type TrendAggregation struct {
	Period     string       `json:"period"`
	Interval   string       `json:"interval"`
	DataPoints []TrendPoint `json:"data_points"`
}

// CountsAggregation is the counts answer: each group an object of the
// requested keys and "count".
type CountsAggregation struct {
	Groups []map[string]any `json:"groups"`
}

// Aggregator answers aggregations.
type Aggregator struct {
	store AggregateStore
}

// NewAggregator returns an Aggregator reading from st.
func NewAggregator(st AggregateStore) *Aggregator { return &Aggregator{store: st} }

// Aggregate runs the aggregation p names and returns its answer, ready to
// encode as JSON.
func (a *Aggregator) Aggregate(ctx context.Context, p AggregateParams) (any, error) {
	switch p.Name {
	case AggSuccessRate:
		c, err := a.store.CountOutcomes(ctx, p.Window, p.Success)
		if err != nil {
			return nil, fmt.Errorf("query: success rate: %w", err)
		}
		r := SuccessRate{Successes: c.Successes, Failures: c.Failures, Total: c.Successes + c.Failures}
		if r.Total > 0 {
			r.SuccessRate = float64(r.Successes) / float64(r.Total)
		}
		r.Confidence = Confidence(r.Total)
		r.MinSamplesMet = r.Total >= int64(p.MinSamples)
		return r, nil
	case AggByNamespace:
		rows, err := a.store.CountByNamespace(ctx, p.Window)
		if err != nil {
			return nil, fmt.Errorf("query: by namespace: %w", err)
		}
		return NamespaceAggregation{Aggregations: nonNil(rows)}, nil
	case AggBySeverity:
		groups, err := a.store.CountGroups(ctx, p.Window, []string{"severity"})
		if err != nil {
			return nil, fmt.Errorf("query: by severity: %w", err)
		}
		out := make([]SeverityCount, 0, len(groups))
		for _, g := range groups {
			if g.Keys[0] != nil {
				out = append(out, SeverityCount{Severity: *g.Keys[0], Count: g.Count})
			}
		}
		slices.SortFunc(out, func(x, y SeverityCount) int {
			if c := severityRank(x.Severity) - severityRank(y.Severity); c != 0 {
				return c
			}
			return strings.Compare(x.Severity, y.Severity)
		})
		return SeverityAggregation{Aggregations: out}, nil
	case AggTrend:
		points, err := a.store.Trend(ctx, p.Window, p.Interval)
		if err != nil {
			return nil, fmt.Errorf("query: trend: %w", err)
		}
		out := TrendAggregation{Period: p.Period, Interval: p.Interval, DataPoints: make([]TrendPoint, 0, len(points))}
		for _, pt := range points {
			out.DataPoints = append(out.DataPoints, TrendPoint{Bucket: audit.NewTime(pt.Bucket), Count: pt.Count, Failures: pt.Failures})
		}
		return out, nil
	case AggCounts:
		groups, err := a.store.CountGroups(ctx, p.Window, p.GroupBy)
		if err != nil {
			return nil, fmt.Errorf("query: counts: %w", err)
		}
		out := CountsAggregation{Groups: make([]map[string]any, 0, len(groups))}
		for _, g := range groups {
			m := make(map[string]any, len(p.GroupBy)+1)
			for i, col := range p.GroupBy {
				if g.Keys[i] != nil {
					m[col] = *g.Keys[i]
				} else {
					m[col] = nil
				}
			}
			m["count"] = g.Count
			out.Groups = append(out.Groups, m)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w %q", ErrUnknownAggregation, p.Name)
}

func severityRank(s string) int {
	if i := slices.Index(severityOrder, s); i >= 0 {
		return i
	}
	return len(severityOrder)
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
