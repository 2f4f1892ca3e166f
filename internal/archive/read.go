package archive

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"
	"time"

	"kubernaut.ai/datastorage/internal/audit"
)

// Restore loads an archived month back into a partition: the archive is
// verified first (a tampered archive is refused), then its events are
// inserted, those still present skipped. It returns how many it inserted.
func (a *Archiver) Restore(ctx context.Context, month time.Time) (int64, error) {
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

	mu        sync.Mutex
	manifests map[time.Time]*cachedManifest
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
	obj, err := r.Objects.Open(ctx, rec.ManifestKey)
	if err != nil {
		return nil, fmt.Errorf("archive: manifest of %s: %w", MonthString(rec.Month), err)
	}
	defer obj.Close()
	b := make([]byte, obj.Size())
	if _, err := obj.ReadAt(b, 0); err != nil {
		return nil, fmt.Errorf("archive: manifest of %s: %w", MonthString(rec.Month), err)
	}
	sum := sha256.Sum256(b)
	if hex.EncodeToString(sum[:]) != rec.ManifestSHA256 {
		return nil, fmt.Errorf("archive: manifest of %s differs from the one recorded: it was changed", MonthString(rec.Month))
	}
	m, err := ParseManifest(b, r.PublicKey)
	if err != nil {
		return nil, err
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
			obj, err := r.Objects.Open(ctx, f.Key)
			if err != nil {
				return nil, stats, fmt.Errorf("archive: %s: %w", f.Key, err)
			}
			events, err := readCorrelation(obj, obj.Size(), id, &stats)
			obj.Close()
			if err != nil {
				return nil, stats, fmt.Errorf("archive: %s: %w", f.Key, err)
			}
			out = append(out, events...)
		}
	}
	slices.SortFunc(out, func(a, b audit.Event) int { return cmp.Compare(a.ChainSeq, b.ChainSeq) })
	return out, stats, nil
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
