package auth

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultReloadInterval is how often, at most, a watched file is looked at
// again when ReloadOptions leaves the interval zero.
const DefaultReloadInterval = 2 * time.Second

// ReloadOptions tune how a file-backed Static or CertReloader notices that
// its files changed.
type ReloadOptions struct {
	// Interval is the least time between two looks at the files; zero means
	// DefaultReloadInterval. The files are only looked at when they are
	// needed (a request, a TLS handshake), never by a background goroutine.
	Interval time.Duration
	// Log receives reload successes and failures; nil discards them.
	Log *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Metrics, when set, counts failed reloads and says whether the last
	// look at the files loaded them (or found them unchanged); nil leaves
	// the failures to the log alone.
	Metrics *ReloadMetrics
}

// ReloadMetrics are the metrics of the file-backed Static and CertReloader.
// A file that cannot be reloaded keeps the last good contents in force, so
// serving goes on with tokens or a certificate that may already have been
// revoked or rotated: the operator must hear of it, not only the log.
type ReloadMetrics struct {
	errors  *prometheus.CounterVec
	failing *prometheus.GaugeVec
}

// NewReloadMetrics registers the reload metrics with reg (nil: unregistered).
func NewReloadMetrics(reg prometheus.Registerer) *ReloadMetrics {
	m := &ReloadMetrics{
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "datastorage_auth_file_reload_errors_total",
			Help: "Failed reloads of a watched file (file: token_file, tls_certificate): unreadable, deleted or invalid; the last good contents stay in force.",
		}, []string{"file"}),
		failing: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "datastorage_auth_file_reload_failing",
			Help: "1 when the last look at a watched file (file: token_file, tls_certificate) failed and older contents are in force, else 0 (also for a file not in use).",
		}, []string{"file"}),
	}
	// Both series exist from the start, at 0, whatever is configured: an
	// alert on them needs no absent() and sees the first failure.
	for _, f := range []string{"token_file", "tls_certificate"} {
		m.errors.WithLabelValues(f)
		m.failing.WithLabelValues(f)
	}
	if reg != nil {
		reg.MustRegister(m.errors, m.failing)
	}
	return m
}

// result records the outcome of one look at the files named by label.
func (m *ReloadMetrics) result(label string, err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.errors.WithLabelValues(label).Inc()
		m.failing.WithLabelValues(label).Set(1)
		return
	}
	m.failing.WithLabelValues(label).Set(0)
}

func (o ReloadOptions) withDefaults() ReloadOptions {
	if o.Interval <= 0 {
		o.Interval = DefaultReloadInterval
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// watchedFiles re-reads a set of small files at most once per interval and
// hands their contents to load when they differ from the last contents
// loaded.
//
// Change is detected by hashing the contents, not by modification times:
// the files are a few kilobytes, reading them every few seconds costs
// nothing, and a hash cannot miss a rewrite that lands within the
// filesystem's timestamp granularity, or a Kubernetes Secret volume swapping
// its ..data symlink to files with older times. No fsnotify dependency is
// needed either.
//
// A failed read or load keeps what was loaded before (a file half-written by
// a non-atomic rotation must not lock everybody out); it is logged once per
// distinct content and retried at the next interval.
type watchedFiles struct {
	what  string // for logs: "token file", "TLS certificate"
	label string // for metrics: "token_file", "tls_certificate"
	paths []string
	opts  ReloadOptions
	load  func(contents [][]byte) error

	next atomic.Int64 // unix nanoseconds before which no look is due
	mu   sync.Mutex   // held by the one goroutine looking
	sum  [sha256.Size]byte
	bad  string // the last failure logged, so that it is logged once
}

func newWatchedFiles(what, label string, paths []string, opts ReloadOptions, load func([][]byte) error) *watchedFiles {
	return &watchedFiles{what: what, label: label, paths: paths, opts: opts.withDefaults(), load: load}
}

// initial reads and loads the files; an error here stops the start.
func (w *watchedFiles) initial() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	contents, sum, err := w.read()
	if err != nil {
		return err
	}
	if err := w.load(contents); err != nil {
		return err
	}
	w.sum = sum
	w.opts.Metrics.result(w.label, nil)
	w.next.Store(w.opts.Now().Add(w.opts.Interval).UnixNano())
	return nil
}

// maybeReload looks at the files if the interval has passed. It never
// blocks: when another goroutine is already looking, it returns at once and
// the caller goes on with what is loaded.
func (w *watchedFiles) maybeReload() {
	if w.opts.Now().UnixNano() < w.next.Load() {
		return
	}
	if !w.mu.TryLock() {
		return
	}
	defer w.mu.Unlock()
	_, _ = w.reloadLocked()
}

// reload looks at the files now. It reports whether new contents were
// loaded, and the error when they could not be.
func (w *watchedFiles) reload() (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.reloadLocked()
}

func (w *watchedFiles) reloadLocked() (bool, error) {
	changed, err := w.lookLocked()
	w.opts.Metrics.result(w.label, err)
	return changed, err
}

func (w *watchedFiles) lookLocked() (bool, error) {
	w.next.Store(w.opts.Now().Add(w.opts.Interval).UnixNano())
	contents, sum, err := w.read()
	if err != nil {
		// A vanished or unreadable file keeps the last good contents.
		w.logFailure(sum, err)
		return false, err
	}
	if sum == w.sum {
		return false, nil
	}
	if err := w.load(contents); err != nil {
		w.logFailure(sum, err)
		return false, err
	}
	w.sum, w.bad = sum, ""
	w.opts.Log.Info(w.what+" reloaded", "files", w.paths)
	return true, nil
}

func (w *watchedFiles) logFailure(sum [sha256.Size]byte, err error) {
	key := string(sum[:]) + err.Error()
	if key == w.bad {
		return
	}
	w.bad = key
	w.opts.Log.Error(w.what+" could not be reloaded; keeping the previous one", "files", w.paths, "error", err)
}

// read returns the contents of every file and one hash over all of them.
func (w *watchedFiles) read() ([][]byte, [sha256.Size]byte, error) {
	h := sha256.New()
	contents := make([][]byte, len(w.paths))
	var errs []error
	for i, p := range w.paths {
		b, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		contents[i] = b
		fmt.Fprintf(h, "%d:", len(b))
		h.Write(b)
	}
	var sum [sha256.Size]byte
	if len(errs) > 0 {
		return nil, sum, errors.Join(errs...)
	}
	h.Sum(sum[:0])
	return contents, sum, nil
}
