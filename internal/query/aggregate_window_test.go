package query_test

import (
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/query"
)

// extra gives each aggregation the parameters it needs besides its window,
// so that the window is the only thing a case below varies.
var extra = map[string]string{
	query.AggSuccessRate: "event_type=x",
	query.AggByNamespace: "",
	query.AggBySeverity:  "",
	query.AggTrend:       "interval=day",
	query.AggCounts:      "group_by=severity",
}

func parseAgg(t *testing.T, name, q string) (query.AggregateParams, map[string]string) {
	t.Helper()
	if e := extra[name]; e != "" {
		if q != "" {
			q += "&"
		}
		q += e
	}
	v, err := url.ParseQuery(q)
	require.NoError(t, err)
	p, fe, err := query.ParseAggregate(name, v, now)
	require.NoError(t, err)
	return p, fe
}

func TestEveryAggregationRefusesABadWindowNamingTheParameter(t *testing.T) {
	for _, name := range query.Aggregations {
		for _, tc := range []struct{ q, field string }{
			{"since=not-a-time", "since"},
			{"until=soon", "until"},
			{"since=1h&until=2h", "since"},
			{"since=400d", "since"},
		} {
			_, fe := parseAgg(t, name, tc.q)
			assert.Contains(t, fe, tc.field, "%s?%s", name, tc.q)
		}
	}
}

func TestEveryAggregationReadsAGoodWindow(t *testing.T) {
	for _, name := range query.Aggregations {
		p, fe := parseAgg(t, name, "since=3d&until=2026-11-21T10:00:00Z")
		require.Empty(t, fe, name)
		assert.Equal(t, now.Add(-72*time.Hour), p.Window.From, name)
		assert.Equal(t, time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC), p.Window.To, name)

		p, fe = parseAgg(t, name, "")
		require.Empty(t, fe, name)
		assert.Equal(t, now, p.Window.To, "%s: until defaults to now", name)
		assert.Equal(t, now.Add(-7*24*time.Hour), p.Window.From, "%s: the default window is 7 days", name)
	}
}

// The trend's period only sets the default window: an explicit since wins,
// and until moves the period's window with it.
func TestTrendPeriodIsTheDefaultWindowAndAnExplicitSinceWins(t *testing.T) {
	p, fe := parseAgg(t, query.AggTrend, "period=30d")
	require.Empty(t, fe)
	assert.Equal(t, now.Add(-30*24*time.Hour), p.Window.From)
	assert.Equal(t, "30d", p.Period)

	p, fe = parseAgg(t, query.AggTrend, "period=90d&until=2026-11-01")
	require.Empty(t, fe)
	until := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	assert.Equal(t, until, p.Window.To)
	assert.Equal(t, until.Add(-90*24*time.Hour), p.Window.From)

	p, fe = parseAgg(t, query.AggTrend, "period=90d&since=2d")
	require.Empty(t, fe)
	assert.Equal(t, now.Add(-48*time.Hour), p.Window.From, "since wins over period")
	assert.Equal(t, now, p.Window.To)
	assert.Equal(t, "90d", p.Period, "the answer echoes the period asked for")
}
