package httpapi_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/apitest"
	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/auth"
	"kubernaut.ai/datastorage/internal/httpapi"
	"kubernaut.ai/datastorage/internal/ingest"
	"kubernaut.ai/datastorage/internal/integrity"
	"kubernaut.ai/datastorage/internal/query"
	"kubernaut.ai/datastorage/internal/store"
	"kubernaut.ai/datastorage/internal/store/storetest"
)

// namedCaller authenticates every request as one caller.
type namedCaller string

func (n namedCaller) Authorize(context.Context, string, auth.Verb) (auth.Identity, error) {
	return auth.Identity{Name: string(n), User: true}, nil
}

// setupIntegrity is setup with the integrity routes, callers authenticated
// as "alice" unless anonymous.
func setupIntegrity(t *testing.T, anonymous bool) (*bundle, *integrity.Signer) {
	t.Helper()
	st, _ := storetest.New(t, store.Options{MaxConns: 8}, 1)
	signer, err := integrity.GenerateSigner()
	require.NoError(t, err)

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pipe := ingest.New(st, nil, ingest.Options{Writers: 2, MaxBatch: 500}, nil, log)
	require.NoError(t, pipe.Start(context.Background()))
	t.Cleanup(func() { _ = pipe.Stop(context.Background()) })
	cfg := httpapi.Config{
		Validator:      &audit.Validator{MaxAge: 7 * 24 * time.Hour, MaxSkew: time.Hour, DefaultRetentionDays: 2555},
		Ingest:         pipe,
		Reader:         query.New(st),
		Timelines:      query.NewTimelines(st),
		Aggregator:     query.NewAggregator(st),
		Notifications:  st,
		Health:         &fakeHealth{db: true},
		Log:            log,
		MaxBatchSize:   5000,
		MaxBodySize:    16 << 20,
		RequestTimeout: 10 * time.Second,
		Integrity:      integrity.NewService(st, audit.Hasher{}, signer),
	}
	if !anonymous {
		cfg.Auth = namedCaller("alice")
	}
	srv := httptest.NewServer(httpapi.New(cfg))
	t.Cleanup(srv.Close)
	return &bundle{t: t, srv: srv, store: st, spec: apitest.NewValidator(t)}, signer
}

// writeChain stores n events of corr through the API and returns their ids.
func (b *bundle) writeChain(corr string, n int) []string {
	b.t.Helper()
	var batch []map[string]any
	for i := range n {
		batch = append(batch, event(map[string]any{
			"correlation_id":  corr,
			"event_timestamp": time.Now().UTC().Add(-time.Minute).Truncate(time.Second).Format(time.RFC3339),
			"event_data":      map[string]any{"i": i, "score": 1.50, "note": "same second"},
		}))
	}
	r := b.do("POST", "/api/v1/audit/events/batch", batch)
	require.Equal(b.t, 201, r.status, "%s", r.body)
	var ids []string
	for _, id := range r.json(b.t)["event_ids"].([]any) {
		ids = append(ids, id.(string))
	}
	return ids
}

// tamper runs sql as a superuser with the append-only triggers off.
func (b *bundle) tamper(sql string, args ...any) {
	b.t.Helper()
	ctx := context.Background()
	require.NoError(b.t, pgx.BeginFunc(ctx, b.store.Pool(), func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, sql, args...)
		return err
	}))
}

func TestVerifyChainEndpoint(t *testing.T) {
	t.Parallel()
	b, _ := setupIntegrity(t, false)
	ids := b.writeChain("rr-verify", 5)

	r := b.do("POST", "/api/v1/audit/verify-chain", map[string]any{"correlation_id": "rr-verify"})
	require.Equal(t, 200, r.status, "%s", r.body)
	v := r.json(t)
	require.Equal(t, true, v["is_valid"])
	require.Equal(t, 5.0, v["total_events"])
	require.Equal(t, 5.0, v["verified_events"])
	require.Equal(t, []any{}, v["tampered_events"])

	b.tamper(`UPDATE audit_events SET event_data = event_data || '{"i": 42}' WHERE event_id = $1`, ids[3])
	// The first verification sealed a checkpoint past ids[3]: the next one
	// starts after it, and only a full one reads ids[3] again.
	r = b.do("POST", "/api/v1/audit/verify-chain", map[string]any{"correlation_id": "rr-verify"})
	require.Equal(t, 200, r.status, "%s", r.body)
	v = r.json(t)
	require.Equal(t, true, v["is_valid"])
	require.Equal(t, 0.0, v["events_read"])
	require.Equal(t, 5.0, v["verified_from"].(map[string]any)["chain_seq"])
	r = b.do("POST", "/api/v1/audit/verify-chain", map[string]any{"correlation_id": "rr-verify", "extra": true, "full": true})
	require.Equal(t, 200, r.status, "%s", r.body)
	v = r.json(t)
	require.Equal(t, false, v["is_valid"])
	require.Equal(t, 5.0, v["events_read"])
	require.NotContains(t, v, "verified_from")
	require.Equal(t, 4.0, v["verified_events"])
	tampered := v["tampered_events"].([]any)
	require.Len(t, tampered, 1)
	te := tampered[0].(map[string]any)
	require.Equal(t, ids[3], te["event_id"])
	require.NotEqual(t, te["expected_hash"], te["actual_hash"])
	require.Contains(t, te["message"], "content does not match")
	require.Contains(t, v["message"], ids[3])

	for _, body := range []string{`{}`, `{"correlation_id":""}`, `{"correlation_id":null}`} {
		r = b.do("POST", "/api/v1/audit/verify-chain", body)
		require.Equal(t, 400, r.status, body)
		p := r.json(t)
		require.Equal(t, "https://kubernaut.ai/problems/missing-correlation-id", p["type"])
		require.Equal(t, "Missing Correlation ID", p["title"])
	}
	r = b.do("POST", "/api/v1/audit/verify-chain", `{"correlation_id":7}`)
	require.Equal(t, 400, r.status)
	require.Contains(t, r.fields(t), "correlation_id")
	r = b.do("POST", "/api/v1/audit/verify-chain", `not json`)
	require.Equal(t, 400, r.status)
	require.Equal(t, "https://kubernaut.ai/problems/validation-error", r.json(t)["type"])
	r = b.do("POST", "/api/v1/audit/verify-chain", map[string]any{"correlation_id": "rr-unknown"})
	require.Equal(t, 404, r.status)
	r = b.do("POST", "/api/v1/audit/verify-chain", `{"correlation_id":"rr-verify","full":"yes"}`)
	require.Equal(t, 400, r.status)
	require.Contains(t, r.fields(t), "full")
}

