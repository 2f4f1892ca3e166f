package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"kubernaut.ai/datastorage/client"
)

// cmdHistory prints a target's remediation history context (CONTRACT §16.1).
func cmdHistory(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("history", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server, tokenFile, output := addClientFlags(fs, environ)
	target := fs.String("target", "", "NAMESPACE/KIND/NAME (/KIND/NAME for a cluster-scoped target)")
	specHash := fs.String("spec-hash", "", "the target's current spec hash")
	tier1 := fs.String("tier1-window", "", "tier 1 window, a Go duration (server default 24h)")
	tier2 := fs.String("tier2-window", "", "tier 2 window, a Go duration (server default 2160h)")
	cluster := fs.String("cluster-id", "", "only remediations of this cluster")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: datastorage history --target NS/KIND/NAME --spec-hash H [flags]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	parts := strings.SplitN(*target, "/", 3)
	if len(parts) != 3 || parts[1] == "" || parts[2] == "" || *specHash == "" {
		fs.Usage()
		return errUsage
	}
	if *output != "table" && *output != "json" {
		return fmt.Errorf("--output: must be table or json")
	}
	q := client.HistoryQuery{TargetNamespace: parts[0], TargetKind: parts[1], TargetName: parts[2],
		CurrentSpecHash: *specHash, ClusterID: *cluster}
	for _, w := range []struct {
		flag, value string
		dst         *time.Duration
	}{{"--tier1-window", *tier1, &q.Tier1Window}, {"--tier2-window", *tier2, &q.Tier2Window}} {
		if w.value == "" {
			continue
		}
		d, err := time.ParseDuration(w.value)
		if err != nil {
			return fmt.Errorf("%s: must be a Go duration such as 24h or 90m", w.flag)
		}
		*w.dst = d
	}
	c, err := newAPIClient(*server, *tokenFile)
	if err != nil {
		return err
	}
	h, err := c.RemediationHistory(ctx, q)
	if err != nil {
		return readError(err)
	}
	if *output == "json" {
		return json.NewEncoder(stdout).Encode(h)
	}
	col := newColorizer(stdout)
	regression := "no"
	if h.RegressionDetected {
		regression = col.red("yes")
	}
	fmt.Fprintf(stdout, "%s  spec %s  regression detected: %s\n", col.bold(h.TargetResource), h.CurrentSpecHash, regression)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "\nTier 1, last %s (%d, oldest first)\n", h.Tier1.Window, len(h.Tier1.Chain))
	fmt.Fprintln(tw, "COMPLETED\tREMEDIATION\tSIGNAL\tACTION\tOUTCOME\tSCORE\tREASON\tRESOLVED\tMATCH")
	for _, e := range h.Tier1.Chain {
		historyRow(tw, e.CompletedAt.UTC().Format("2006-01-02 15:04:05"), e.RemediationUID, e.SignalType, e.ActionType,
			e.Outcome, e.EffectivenessScore, e.AssessmentReason, e.SignalResolved, e.HashMatch)
	}
	fmt.Fprintf(tw, "\nTier 2, last %s before tier 1 (%d, oldest first)\n", h.Tier2.Window, len(h.Tier2.Chain))
	fmt.Fprintln(tw, "COMPLETED\tREMEDIATION\tSIGNAL\tACTION\tOUTCOME\tSCORE\tREASON\tRESOLVED\tMATCH")
	for _, e := range h.Tier2.Chain {
		historyRow(tw, e.CompletedAt.UTC().Format("2006-01-02 15:04:05"), e.RemediationUID, e.SignalType, e.ActionType,
			e.Outcome, e.EffectivenessScore, e.AssessmentReason, e.SignalResolved, e.HashMatch)
	}
	return tw.Flush()
}

func historyRow(w io.Writer, completed, uid, signal, action, outcome string, score *float64, reason string, resolved *bool, match string) {
	fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", completed, uid, dash(signal), dash(action), dash(outcome),
		optScore(score), dash(reason), optBool(resolved), match)
}

// cmdEffectiveness prints a remediation's effectiveness score (CONTRACT §16.2).
func cmdEffectiveness(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("effectiveness", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server, tokenFile, output := addClientFlags(fs, environ)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: datastorage effectiveness CORRELATION_ID [flags]")
		fs.PrintDefaults()
	}
	id, err := parseOneArg(fs, args)
	if err != nil {
		return err
	}
	if *output != "table" && *output != "json" {
		return fmt.Errorf("--output: must be table or json")
	}
	c, err := newAPIClient(*server, *tokenFile)
	if err != nil {
		return err
	}
	e, err := c.Effectiveness(ctx, id)
	if err != nil {
		return readError(err)
	}
	if *output == "json" {
		return json.NewEncoder(stdout).Encode(e)
	}
	fmt.Fprintf(stdout, "%s  score %s  status %s\n", newColorizer(stdout).bold(e.CorrelationID), optScore(e.Score), e.AssessmentStatus)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "COMPONENT\tASSESSED\tSCORE\tDETAILS")
	cs := e.Components
	fmt.Fprintf(tw, "health\t%t\t%s\t%s\n", cs.HealthAssessed, optScore(cs.HealthScore), dash(cs.HealthDetails))
	fmt.Fprintf(tw, "alert\t%t\t%s\t%s\n", cs.AlertAssessed, optScore(cs.AlertScore), dash(cs.AlertDetails))
	fmt.Fprintf(tw, "metrics\t%t\t%s\t%s\n", cs.MetricsAssessed, optScore(cs.MetricsScore), dash(cs.MetricsDetails))
	if err := tw.Flush(); err != nil {
		return err
	}
	if hc := e.HashComparison; hc.PreRemediationSpecHash != "" || hc.PostRemediationSpecHash != "" {
		fmt.Fprintf(stdout, "spec hash: before %s, after %s, match %s\n", dash(hc.PreRemediationSpecHash),
			dash(hc.PostRemediationSpecHash), optBool(hc.HashMatch))
	}
	fmt.Fprintf(stdout, "computed at %s\n", e.ComputedAt.UTC().Format(time.RFC3339))
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func optScore(f *float64) string {
	if f == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f", *f)
}

func optBool(b *bool) string {
	if b == nil {
		return "-"
	}
	return fmt.Sprint(*b)
}
