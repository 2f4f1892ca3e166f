package scenario

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestParseSpoolWait checks that the WAIT series are summed over streams and
// that other series, comments and a space inside a label value are ignored.
func TestParseSpoolWait(t *testing.T) {
	text := `# HELP datastorage_spool_wait_seconds Time of a spool append that waits.
# TYPE datastorage_spool_wait_seconds histogram
datastorage_spool_wait_seconds_bucket{stream="events",le="0.001"} 3
datastorage_spool_wait_seconds_sum{stream="events"} 0.25
datastorage_spool_wait_seconds_count{stream="events"} 100
datastorage_spool_wait_seconds_sum{stream="notifications"} 0.05
datastorage_spool_wait_seconds_count{stream="notifications"} 10
datastorage_spool_wait_shortfalls_total{stream="a b"} 2
datastorage_spool_depth{stream="events"} 999
`
	d, err := parseSpoolWait(strings.NewReader(text))
	require.NoError(t, err)
	assert.InDelta(t, 0.30, d.waitSum, 1e-9)
	assert.Equal(t, 110.0, d.waitCount)
	assert.Equal(t, 2.0, d.shortfalls)

	_, err = parseSpoolWait(strings.NewReader("datastorage_spool_wait_seconds_count{stream=\"x\"} nope\n"))
	assert.Error(t, err)
}
