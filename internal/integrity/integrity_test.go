package integrity_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/ingest"
	"kubernaut.ai/datastorage/internal/integrity"
	"kubernaut.ai/datastorage/internal/store"
	"kubernaut.ai/datastorage/internal/store/storetest"
	"kubernaut.ai/datastorage/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

type env struct {
	t      *testing.T
	st     *store.Store
	svc    *integrity.Service
	signer *integrity.Signer
	hasher audit.Hasher
}

func newEnv(t *testing.T, hmacKey string) *env {
	t.Helper()
	hasher := audit.NewHasher([]byte(hmacKey))
	st, _ := storetest.New(t, store.Options{MaxConns: 12, Hasher: hasher}, 1)
	signer, err := integrity.GenerateSigner()
	require.NoError(t, err)
	return &env{t: t, st: st, svc: integrity.NewService(st, hasher, signer), signer: signer, hasher: hasher}
}

var validator = &audit.Validator{MaxAge: 7 * 24 * time.Hour, MaxSkew: time.Hour, DefaultRetentionDays: 2555}

// request decodes one event as the API would.
func request(t testing.TB, corr string, ts time.Time, data string) *audit.Event {
	t.Helper()
	body := fmt.Sprintf(`{"version":"1.0","event_type":"aiagent.analysis.completed","event_timestamp":%q,
		"event_category":"aiagent","event_action":"completed","event_outcome":"success",
		"correlation_id":%q,"event_data":%s}`, ts.Format(time.RFC3339Nano), corr, data)
	ev, fe, err := validator.DecodeOne([]byte(body))
	require.NoError(t, err)
	require.Empty(t, fe)
	return ev
}

// write stores events directly (no validation): old timestamps are allowed.
func (e *env) write(events ...*audit.Event) {
	e.t.Helper()
	_, err := e.st.InsertEvents(context.Background(), events)
	require.NoError(e.t, err)
}

// tamper runs sql as a superuser with the append-only triggers off.
func (e *env) tamper(sql string, args ...any) {
	e.t.Helper()
	ctx := context.Background()
	require.NoError(e.t, pgx.BeginFunc(ctx, e.st.Pool(), func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, sql, args...)
		if err == nil && tag.RowsAffected() == 0 {
			return fmt.Errorf("tamper: no row affected by %s", sql)
		}
		return err
	}))
}

func (e *env) verify(corr string) integrity.ChainReport {
	e.t.Helper()
	rep, err := e.svc.VerifyChain(context.Background(), corr, false)
	require.NoError(e.t, err)
	return rep
}

func chainOf(e *env, corr string, n int) []*audit.Event {
	e.t.Helper()
	base := time.Now().Add(-time.Hour)
	evs := make([]*audit.Event, n)
	for i := range evs {
		evs[i] = request(e.t, corr, base.Add(time.Duration(i)*time.Second),
			fmt.Sprintf(`{"i":%d,"score":1.50,"big":1e2,"neg":-0,"s":"caf\u00e9 \"quoted\" <tag>"}`, i))
	}
	e.write(evs...)
	return evs
}

func TestVerifyChainIntact(t *testing.T) {
	t.Parallel()
	for _, key := range []string{"", "hmac-secret"} {
		t.Run("key="+key, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, key)
			chainOf(e, "rr-intact", 5)
			rep := e.verify("rr-intact")
			require.True(t, rep.IsValid, "%+v", rep)
			require.Equal(t, int64(5), rep.TotalEvents)
			require.Equal(t, int64(5), rep.VerifiedEvents)
			require.Empty(t, rep.TamperedEvents)
			require.Contains(t, rep.Message, "intact")

			_, err := e.svc.VerifyChain(context.Background(), "rr-none", false)
			require.ErrorIs(t, err, integrity.ErrNotFound)
		})
	}
}

