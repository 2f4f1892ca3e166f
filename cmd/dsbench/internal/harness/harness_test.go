package harness

import (
	"context"
	"net/http"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMergeSettingsReplacesInPlaceAndAddsTheRest(t *testing.T) {
	base := [][2]string{{"fsync", "on"}, {"shared_buffers", "1GB"}}
	got := MergeSettings(base, [][2]string{{"shared_buffers", "2GB"}, {"work_mem", "32MB"}})
	assert.Equal(t, [][2]string{{"fsync", "on"}, {"shared_buffers", "2GB"}, {"work_mem", "32MB"}}, got)
	assert.Equal(t, "1GB", base[1][1], "the base is not changed")
}

func TestPGSettingsAreDurableAndACopyPerCall(t *testing.T) {
	s := PGSettings()
	for _, want := range [][2]string{{"fsync", "on"}, {"synchronous_commit", "on"}, {"full_page_writes", "on"}} {
		assert.Contains(t, s, want)
	}
	s[0][1] = "changed"
	assert.NotEqual(t, "changed", PGSettings()[0][1])
}

func TestLoopbackOnly(t *testing.T) {
	_, err := DialLoopback("10.0.0.1:80")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "127.0.0.1 only")

	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://10.0.0.1:80/readyz", nil)
	require.NoError(t, err)
	_, err = LoopbackClient(1).Do(req)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "127.0.0.1 only")
}

func TestTailKeepsTheLastLines(t *testing.T) {
	path := t.TempDir() + "/log"
	require.NoError(t, writeFile(path, "a\nb\nc\nd\n"))
	assert.Equal(t, "c\nd", tail(path, 2))
	assert.Equal(t, "a\nb\nc\nd", tail(path, 10))
	assert.Empty(t, tail(path+".missing", 2))
}

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o644) }

func TestParseGoAllocsReadsBothCountersOrReportsMissing(t *testing.T) {
	text := "# HELP go_memstats_mallocs_total Total number of heap objects allocated.\n" +
		"# TYPE go_memstats_mallocs_total counter\n" +
		"go_memstats_mallocs_total 1.234567e+06\n" +
		"go_memstats_alloc_bytes_total 9.87654321e+08\n" +
		"go_memstats_alloc_bytes 123\n"
	objects, bytes, ok := parseGoAllocs(text)
	require.True(t, ok)
	assert.Equal(t, int64(1_234_567), objects)
	assert.Equal(t, int64(987_654_321), bytes)

	_, _, ok = parseGoAllocs("go_memstats_mallocs_total 5\n")
	assert.False(t, ok, "one counter missing")
}

func TestContextSwitchesOfThisProcessAreCounted(t *testing.T) {
	v, inv := ContextSwitches(os.Getpid())
	assert.Positive(t, v+inv, "a Go process has blocked at least once by the time its tests run")
}
