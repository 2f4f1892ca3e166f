package archive

import (
	"cmp"
	"container/list"
	"context"
	"crypto/ed25519"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/parquet-go/parquet-go"

	"kubernaut.ai/datastorage/internal/audit"
)

// Restore loads an archived month back into a partition: the archive is
// verified first (a tampered archive is refused), then its events are
// inserted, those still present skipped. It returns how many it inserted.
func (a *Archiver) Restore(ctx context.Context, month time.Time) (int64, error) {
	if err := a.notRemoved(ctx, month); err != nil {
		return 0, err
	}
	m, err := a.Verify(ctx, month)
	if err != nil {
		return 0, fmt.Errorf("archive: restore %s: %w", MonthString(month), err)
	}
	s, leader, err := a.Source.OpenArchive(ctx)
	if err != nil {
		return 0, fmt.Errorf("archive: %w", err)
	}
	if !leader {
		return 0, fmt.Errorf("archive: another replica is running the archive job; try again when it is done")
	}
	defer s.Close(ctx)
	n, err := s.Restore(ctx, month, func(yield func(*audit.Event) error) error {
		for _, f := range m.Files {
			obj, err := a.Objects.Open(ctx, f.Key)
			if err != nil {
				return err
			}
			_, err = EachRow(obj, obj.Size(), func(r *Row) error {
				e, err := r.Event()
				if err != nil {
					return err
				}
				return yield(&e)
			})
			obj.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", f.Key, err)
			}
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("archive: restore %s: %w", MonthString(month), err)
	}
	return n, nil
}

// Reader answers reads of archived correlations. Manifests are read once
// and their file lists kept (an archived month's manifest does not change;
// a record with another manifest digest is read again); a lookup opens
// only the files whose first..last correlation_id range holds the
// correlation, and in them reads only the row groups whose correlation_id
// statistics can hold it.
type Reader struct {
	Source  Source
	Objects Objects
	// PublicKey verifies the manifests: a manifest that does not verify is
	// not used.
	PublicKey ed25519.PublicKey
	// MaxOpenFiles bounds the files kept open with their Parquet footer
	// parsed (0 means 32). Parsing a footer is most of a cold lookup's
	// time: a file of 4 M rows has 2,048 row groups of 34 columns.
	MaxOpenFiles int
	// Holds, when set, shows a correlation's active legal hold on its
	// archived events (holds.go).
	Holds HoldLookup

	mu        sync.Mutex
	manifests map[time.Time]*cachedManifest
	files     map[string]*openFile
	lru       list.List // of *openFile, most recently used first
}

// openFile is a file kept open with its footer parsed. It is keyed by its
// key and the SHA-256 the verified manifest gives it, so a month written
// again (another manifest, other digests) is opened again, never served
// from a stale footer.
type openFile struct {
	id      string
	obj     Object
	f       *parquet.File
	col     int
	refs    int
	evicted bool
	elem    *list.Element
}

type cachedManifest struct {
	sha string
	m   *Manifest
}

// ArchivedMonths returns the months whose partition was dropped, in order.
func (r *Reader) ArchivedMonths(ctx context.Context) ([]time.Time, error) {
	recs, err := r.Source.ArchiveRecords(ctx)
	if err != nil {
		return nil, err
	}
	var out []time.Time
	for _, rec := range recs {
		if rec.Status == StatusDropped {
			out = append(out, rec.Month)
		}
	}
	return out, nil
}

func (r *Reader) manifest(ctx context.Context, rec Record) (*Manifest, error) {
	r.mu.Lock()
	c, ok := r.manifests[rec.Month]
	r.mu.Unlock()
	if ok && c.sha == rec.ManifestSHA256 {
		return c.m, nil
	}
	m, err := recordedManifest(ctx, r.Objects, rec.ManifestKey, rec.ManifestSHA256, r.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("archive: %s: %w", MonthString(rec.Month), err)
	}
	// Only the files are kept: the correlation list of a month at 1 M
	// events a day is hundreds of thousands of entries, and a lookup finds
	// its file by the files' first and last correlation_id instead.
	m = &Manifest{Month: m.Month, Files: m.Files}
	r.mu.Lock()
	if r.manifests == nil {
		r.manifests = map[time.Time]*cachedManifest{}
	}
	r.manifests[rec.Month] = &cachedManifest{sha: rec.ManifestSHA256, m: m}
	r.mu.Unlock()
	return m, nil
}

// Correlation returns the archived events of a correlation, in chain
// order, with what the lookup read. Months are searched through their
// manifests; only the files and row groups that can hold the correlation
// are read.
func (r *Reader) Correlation(ctx context.Context, id string) ([]audit.Event, ScanStats, error) {
	var stats ScanStats
	recs, err := r.Source.ArchiveRecords(ctx)
	if err != nil {
		return nil, stats, fmt.Errorf("archive: records: %w", err)
	}
	var out []audit.Event
	for _, rec := range recs {
		if rec.Status != StatusDropped {
			continue
		}
		m, err := r.manifest(ctx, rec)
		if err != nil {
			return nil, stats, err
		}
		for _, f := range m.Files {
			if id < f.First || id > f.Last {
				continue
			}
			of, err := r.open(ctx, f)
			if err != nil {
				return nil, stats, fmt.Errorf("archive: %s: %w", f.Key, err)
			}
			events, err := readCorrelation(of.f, of.col, id, &stats)
			r.release(of)
			if err != nil {
				return nil, stats, fmt.Errorf("archive: %s: %w", f.Key, err)
			}
			out = append(out, events...)
		}
	}
	slices.SortFunc(out, func(a, b audit.Event) int { return cmp.Compare(a.ChainSeq, b.ChainSeq) })
	if err := r.markHeld(ctx, id, out); err != nil {
		return nil, stats, fmt.Errorf("archive: hold of %q: %w", id, err)
	}
	return out, stats, nil
}

// open returns the file from the cache, or opens it and parses its footer.
func (r *Reader) open(ctx context.Context, f File) (*openFile, error) {
	id := f.Key + "@" + f.SHA256
	r.mu.Lock()
	if of, ok := r.files[id]; ok {
		of.refs++
		r.lru.MoveToFront(of.elem)
		r.mu.Unlock()
		return of, nil
	}
	r.mu.Unlock()
	// Two lookups may open the same file at once; the second one's copy
	// is used once and closed.
	obj, err := r.Objects.Open(ctx, f.Key)
	if err != nil {
		return nil, err
	}
	pf, err := openParquet(obj, obj.Size())
	if err != nil {
		obj.Close()
		return nil, err
	}
	col, err := columnIndex(pf, correlationColumn)
	if err != nil {
		obj.Close()
		return nil, err
	}
	of := &openFile{id: id, obj: obj, f: pf, col: col, refs: 1}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.files[id]; ok {
		of.evicted = true
		return of, nil
	}
	if r.files == nil {
		r.files = map[string]*openFile{}
	}
	r.files[id] = of
	of.elem = r.lru.PushFront(of)
	limit := r.MaxOpenFiles
	if limit <= 0 {
		limit = 32
	}
	for r.lru.Len() > limit {
		old := r.lru.Remove(r.lru.Back()).(*openFile)
		delete(r.files, old.id)
		old.evicted = true
		if old.refs == 0 {
			old.obj.Close()
		}
	}
	return of, nil
}

// release ends a use of an open file; an evicted one is closed by its last
// user.
func (r *Reader) release(of *openFile) {
	r.mu.Lock()
	defer r.mu.Unlock()
	of.refs--
	if of.refs == 0 && of.evicted {
		of.obj.Close()
	}
}

// MonthsIn returns the archived (dropped) months that overlap [from, to).
func (r *Reader) MonthsIn(ctx context.Context, from, to time.Time) ([]string, error) {
	months, err := r.ArchivedMonths(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range months {
		if m.Before(to) && m.AddDate(0, 1, 0).After(from) {
			out = append(out, MonthString(m))
		}
	}
	return out, nil
}

// CorrelationEvents is Correlation without the statistics (query.Archive).
func (r *Reader) CorrelationEvents(ctx context.Context, id string) ([]audit.Event, error) {
	events, _, err := r.Correlation(ctx, id)
	return events, err
}
