package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"
)

// statusWriter remembers what the handler sent, for logs, metrics and the
// panic handler (which may only write a problem if nothing was sent yet).
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer (flush, deadlines).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type ctxKey int

const requestIDKey ctxKey = iota

// RequestID returns the request id of ctx, if the request passed through the
// API's middleware.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// requestID accepts a sane client X-Request-ID (so a trace crosses services)
// and otherwise makes one; either way it is echoed on the response.
func requestID(r *http.Request) string {
	id := r.Header.Get("X-Request-ID")
	if id != "" && len(id) <= 128 && printable(id) {
		return id
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// instrument wraps the whole API: request id, deadline, panic recovery, one
// log line and metrics per request.
func (a *API) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := requestID(r)
		// The canonical form of X-Request-ID, set directly: Set would
		// allocate the canonical key anew on every request.
		w.Header()["X-Request-Id"] = []string{id}
		ctx, cancel := context.WithTimeout(context.WithValue(r.Context(), requestIDKey, id), a.requestTimeout)
		defer cancel()
		r = r.WithContext(ctx)
		sw := &statusWriter{ResponseWriter: w}

		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				a.log.Error("panic while serving request", "request_id", id, "panic", v, "stack", string(debug.Stack()))
				if sw.status == 0 {
					writeProblem(sw, r, kindInternal, "the server hit an unexpected error; it has been logged with request id "+id, nil)
				}
			}
			route := r.Pattern
			if route == "" {
				route = "unmatched"
			}
			elapsed := time.Since(start)
			a.metrics.observe(route, r.Method, sw.status, elapsed)
			level := slog.LevelInfo
			if sw.status >= 500 {
				level = slog.LevelError
			}
			if !a.log.Enabled(ctx, level) {
				return // production logs at warn: no line per request to build
			}
			a.log.LogAttrs(ctx, level, "request",
				slog.String("request_id", id),
				slog.String("method", r.Method),
				slog.String("path", clip(r.URL.Path, 1024)),
				slog.String("route", route),
				slog.Int("status", sw.status),
				slog.Int64("bytes", sw.bytes),
				slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000),
				slog.String("remote", r.RemoteAddr),
			)
		}()
		if framingConflict(r) {
			// Refused before anything reads the body, and the connection
			// is closed: what follows on it cannot be trusted to be framed
			// as the client (or a proxy) meant.
			sw.Header().Set("Connection", "close")
			writeProblem(sw, r, kindValidation, "the request has both Content-Length and Transfer-Encoding; send one",
				map[string]string{"Transfer-Encoding": "must not be combined with Content-Length"})
			return
		}
		next.ServeHTTP(sw, r)
	})
}

// routeProblems turns the mux's own plain-text 404 and 405 answers into
// problems. The mux reports them with an empty pattern; their handler is run
// against a recorder only to learn the status and the Allow header.
func routeProblems(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Pattern != "" {
			// guard matched the route already (and set the pattern):
			// no second match to learn what it knows.
			mux.ServeHTTP(w, r)
			return
		}
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		rec := &headerRecorder{header: http.Header{}}
		h.ServeHTTP(rec, r)
		switch rec.status {
		case http.StatusMethodNotAllowed:
			allow := rec.header.Get("Allow")
			if r.URL.Path == batchPath {
				// The mux also counts "GET /events/{event_id}" as a match.
				allow = http.MethodPost
			}
			w.Header().Set("Allow", allow)
			writeProblem(w, r, kindMethodNotAllowed, "method "+clip(r.Method, 20)+" is not allowed on "+clip(r.URL.Path, maxEcho)+"; allowed: "+allow, nil)
		case http.StatusNotFound, 0:
			writeProblem(w, r, kindNotFound, "no such endpoint: "+clip(r.URL.Path, maxEcho), nil)
		default:
			// A redirect (e.g. path cleaning) is not an error: replay it for real.
			for k, v := range rec.header {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.status)
		}
	})
}

// headerRecorder captures a status and headers, dropping the body.
type headerRecorder struct {
	header http.Header
	status int
}

func (h *headerRecorder) Header() http.Header { return h.header }

func (h *headerRecorder) Write(b []byte) (int, error) {
	if h.status == 0 {
		h.status = http.StatusOK
	}
	return len(b), nil
}

func (h *headerRecorder) WriteHeader(code int) {
	if h.status == 0 {
		h.status = code
	}
}