func TestVerifyChainBeyondTheConcurrencyBoundIs503(t *testing.T) {
	t.Parallel()
	b, _ := setupIntegrity(t, false)
	b.writeChain("rr-busy", 3)
	ctx := context.Background()

	// Hold every verification at its first read: a transaction that locks
	// the checkpoints table makes each wait on the lock, in the database.
	tx, err := b.store.Pool().Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(context.Background())
	_, err = tx.Exec(ctx, `LOCK TABLE audit_chain_checkpoints IN ACCESS EXCLUSIVE MODE`)
	require.NoError(t, err)

	statuses := make(chan int, integrity.MaxConcurrentVerifications)
	for range integrity.MaxConcurrentVerifications {
		go func() {
			resp, err := b.srv.Client().Post(b.srv.URL+"/api/v1/audit/verify-chain", "application/json",
				strings.NewReader(`{"correlation_id":"rr-busy"}`))
			if err != nil {
				statuses <- 0
				return
			}
			_ = resp.Body.Close()
			statuses <- resp.StatusCode
		}()
	}
	require.Eventually(t, func() bool {
		var waiting int
		err := b.store.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%audit_chain_checkpoints%'`).Scan(&waiting)
		return err == nil && waiting == integrity.MaxConcurrentVerifications
	}, 60*time.Second, 10*time.Millisecond, "every slot is taken by a verification waiting in the database")

	r := b.do("POST", "/api/v1/audit/verify-chain", map[string]any{"correlation_id": "rr-busy"})
	require.Equal(t, 503, r.status, "%s", r.body)
	require.Equal(t, "5", r.header.Get("Retry-After"))
	require.Equal(t, "https://kubernaut.ai/problems/service-unavailable", r.json(t)["type"])

	require.NoError(t, tx.Rollback(ctx))
	for range integrity.MaxConcurrentVerifications {
		require.Equal(t, 200, <-statuses)
	}
	r = b.do("POST", "/api/v1/audit/verify-chain", map[string]any{"correlation_id": "rr-busy"})
	require.Equal(t, 200, r.status, "a slot is free again once they finish")
}

