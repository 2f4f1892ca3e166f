package main

import (
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func parse(args ...string) (config, error) { return parseArgs(args, io.Discard) }

func TestParseArgsDefaultsAreMakeBenchs(t *testing.T) {
	c, err := parse()
	require.NoError(t, err)
	assert.Equal(t, modeWrite, c.mode)
	assert.Equal(t, 10*time.Second, c.opts.Duration)
	assert.Equal(t, 3*time.Second, c.opts.Warmup)
	assert.Equal(t, "bench/results/latest.md", c.opts.Out)
	assert.Equal(t, "bench/results/profiles", c.opts.ProfileDir)
	assert.Equal(t, int64(10_000_000), c.opts.ReadEvents)
	assert.Equal(t, 3000, c.opts.CatalogRequests)
	assert.Equal(t, 20*time.Minute, c.runLimit())
}

func TestParseArgsPicksTheBenchmarkAndItsReport(t *testing.T) {
	c, err := parse("-read", "-read-events", "20000")
	require.NoError(t, err)
	assert.Equal(t, modeRead, c.mode)
	assert.Equal(t, "bench/results/read.md", c.opts.Out)
	assert.Equal(t, int64(20_000), c.opts.ReadEvents)
	assert.Equal(t, 2*time.Hour, c.runLimit(), "loading 10M events needs longer")

	c, err = parse("-archive", "-archive-events", "1000000")
	require.NoError(t, err)
	assert.Equal(t, modeArchive, c.mode)
	assert.Equal(t, "bench/results/archive.md", c.opts.Out)
	assert.Equal(t, int64(1_000_000), c.opts.ArchiveEvents)
	assert.Equal(t, 2*time.Hour, c.runLimit(), "loading 10M events needs longer")

	c, err = parse("-catalog", "-server", "bin/datastorage")
	require.NoError(t, err)
	assert.Equal(t, modeCatalog, c.mode)
	assert.Equal(t, "bench/results/catalog.md", c.opts.Out)
	assert.Equal(t, "bin/datastorage", c.opts.ServerBin)

	// The Makefile's line: -out and -profiles as given, the args kept for the report.
	args := []string{"-server", "bin/datastorage", "-out", "bin/bench/latest.md", "-profiles", "bin/bench/profiles", "-only", "c=64", "-skip-raw"}
	c, err = parse(args...)
	require.NoError(t, err)
	assert.Equal(t, "bin/bench/latest.md", c.opts.Out)
	assert.Equal(t, "bin/bench/profiles", c.opts.ProfileDir)
	assert.Equal(t, "c=64", c.opts.Only)
	assert.True(t, c.opts.SkipRaw)
	assert.Equal(t, args, c.opts.Args)
}

func TestParseArgsServerEnvIsRepeatableAndChecked(t *testing.T) {
	c, err := parse("-server-env", "DATASTORAGE_INGEST_WRITERS=1", "-server-env", "DATASTORAGE_INGEST_MAXBATCH=500")
	require.NoError(t, err)
	assert.Equal(t, []string{"DATASTORAGE_INGEST_WRITERS=1", "DATASTORAGE_INGEST_MAXBATCH=500"}, c.opts.ServerEnv)

	for _, bad := range []string{"INGEST_WRITERS=1", "DATASTORAGE_INGEST_WRITERS"} {
		_, err := parse("-server-env", bad)
		require.Error(t, err, bad)
		assert.Contains(t, err.Error(), "DATASTORAGE_KEY=value")
	}
}

func TestParseArgsRefusesOutOfRangeValuesNamingTheFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		flag string
	}{
		{[]string{"-duration", "0s"}, "-duration"},
		{[]string{"-duration", "3m"}, "-duration"},
		{[]string{"-warmup", "-1s"}, "-warmup"},
		{[]string{"-read-events", "9999"}, "-read-events"},
		{[]string{"-read-requests", "0"}, "-read-requests"},
		{[]string{"-read-budget", "11m"}, "-read-budget"},
		{[]string{"-read-cursor-pages", "0"}, "-read-cursor-pages"},
		{[]string{"-catalog-requests", "99"}, "-catalog-requests"},
		{[]string{"-archive-events", "9999"}, "-archive-events"},
		{[]string{"-duration", "soon"}, "-duration"},
	} {
		_, err := parse(tc.args...)
		require.Error(t, err, tc.args)
		assert.Contains(t, err.Error(), tc.flag, tc.args)
	}
}

func TestParseArgsRefusesWhatItCannotDo(t *testing.T) {
	for _, pair := range [][]string{{"-read", "-catalog"}, {"-read", "-archive"}, {"-archive", "-catalog"}} {
		_, err := parse(pair...)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "pick one")
	}

	_, err := parse("latest.md")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `unexpected argument "latest.md"`)

	_, err = parse("-no-such-flag")
	require.Error(t, err)
}

func TestParseArgsPointsTheMovedExperimentsToTheStoreBenchmarks(t *testing.T) {
	for _, f := range []string{"-experiments", "-history-index-cost"} {
		_, err := parse(f)
		require.ErrorIs(t, err, errMoved, f)
		assert.Contains(t, err.Error(), "make bench-store")
	}
}

func TestParseArgsHelpListsEveryFlag(t *testing.T) {
	var out strings.Builder
	_, err := parseArgs([]string{"-help"}, &out)
	require.True(t, errors.Is(err, flag.ErrHelp))
	for _, f := range []string{"-duration", "-warmup", "-out", "-server", "-experiments", "-profiles", "-keep", "-server-env",
		"-only", "-skip-raw", "-history-index-cost", "-read", "-read-events", "-read-requests", "-read-budget",
		"-read-cursor-pages", "-catalog", "-catalog-requests", "-archive", "-archive-events"} {
		assert.Regexp(t, `(?m)^  `+f+`( |$)`, out.String(), f)
	}
}
