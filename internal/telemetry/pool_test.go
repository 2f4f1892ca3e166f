package telemetry

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/testenv"
)

// TestPoolCollectorLabelsEachPool checks that both pools' statistics are
// exported under their pool label and that they are each pool's own: a
// connection held on one shows in_use on that pool only.
func TestPoolCollectorLabelsEachPool(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url := testenv.NewDatabase(t)
	open := func(max int32) *pgxpool.Pool {
		cfg, err := pgxpool.ParseConfig(url)
		require.NoError(t, err)
		cfg.MaxConns = max
		p, err := pgxpool.NewWithConfig(ctx, cfg)
		require.NoError(t, err)
		t.Cleanup(p.Close)
		return p
	}
	primary, replica := open(3), open(2)
	held, err := replica.Acquire(ctx)
	require.NoError(t, err)
	defer held.Release()
	_, err = primary.Exec(ctx, "SELECT 1")
	require.NoError(t, err)

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewPoolCollector(primary, replica))
	got := gather(t, reg)
	assert.Equal(t, 3.0, got["datastorage_db_pool_max_connections,pool=primary"])
	assert.Equal(t, 2.0, got["datastorage_db_pool_max_connections,pool=replica"])
	assert.Equal(t, 1.0, got["datastorage_db_pool_connections,pool=replica,state=in_use"])
	assert.Equal(t, 0.0, got["datastorage_db_pool_connections,pool=primary,state=in_use"])
	assert.Equal(t, 1.0, got["datastorage_db_pool_acquires_total,pool=replica"])
	assert.GreaterOrEqual(t, got["datastorage_db_pool_acquires_total,pool=primary"], 1.0)
	assert.Equal(t, 1.0, got["datastorage_db_pool_total_connections,pool=replica"])

	// Without a standby only the primary is exported.
	reg = prometheus.NewPedanticRegistry()
	reg.MustRegister(NewPoolCollector(primary, nil))
	got = gather(t, reg)
	assert.Contains(t, got, "datastorage_db_pool_max_connections,pool=primary")
	assert.NotContains(t, got, "datastorage_db_pool_max_connections,pool=replica")
}

// gather returns every sample of reg by "name,label=value,…".
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var key strings.Builder
			key.WriteString(mf.GetName())
			for _, l := range m.GetLabel() {
				key.WriteString("," + l.GetName() + "=" + l.GetValue())
			}
			got[key.String()] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	return got
}

func TestMain(m *testing.M) { testenv.Main(m) }
