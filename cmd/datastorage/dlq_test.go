package main

import (
	"bytes"
	"context"
	"flag"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/spool"
)

func TestParseInterleavedTakesFlagsAnywhere(t *testing.T) {
	fs := flag.NewFlagSet("dlq", flag.ContinueOnError)
	kind := fs.String("kind", "events", "")
	all := fs.Bool("all", false, "")
	words, err := parseInterleaved(fs, []string{"dead-letters", "redrive", "1-1", "--kind", "notifications", "2-2", "--all"})
	require.NoError(t, err)
	assert.Equal(t, []string{"dead-letters", "redrive", "1-1", "2-2"}, words)
	assert.Equal(t, "notifications", *kind)
	assert.True(t, *all)
}

func TestDLQRefusesBadUsageBeforeTouchingRedis(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"nonsense"},
		{"stats", "extra"},
		{"dead-letters"},
		{"dead-letters", "redrive"}, // neither ids nor --all
		{"dead-letters", "redrive", "1-1", "--all"}, // both
		{"dead-letters", "list", "--kind", "widgets"},
	} {
		var out, errOut bytes.Buffer
		err := cmdDLQ(context.Background(), args, nil, &out, &errOut)
		assert.ErrorIs(t, err, errUsage, "args %q", args)
		assert.Contains(t, errOut.String(), "Usage: datastorage dlq", "args %q", args)
	}
}

func TestProgressPrintsPlainLinesWhenNotATerminal(t *testing.T) {
	var buf bytes.Buffer
	p := newProgress(&buf, "events")
	p.update(spool.DrainResult{Committed: 10}, 100) // the first update prints at once
	p.update(spool.DrainResult{Committed: 20}, 100) // then at most every few seconds
	p.finish(spool.DrainResult{Committed: 100})
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 2, buf.String())
	assert.True(t, strings.HasPrefix(lines[0], "replay events: 10/100 ("), lines[0])
	assert.True(t, strings.HasPrefix(lines[1], "replay events: 100/100 ("), lines[1])
	assert.NotContains(t, buf.String(), "\r")
}
