package catalog_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stretchr/testify/require"
	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/catalog"
	"kubernaut.ai/datastorage/internal/ingest"

	"kubernaut.ai/datastorage/internal/store"
	"kubernaut.ai/datastorage/internal/store/storetest"
)

// candidateTracer keeps the last candidate query of a search, to EXPLAIN
// exactly what the store sends.
type candidateTracer struct {
	mu   sync.Mutex
	sql  string
	args []any
}

func (c *candidateTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if strings.Contains(d.SQL, "FROM workflow_versions WHERE is_latest") {
		c.mu.Lock()
		c.sql, c.args = d.SQL, slices.Clone(d.Args)
		c.mu.Unlock()
	}
	return ctx
}

func (c *candidateTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

var benchValidator = &audit.Validator{MaxAge: time.Hour, MaxSkew: time.Hour, DefaultRetentionDays: 2555}

var benchContent = strings.Repeat("# step\n", 4096/7)

// benchBody is version 1.<v>.0 of workflow n: 20 signal types (50 names
// each at 1,000 names), a mix of components, risk tolerances, gitops and
// teams.
func benchBody(n, v int) []byte {
	body, _ := json.Marshal(map[string]any{
		"workflow_name": fmt.Sprintf("wf-%04d", n), "version": fmt.Sprintf("1.%d.0", v),
		"title":       fmt.Sprintf("Remediate signal %d with workflow %d", n%20, n),
		"description": map[string]any{"what": "Restarts, scales or patches the target to remediate the signal", "when_to_use": "when the signal repeats"},
		"action_type": []string{"RestartPod", "IncreaseMemory", "ScaleUp", "Rollback"}[n%4],
		"labels": map[string]any{"signal_type": []string{fmt.Sprintf("Signal%02d", n%20)},
			"severity": []string{"critical", "high"}, "component": []string{[]string{"deployment", "statefulset", "*"}[n%3]},
			"environment": []string{"production", "staging"}, "priority": []string{"*"},
			"risk_tolerance": []string{[]string{"low", "medium", "*"}[n%3]}, "business_category": []string{"*"}},
		"detected_labels": map[string]any{"gitops_managed": n%2 == 0},
		"custom_labels":   map[string]any{"team": []string{fmt.Sprintf("team-%d", n%7)}},
		"execution":       map[string]any{"engine": "tekton", "bundle": "quay.io/x/y@sha256:" + fmt.Sprintf("%064x", n)},
		"content":         benchContent + fmt.Sprint(n, v),
	})
	return body
}

// benchCatalog registers names × versions workflows; signal types are
// spread so that each of 20 signal types matches names/20 names.
func benchCatalog(b *testing.B, names, versions int) (*store.Store, *candidateTracer) {
	b.Helper()
	tr := &candidateTracer{}
	st, _ := storetest.New(b, store.Options{MaxConns: 16, Tracer: tr}, 1)
	svc := newService(&testing.T{}, st)
	ctx := context.Background()
	work := make(chan [2]int)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for nv := range work {
				n, v := nv[0], nv[1]
				body := benchBody(n, v)
				if _, _, err := svc.Register(ctx, body, anyone); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	start := time.Now()
	// Version-major, so the 8 writers register different names at once
	// (versions of one name serialize on the name's lock).
	for v := range versions {
		for n := range names {
			work <- [2]int{n, v}
		}
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(b, err)
	}
	b.Logf("registered %d versions in %s (%.0f/s, c=8)", names*versions, time.Since(start).Round(time.Millisecond),
		float64(names*versions)/time.Since(start).Seconds())
	_, err := st.Pool().Exec(ctx, "ANALYZE workflow_versions")
	require.NoError(b, err)
	return st, tr
}

// measure runs op b.N times on c goroutines and reports the latency
// percentiles and the rate.
func measure(b *testing.B, c int, op func(i int) error) {
	b.Helper()
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				t0 := time.Now()
				if err := op(i); err != nil {
					b.Error(err)
					return
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.5), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "ops/s")
}

// BenchmarkCatalog measures the catalog on 1,000 names × 10 versions (4 KiB
// content, labels as benchCatalog spreads them) at c=8: searches whose
// signal type matches 50 names (labels only; with text and explain),
// registrations of new versions, and get by id. It logs the plan of the
// candidate query. Run:
//
//	go test -run '^$' -bench Catalog -benchtime 2000x ./internal/catalog/
func BenchmarkCatalog(b *testing.B) {
	st, tr := benchCatalog(b, 1000, 10)
	log := slog.New(slog.DiscardHandler)
	pipe := ingest.New(st, nil, ingest.Options{Writers: 2, MaxBatch: 500}, nil, log)
	require.NoError(b, pipe.Start(context.Background()))
	b.Cleanup(func() { _ = pipe.Stop(context.Background()) })
	svc := catalog.New(catalog.Options{Store: st, Validator: benchValidator, Weights: catalog.DefaultWeights,
		Sink: catalog.EventSinkFunc(func(ctx context.Context, events []*audit.Event) error {
			_, err := pipe.Submit(ctx, events)
			return err
		})})
	ctx := context.Background()
	for _, c := range []struct {
		name string
		body string
	}{
		{"search-labels", `{"context":{"signal_type":"signal08","severity":"critical","environment":"production","component":"deployment"}}`},
		{"search-text-explain", `{"context":{"signal_type":"signal08","severity":"critical","environment":"production"},
			"detected_labels":{"gitops_managed":true},"custom_labels":{"team":["team-3"]},"text":"restart the target","explain":true}`},
	} {
		b.Run(c.name, func(b *testing.B) {
			measure(b, 8, func(int) error {
				res, err := svc.Search(ctx, []byte(c.body), anyone)
				if err == nil && res.TotalCandidates == 0 {
					err = fmt.Errorf("no candidates")
				}
				return err
			})
		})
		tr.mu.Lock()
		sql, args := tr.sql, tr.args
		tr.mu.Unlock()
		rows, err := st.Pool().Query(ctx, "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) "+sql, args...)
		require.NoError(b, err)
		plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(b, err)
		b.Logf("%s candidate query plan:\n%s", c.name, strings.Join(plan, "\n"))
	}
	var round atomic.Int64
	b.Run("register", func(b *testing.B) {
		r := round.Add(1)
		measure(b, 8, func(i int) error {
			_, created, err := svc.Register(ctx, benchBody(i%1000, int(r)*100000+i), anyone)
			if err == nil && !created {
				err = fmt.Errorf("not created")
			}
			return err
		})
	})
	ids := make([]string, 0, 1000)
	for n := range 1000 {
		ids = append(ids, catalog.WorkflowID(fmt.Sprintf("wf-%04d", n), "1.3.0").String())
	}
	b.Run("get", func(b *testing.B) {
		measure(b, 8, func(i int) error {
			_, err := svc.Get(ctx, ids[i%len(ids)])
			return err
		})
	})
}
