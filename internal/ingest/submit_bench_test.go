package ingest

import (
	"context"
	"log/slog"
	"testing"

	"kubernaut.ai/datastorage/internal/audit"
)

// instantStore commits everything at once and records nothing: what the
// benchmark measures is the pipeline's own work per request.
type instantStore struct{}

func (instantStore) InsertEvents(_ context.Context, events []*audit.Event) (int64, error) {
	return int64(len(events)), nil
}

func (instantStore) ResolveParents(context.Context, []*audit.Event) error { return nil }

// BenchmarkSubmitLone is one lone event submitted to an idle pipeline (a
// quiet cluster): the caller commits it in its own goroutine (takeIdle).
// Its allocations per op are the pipeline's per lone event.
func BenchmarkSubmitLone(b *testing.B) {
	p := New(instantStore{}, nil, Options{Writers: 2}, NewMetrics(nil), slog.New(slog.DiscardHandler))
	if err := p.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = p.Stop(context.Background()) })
	events := newEvents(1, "rr-bench")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if o, err := p.Submit(ctx, events); err != nil || o != Committed {
			b.Fatal(o, err)
		}
	}
}