func TestVerifyChainNamesTampering(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		tamper  func(e *env, evs []*audit.Event)
		broken  []int // indexes of the events reported
		message string
	}{
		{"changed content", func(e *env, evs []*audit.Event) {
			e.tamper(`UPDATE audit_events SET event_data = jsonb_set(event_data, '{i}', '99') WHERE event_id = $1`, evs[2].ID)
		}, []int{2}, "content does not match event_hash"},
		{"changed column", func(e *env, evs []*audit.Event) {
			e.tamper(`UPDATE audit_events SET event_outcome = 'failure' WHERE event_id = $1`, evs[0].ID)
		}, []int{0}, "content does not match event_hash"},
		{"content and hash rewritten", func(e *env, evs []*audit.Event) {
			// The forger recomputes the event's own hash (plain SHA-256 is
			// public): the next link no longer points at it.
			forged := *evs[1]
			forged.Outcome = "failure"
			canon, err := forged.Canonical()
			require.NoError(e.t, err)
			h := audit.Hasher{}.Link(*evs[1].PreviousHash, canon)
			e.tamper(`UPDATE audit_events SET event_outcome = 'failure', event_hash = decode($2, 'hex') WHERE event_id = $1`, evs[1].ID, h)
		}, []int{2}, "previous_event_hash does not match the event_hash of the preceding event"},
		// The hashes are stored as bytea (migration 00005): a changed
		// byte, a shortened hash, a first link given a predecessor.
		{"stored hash byte changed", func(e *env, evs []*audit.Event) {
			e.tamper(`UPDATE audit_events SET event_hash = set_byte(event_hash, 31, get_byte(event_hash, 31) # 1) WHERE event_id = $1`, evs[1].ID)
		}, []int{1, 2}, "content does not match event_hash"},
		{"stored previous hash shortened", func(e *env, evs []*audit.Event) {
			e.tamper(`UPDATE audit_events SET previous_event_hash = substring(previous_event_hash FROM 1 FOR 31) WHERE event_id = $1`, evs[3].ID)
		}, []int{3}, "previous_event_hash does not match the event_hash of the preceding event"},
		{"first link given a previous hash", func(e *env, evs []*audit.Event) {
			e.tamper(`UPDATE audit_events SET previous_event_hash = '\x00'::bytea WHERE event_id = $1`, evs[0].ID)
		}, []int{0}, "the first link of a chain must have an empty previous_event_hash"},
		{"deleted in the middle", func(e *env, evs []*audit.Event) {
			e.tamper(`DELETE FROM audit_events WHERE event_id = $1`, evs[2].ID)
		}, []int{3}, "chain_seq 3 is missing"},
		{"deleted at the start", func(e *env, evs []*audit.Event) {
			e.tamper(`DELETE FROM audit_events WHERE event_id = ANY($1)`, []uuid.UUID{evs[0].ID, evs[1].ID})
		}, []int{2}, "chain_seq 1..2 are missing"},
		{"truncated at the end", func(e *env, evs []*audit.Event) {
			e.tamper(`DELETE FROM audit_events WHERE event_id = ANY($1)`, []uuid.UUID{evs[3].ID, evs[4].ID})
		}, []int{2}, "the chain was truncated"},
		{"head removed", func(e *env, evs []*audit.Event) {
			e.tamper(`DELETE FROM audit_chain_heads WHERE correlation_id = $1`, evs[0].CorrelationID)
		}, []int{4}, "no chain head"},
		{"forged event appended", func(e *env, evs []*audit.Event) {
			e.tamper(`INSERT INTO audit_events SELECT (jsonb_populate_record(NULL::audit_events,
				to_jsonb(a) || jsonb_build_object('event_id', gen_random_uuid(), 'chain_seq', 6))).*
				FROM audit_events a WHERE event_id = $1`, evs[4].ID)
		}, []int{5}, "beyond the recorded chain head"},
		{"duplicate position", func(e *env, evs []*audit.Event) {
			e.tamper(`INSERT INTO audit_events SELECT (jsonb_populate_record(NULL::audit_events,
				to_jsonb(a) || jsonb_build_object('event_id', 'ffffffff-ffff-4fff-bfff-ffffffffffff'))).*
				FROM audit_events a WHERE event_id = $1`, evs[3].ID)
		}, []int{5}, "appears again"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, "")
			corr := "rr-" + strings.ReplaceAll(tc.name, " ", "-")
			evs := chainOf(e, corr, 5)
			tc.tamper(e, evs)
			rep := e.verify(corr)
			require.False(t, rep.IsValid, "%+v", rep)
			require.Len(t, rep.TamperedEvents, len(tc.broken), "%+v", rep.TamperedEvents)
			first := rep.TamperedEvents[0]
			require.Contains(t, first.Message, tc.message)
			require.Contains(t, rep.Message, first.EventID)
			if tc.broken[0] < len(evs) {
				require.Equal(t, evs[tc.broken[0]].ID.String(), first.EventID)
			}
			require.Equal(t, rep.TotalEvents-int64(len(tc.broken)), rep.VerifiedEvents)
		})
	}
}

func TestVerifyChainSameSecond(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	ts := time.Now().Add(-time.Minute).Truncate(time.Second)
	var evs []*audit.Event
	for i := range 200 {
		evs = append(evs, request(t, "rr-same-second", ts, fmt.Sprintf(`{"i":%d}`, i)))
	}
	// In several commits, so the chain crosses transactions.
	for i := 0; i < len(evs); i += 37 {
		e.write(evs[i:min(i+37, len(evs))]...)
	}
	rep := e.verify("rr-same-second")
	require.True(t, rep.IsValid, "%+v", rep)
	require.Equal(t, int64(200), rep.TotalEvents)
}

