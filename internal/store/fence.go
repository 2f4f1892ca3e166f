package store

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// fencedConns drops the connections of a primary that turned read-only.
//
// In a switchover the old primary is fenced (default_transaction_read_only,
// or restarted as a hot standby) while the standby is promoted. A pooled
// connection opened before stays open and every write on it fails with
// SQLSTATE 25006; the pool would hand it out again and again, and the
// service would spool forever while a writable primary waits under the
// next host of database.url. So a connection that answered 25006 once is
// destroyed when released instead of going back to the pool: the next
// connection is dialled anew, and target_session_attrs=read-write makes
// pgx skip the read-only host and find the new primary.
//
// The statement that failed has already been classified Unavailable
// (errors.go), so its events were spooled; only the connection goes.
type fencedConns struct {
	mu    sync.Mutex
	conns map[*pgx.Conn]struct{}
}

func newFencedConns() *fencedConns { return &fencedConns{conns: map[*pgx.Conn]struct{}{}} }

// install wraps cfg's tracer to watch for 25006 and, at release, close the
// connections it saw: the pool destroys a closed connection instead of
// keeping it. (pgxpool's AfterRelease hook could refuse it too, but costs a
// goroutine on every release; the release tracer runs in line.)
func (f *fencedConns) install(cfg *pgxpool.Config) {
	cfg.ConnConfig.Tracer = &fenceTracer{next: cfg.ConnConfig.Tracer, f: f}
}

func (f *fencedConns) mark(c *pgx.Conn, err error) {
	var pgErr *pgconn.PgError
	if c == nil || !errors.As(err, &pgErr) || pgErr.Code != "25006" {
		return
	}
	f.mu.Lock()
	f.conns[c] = struct{}{}
	f.mu.Unlock()
}

// take reports whether c was marked, and forgets it.
func (f *fencedConns) take(c *pgx.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.conns[c]
	delete(f.conns, c)
	return ok
}

// fenceTracer sees the end of every statement, batch and copy, marks the
// connections that answered 25006, and passes everything on to next (the
// benchmark's tracer), if any.
type fenceTracer struct {
	next pgx.QueryTracer
	f    *fencedConns
}

// TraceRelease closes a connection that answered 25006; pgxpool then
// destroys it instead of returning it to the pool.
func (t *fenceTracer) TraceRelease(p *pgxpool.Pool, d pgxpool.TraceReleaseData) {
	if rt, ok := t.next.(pgxpool.ReleaseTracer); ok {
		rt.TraceRelease(p, d)
	}
	if !t.f.take(d.Conn) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = d.Conn.Close(ctx)
}

func (t *fenceTracer) TraceQueryStart(ctx context.Context, c *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if t.next != nil {
		return t.next.TraceQueryStart(ctx, c, d)
	}
	return ctx
}

func (t *fenceTracer) TraceQueryEnd(ctx context.Context, c *pgx.Conn, d pgx.TraceQueryEndData) {
	t.f.mark(c, d.Err)
	if t.next != nil {
		t.next.TraceQueryEnd(ctx, c, d)
	}
}

func (t *fenceTracer) TraceBatchStart(ctx context.Context, c *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	if bt, ok := t.next.(pgx.BatchTracer); ok {
		return bt.TraceBatchStart(ctx, c, d)
	}
	return ctx
}

func (t *fenceTracer) TraceBatchQuery(ctx context.Context, c *pgx.Conn, d pgx.TraceBatchQueryData) {
	t.f.mark(c, d.Err)
	if bt, ok := t.next.(pgx.BatchTracer); ok {
		bt.TraceBatchQuery(ctx, c, d)
	}
}

func (t *fenceTracer) TraceBatchEnd(ctx context.Context, c *pgx.Conn, d pgx.TraceBatchEndData) {
	t.f.mark(c, d.Err)
	if bt, ok := t.next.(pgx.BatchTracer); ok {
		bt.TraceBatchEnd(ctx, c, d)
	}
}

func (t *fenceTracer) TraceCopyFromStart(ctx context.Context, c *pgx.Conn, d pgx.TraceCopyFromStartData) context.Context {
	if ct, ok := t.next.(pgx.CopyFromTracer); ok {
		return ct.TraceCopyFromStart(ctx, c, d)
	}
	return ctx
}

func (t *fenceTracer) TraceCopyFromEnd(ctx context.Context, c *pgx.Conn, d pgx.TraceCopyFromEndData) {
	t.f.mark(c, d.Err)
	if ct, ok := t.next.(pgx.CopyFromTracer); ok {
		ct.TraceCopyFromEnd(ctx, c, d)
	}
}