func TestLegalHoldEndpoints(t *testing.T) {
	t.Parallel()
	b, _ := setupIntegrity(t, false)
	ids := b.writeChain("rr-hold", 3)

	r := b.do("POST", "/api/v1/audit/legal-hold", map[string]any{"correlation_id": "rr-hold", "reason": "litigation #42"})
	require.Equal(t, 200, r.status, "%s", r.body)
	h := r.json(t)
	require.Equal(t, "rr-hold", h["correlation_id"])
	require.Equal(t, 3.0, h["events_affected"])
	require.Equal(t, "alice", h["placed_by"])
	require.Equal(t, "litigation #42", h["reason"])

	// Again: not an error, the same hold.
	r = b.do("POST", "/api/v1/audit/legal-hold", map[string]any{"correlation_id": "rr-hold", "reason": "other"})
	require.Equal(t, 200, r.status)
	require.Equal(t, h["placed_at"], r.json(t)["placed_at"])

	r = b.do("GET", "/api/v1/audit/events/"+ids[0], nil)
	require.Equal(t, 200, r.status)
	ev := r.json(t)
	require.Equal(t, true, ev["legal_hold"])
	require.Equal(t, "alice", ev["legal_hold_placed_by"])
	require.Equal(t, "litigation #42", ev["legal_hold_reason"])

	r = b.do("GET", "/api/v1/audit/legal-hold", nil)
	require.Equal(t, 200, r.status)
	list := r.json(t)
	require.Equal(t, 1.0, list["total"])
	require.Equal(t, "rr-hold", list["holds"].([]any)[0].(map[string]any)["correlation_id"])

	r = b.do("DELETE", "/api/v1/audit/legal-hold/rr-hold", map[string]any{"release_reason": "case closed"})
	require.Equal(t, 200, r.status, "%s", r.body)
	rel := r.json(t)
	require.Equal(t, 3.0, rel["events_released"])
	require.Equal(t, "alice", rel["released_by"])
	r = b.do("DELETE", "/api/v1/audit/legal-hold/rr-hold", map[string]any{"release_reason": "again"})
	require.Equal(t, 404, r.status)
	r = b.do("GET", "/api/v1/audit/legal-hold", nil)
	require.Equal(t, map[string]any{"holds": []any{}, "total": 0.0}, r.json(t))

	r = b.do("POST", "/api/v1/audit/legal-hold", map[string]any{"correlation_id": "rr-none", "reason": "x"})
	require.Equal(t, 404, r.status)
	r = b.do("POST", "/api/v1/audit/legal-hold", map[string]any{"correlation_id": "rr-hold"})
	require.Equal(t, 400, r.status)
	require.Contains(t, r.fields(t), "reason")
	r = b.do("DELETE", "/api/v1/audit/legal-hold/rr-hold", `{}`)
	require.Equal(t, 400, r.status)
	require.Contains(t, r.fields(t), "release_reason")
}

func TestLegalHoldWithoutAuthenticationIsAnonymous(t *testing.T) {
	t.Parallel()
	b, _ := setupIntegrity(t, true)
	b.writeChain("rr-anon", 1)
	r := b.do("POST", "/api/v1/audit/legal-hold", map[string]any{"correlation_id": "rr-anon", "reason": "r"})
	require.Equal(t, 200, r.status)
	require.Equal(t, "anonymous", r.json(t)["placed_by"])
}

func TestExportEndpoint(t *testing.T) {
	t.Parallel()
	b, signer := setupIntegrity(t, false)
	ids := b.writeChain("rr-exp-a", 4)
	b.writeChain("rr-exp-b", 2)
	b.tamper(`UPDATE audit_events SET event_outcome = 'failure' WHERE event_id = $1`, ids[1])

	for _, format := range []string{"json", "ndjson"} {
		t.Run(format, func(t *testing.T) {
			r := b.do("GET", "/api/v1/audit/export?format="+format+"&start_time="+
				time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), nil)
			require.Equal(t, 200, r.status, "%s", r.body)
			rep, err := integrity.VerifyExport(bytes.NewReader(r.body), signer.PublicKey(), audit.Hasher{})
			require.NoError(t, err)
			require.True(t, rep.SignatureValid, "%+v", rep)
			require.Equal(t, int64(6), rep.Events)
			require.Equal(t, "alice", rep.Metadata.ExportedBy)
			require.Equal(t, int64(1), rep.BrokenCount, "the tampered event is named")
			require.Equal(t, ids[1], rep.Broken[0].EventID)
			require.Contains(t, string(r.body), `"tampered_event_ids":["`+ids[1]+`"]`)

			// One byte flipped in the events breaks the signature.
			i := bytes.Index(r.body, []byte(`"rr-exp-b"`))
			require.Positive(t, i)
			flipped := bytes.Clone(r.body)
			flipped[i+4] = 'X'
			rep, err = integrity.VerifyExport(bytes.NewReader(flipped), signer.PublicKey(), audit.Hasher{})
			require.NoError(t, err)
			require.False(t, rep.SignatureValid)
		})
	}

	r := b.do("GET", "/api/v1/audit/export?correlation_id=rr-exp-b&limit=1&offset=1", nil)
	require.Equal(t, 200, r.status)
	require.Equal(t, "application/json", r.header.Get("Content-Type"))
	require.Contains(t, string(r.body), `"total_events":1`)
	require.Contains(t, string(r.body), `"query_filters":{"correlation_id":"rr-exp-b","format":"json","limit":1,"offset":1}`)

	r = b.do("GET", "/api/v1/audit/export?format=ndjson&event_category=gateway&limit=20000", nil)
	require.Equal(t, 200, r.status)
	require.Equal(t, "application/x-ndjson", r.header.Get("Content-Type"))
	lines := strings.Split(strings.TrimSuffix(string(r.body), "\n"), "\n")
	require.Len(t, lines, 1+6+1)
	require.True(t, strings.HasPrefix(lines[0], `{"export_metadata":`))
	require.True(t, strings.HasPrefix(lines[7], `{"hash_chain_verification":`))

	for _, q := range []string{"format=xml", "limit=0", "limit=20000", "offset=-1", "start_time=yesterday",
		"event_category=nope", "start_time=2026-01-02T00:00:00Z&end_time=2026-01-01T00:00:00Z"} {
		r = b.do("GET", "/api/v1/audit/export?"+q, nil)
		require.Equal(t, 400, r.status, q)
	}
}