func TestConcurrentWritersMakeOneChain(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pipe := ingest.New(e.st, nil, ingest.Options{Writers: 4, MaxBatch: 500}, nil, log)
	require.NoError(t, pipe.Start(context.Background()))
	defer pipe.Stop(context.Background())
	const writers, each = 100, 100
	corr := "rr-concurrent"
	base := time.Now().Add(-time.Minute)
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				ev := request(t, corr, base.Add(time.Duration(i)*time.Millisecond), fmt.Sprintf(`{"writer":%d,"i":%d}`, w, i))
				if _, err := pipe.Submit(context.Background(), []*audit.Event{ev}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	rep := e.verify(corr)
	require.True(t, rep.IsValid, "%s", rep.Message)
	require.Equal(t, int64(writers*each), rep.TotalEvents)

	var n, lo, hi, distinct int64
	require.NoError(t, e.st.Pool().QueryRow(context.Background(), `SELECT count(*), min(chain_seq), max(chain_seq),
		count(DISTINCT chain_seq) FROM audit_events WHERE correlation_id = $1`, corr).Scan(&n, &lo, &hi, &distinct))
	require.Equal(t, []int64{writers * each, 1, writers * each, writers * each}, []int64{n, lo, hi, distinct})
}

func TestExportVerifiesOffline(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	a := chainOf(e, "rr-a", 4)
	chainOf(e, "rr-b", 3)
	for _, format := range []string{integrity.FormatJSON, integrity.FormatNDJSON} {
		t.Run(format, func(t *testing.T) {
			body := e.export(integrity.ExportRequest{Format: format, ExportedBy: "auditor"})
			rep, err := integrity.VerifyExport(bytes.NewReader(body), e.signer.PublicKey(), e.hasher)
			require.NoError(t, err)
			require.True(t, rep.OK(), "%+v", rep)
			require.Equal(t, int64(7), rep.Events)
			require.Equal(t, int64(2), rep.Chains)
			require.Equal(t, format, rep.Format)
			require.Equal(t, "auditor", rep.Metadata.ExportedBy)

			// Another key does not verify it.
			other, err := integrity.GenerateSigner()
			require.NoError(t, err)
			rep, err = integrity.VerifyExport(bytes.NewReader(body), other.PublicKey(), e.hasher)
			require.NoError(t, err)
			require.False(t, rep.OK())
			require.True(t, rep.KeyMismatch)

			// One byte changed inside an event breaks the signature and
			// names the event.
			i := bytes.Index(body, []byte(`"i":2`))
			require.Positive(t, i)
			changed := bytes.Clone(body)
			changed[i+4] = '7'
			rep, err = integrity.VerifyExport(bytes.NewReader(changed), e.signer.PublicKey(), e.hasher)
			require.NoError(t, err)
			require.False(t, rep.SignatureValid)
			require.Equal(t, int64(1), rep.BrokenCount)
			require.Equal(t, a[2].ID.String(), rep.Broken[0].EventID)

			// A cut-short export has no signature.
			cut := body[:len(body)/2]
			if format == integrity.FormatNDJSON {
				cut = body[:bytes.LastIndexByte(body[:len(body)-1], '\n')+1]
			}
			rep, err = integrity.VerifyExport(bytes.NewReader(cut), e.signer.PublicKey(), e.hasher)
			if err == nil {
				require.False(t, rep.OK())
			}
		})
	}
}

func (e *env) export(req integrity.ExportRequest) []byte {
	e.t.Helper()
	ctx := context.Background()
	x, err := e.svc.OpenExport(ctx, req)
	require.NoError(e.t, err)
	defer x.Close(ctx)
	var buf bytes.Buffer
	batches := 0
	require.NoError(e.t, x.Stream(ctx, &buf, func() error { batches++; return nil }))
	require.Positive(e.t, batches)
	return buf.Bytes()
}

func TestExportNamesTamperedEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	evs := chainOf(e, "rr-export-tamper", 6)
	e.tamper(`UPDATE audit_events SET event_data = '{"i":"forged"}' WHERE event_id = $1`, evs[4].ID)
	body := e.export(integrity.ExportRequest{Format: integrity.FormatJSON})
	var doc struct {
		Events                []map[string]any       `json:"events"`
		HashChainVerification integrity.ChainSummary `json:"hash_chain_verification"`
	}
	require.NoError(t, json.Unmarshal(body, &doc))
	require.Len(t, doc.Events, 6)
	v := doc.HashChainVerification
	require.Equal(t, []string{evs[4].ID.String()}, v.TamperedEventIDs)
	require.Equal(t, int64(6), v.TotalEventsVerified)
	require.Equal(t, int64(5), v.ValidChainEvents)
	require.Equal(t, int64(1), v.BrokenChainEvents)
	require.InDelta(t, 83.33, v.ChainIntegrityPercentage, 0.001)

	// The signature is over what was exported: it verifies, and the chain
	// check names the same event offline.
	rep, err := integrity.VerifyExport(bytes.NewReader(body), e.signer.PublicKey(), e.hasher)
	require.NoError(t, err)
	require.True(t, rep.SignatureValid)
	require.Equal(t, int64(1), rep.BrokenCount)
	require.Equal(t, evs[4].ID.String(), rep.Broken[0].EventID)

	// A filtered export starts chains mid-way and skips links: still valid.
	body = e.export(integrity.ExportRequest{Format: integrity.FormatNDJSON, Filter: integrity.ExportFilter{Offset: 1, Limit: 3}})
	rep, err = integrity.VerifyExport(bytes.NewReader(body), e.signer.PublicKey(), e.hasher)
	require.NoError(t, err)
	require.True(t, rep.OK(), "%+v", rep)
	require.Equal(t, int64(3), rep.Events)
}
