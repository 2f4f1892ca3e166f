package httpapi_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/httpapi"
	"kubernaut.ai/datastorage/internal/ingest"
)

// committing is an Ingester that commits everything at once: what the
// benchmark measures is the API's own work per request.
type committing struct{}

func (committing) Submit(context.Context, []*audit.Event) (ingest.Outcome, error) {
	return ingest.Committed, nil
}

// benchWriter is the least a ResponseWriter can be, reused across requests
// so that it adds nothing per request.
type benchWriter struct {
	header http.Header
	status int
	body   []byte
}

func (w *benchWriter) Header() http.Header { return w.header }
func (w *benchWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}
func (w *benchWriter) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	w.body = append(w.body, b...)
	return len(b), nil
}

// BenchmarkWriteOne is one POST /api/v1/audit/events through the whole API
// (middleware, decoding and validation, the answer) with an ingester that
// commits at once, as the server is configured by default (metrics
// registered, logging at warn): the server's CPU and allocations per lone
// event outside the pipeline and the store.
func BenchmarkWriteOne(b *testing.B) {
	now := time.Now().UTC()
	api := httpapi.New(httpapi.Config{
		Validator:      &audit.Validator{MaxAge: 7 * 24 * time.Hour, MaxSkew: time.Hour, DefaultRetentionDays: 2555},
		Ingest:         committing{},
		Log:            slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Registerer:     prometheus.NewRegistry(),
		MaxBatchSize:   5000,
		MaxBodySize:    16 << 20,
		RequestTimeout: 30 * time.Second,
	})
	body := `{"version":"1.0","event_type":"workflow.step.done","event_timestamp":"` + now.Format(time.RFC3339Nano) + `",` +
		`"event_category":"workflow","event_action":"done","event_outcome":"success","correlation_id":"rr-2f9c1d7e",` +
		`"severity":"info","duration_ms":1532,"event_data":{"workflow_id":"restart-pod-v2","step":3,"step_name":"drain-node",` +
		`"target":{"kind":"Pod","name":"payments-api-7d9f8c6b5-x2k4j","namespace":"payments","labels":{"app":"payments-api","tier":"backend"}},` +
		`"attempts":[1,2,3],"confidence":0.875,"cpu_millicores":1250,"memory_bytes":536870912,"message":"step completed after 3 attempts",` +
		`"dry_run":false,"approved_by":null,"cost":1.50e1,"parameters":{"grace_period_seconds":30,"force":false,"selector":"app=payments"}}}`
	w := &benchWriter{header: http.Header{}}
	reader := strings.NewReader(body)
	req, err := http.NewRequest(http.MethodPost, "http://127.0.0.1/api/v1/audit/events", reader)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.RemoteAddr = "127.0.0.1:40000"
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		reader.Reset(body)
		req.Body = io.NopCloser(reader)
		req.ContentLength = int64(len(body))
		clear(w.header)
		w.status, w.body = 0, w.body[:0]
		api.ServeHTTP(w, req)
		if w.status != http.StatusCreated {
			b.Fatalf("status %d: %s", w.status, w.body)
		}
	}
}
