// Package report holds what every dsbench report shares: how durations,
// sizes and verdicts read in its markdown tables, medians, the command line
// a committed report names, and the hand-written analysis that a report
// keeps below a marker across runs.
package report

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Dur is a latency in milliseconds with three significant digits at most
// (0.42 ms, 12.3 ms, 154 ms): the precision the tables can honestly show.
func Dur(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case ms >= 100:
		return fmt.Sprintf("%.0f ms", ms)
	case ms >= 10:
		return fmt.Sprintf("%.1f ms", ms)
	default:
		return fmt.Sprintf("%.2f ms", ms)
	}
}

// MB is a size in whole mebibytes.
func MB(b int64) string { return fmt.Sprintf("%.0f MB", float64(b)/(1<<20)) }

// Yes is a target's verdict; a miss is bold so it cannot be overlooked.
func Yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

// Median is the middle value of xs (the upper one of an even count), 0 for
// none; xs is left unchanged.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// Quantile is the nearest-rank quantile p (0..1] of lat: the smallest
// latency at or below which the fraction p of them fall. 0 for none; lat is
// left unchanged.
func Quantile(lat []time.Duration, p float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	return s[max(int(math.Ceil(p*float64(len(s))))-1, 0)]
}

// CommandLine is how a run was started (args without the program name), for
// a report's first line: a committed report in bench/results/ says what
// wrote it. Arguments a shell would split or expand are single-quoted.
func CommandLine(args []string) string {
	out := []string{"go run ./cmd/dsbench"}
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t'\"$") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		out = append(out, a)
	}
	return strings.Join(out, " ")
}

// withAnalysis appends to md the marker and whatever followed it in old,
// the previous report: the hand-written analysis survives a new run. When
// old has no marker (or there is no old report), md gets the marker alone,
// for the analysis to be written under.
func withAnalysis(md string, old []byte, marker string) string {
	if i := strings.Index(string(old), marker); i >= 0 {
		return md + string(old[i:])
	}
	return md + "\n" + marker + "\n"
}

// Write writes md to path, creating its directory. With a marker, the
// analysis below the marker in the file it replaces is kept (withAnalysis).
func Write(path, md, marker string) error {
	if marker != "" {
		old, err := os.ReadFile(path)
		if err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("read the previous report: %w", err)
		}
		md = withAnalysis(md, old, marker)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(md), 0o644)
}
