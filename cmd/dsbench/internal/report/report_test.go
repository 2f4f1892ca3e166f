package report

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDurShowsThreeSignificantDigitsAtMost(t *testing.T) {
	assert.Equal(t, "0.42 ms", Dur(420*time.Microsecond))
	assert.Equal(t, "9.99 ms", Dur(9990*time.Microsecond))
	assert.Equal(t, "12.3 ms", Dur(12340*time.Microsecond))
	assert.Equal(t, "154 ms", Dur(154*time.Millisecond))
	assert.Equal(t, "2000 ms", Dur(2*time.Second))
	assert.Equal(t, "0.00 ms", Dur(0))
}

func TestMBIsWholeMebibytes(t *testing.T) {
	assert.Equal(t, "0 MB", MB(0))
	assert.Equal(t, "3 MB", MB(3<<20))
	assert.Equal(t, "2 MB", MB(3<<19), "1.5 MiB rounds to even")
}

func TestYesMakesAMissBold(t *testing.T) {
	assert.Equal(t, "yes", Yes(true))
	assert.Equal(t, "**no**", Yes(false))
}

func TestMedianTakesTheMiddleWithoutReorderingItsInput(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3}
	assert.Equal(t, 3.0, Median(xs))
	assert.Equal(t, []float64{5, 1, 4, 2, 3}, xs)
	assert.Equal(t, 3.0, Median([]float64{4, 1, 3, 2}), "the upper middle of an even count")
	assert.Equal(t, 0.0, Median(nil))
}

func TestQuantileIsNearestRank(t *testing.T) {
	var lat []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	assert.Equal(t, 50*time.Millisecond, Quantile(lat, .5))
	assert.Equal(t, 99*time.Millisecond, Quantile(lat, .99))
	assert.Equal(t, 100*time.Millisecond, Quantile(lat, 1))
	assert.Equal(t, 1*time.Millisecond, Quantile(lat, 0), "p=0 is the minimum, not an index out of range")
	assert.Equal(t, 100*time.Millisecond, lat[0], "the input is not sorted in place")
	assert.Equal(t, 7*time.Millisecond, Quantile([]time.Duration{7 * time.Millisecond}, .99))
	assert.Zero(t, Quantile(nil, .99))
}

func TestCommandLineQuotesWhatAShellWouldSplit(t *testing.T) {
	assert.Equal(t, "go run ./cmd/dsbench", CommandLine(nil))
	assert.Equal(t, "go run ./cmd/dsbench -read -read-events 20000", CommandLine([]string{"-read", "-read-events", "20000"}))
	assert.Equal(t, `go run ./cmd/dsbench -only 'single c=1' -out 'it'\''s.md' ''`,
		CommandLine([]string{"-only", "single c=1", "-out", "it's.md", ""}))
}

const marker = "<!-- analysis -->"

func TestWithAnalysisKeepsWhatFollowsTheMarker(t *testing.T) {
	old := []byte("# old figures\n\n" + marker + "\nThe p99 is the GC.\n")
	assert.Equal(t, "# new figures\n"+marker+"\nThe p99 is the GC.\n", withAnalysis("# new figures\n", old, marker))
	assert.Equal(t, "# new\n\n"+marker+"\n", withAnalysis("# new\n", []byte("# no marker here\n"), marker))
	assert.Equal(t, "# new\n\n"+marker+"\n", withAnalysis("# new\n", nil, marker))
}

func TestWriteCreatesTheDirectoryAndKeepsTheAnalysisAcrossRuns(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results", "read.md")
	require.NoError(t, Write(path, "# run 1\n", marker))
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, "# run 1\n\n"+marker+"\n", string(b))

	require.NoError(t, os.WriteFile(path, append(b, "Written by hand.\n"...), 0o644))
	require.NoError(t, Write(path, "# run 2\n", marker))
	b, err = os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, "# run 2\n"+marker+"\nWritten by hand.\n", string(b))

	require.NoError(t, Write(path, "# plain\n", ""))
	b, err = os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, "# plain\n", string(b), "no marker: the file is replaced whole")
}

func TestWriteFailsWhenThePreviousReportCannotBeRead(t *testing.T) {
	dir := t.TempDir() // a directory where the report should be: reading it fails
	err := Write(dir, "# x\n", marker)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "previous report")
}
