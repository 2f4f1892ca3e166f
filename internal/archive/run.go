package archive

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"slices"
	"time"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/integrity"
)

// Steps after which Options.AfterStep is called: the points where a crash
// leaves a distinct state (the crash tests kill the process at each).
const (
	StepWritten  = "written"  // files and manifest are in the target
	StepVerified = "verified" // they were read back and match PostgreSQL
	StepRecorded = "recorded" // audit_archives says verified
	StepDropped  = "dropped"  // the partition is gone
)

// Options configure an Archiver.
type Options struct {
	// After is how old a month's last day must be to be archived.
	After time.Duration
	// Target names the target in records and logs (its URL).
	Target string
	// RowsPerGroup and RowsPerFile size the Parquet files; 0 means 2048
	// and 4,194,304.
	RowsPerGroup int
	RowsPerFile  int64
	// TempDir holds a file while it is written (the store needs its size
	// before the upload); "" means os.TempDir.
	TempDir string
	// AfterStep, when set, is called after each step with its name; the
	// crash tests use it to kill the process there.
	AfterStep func(step string, month time.Time)
	Log       *slog.Logger
}

// Archiver archives months, verifies and restores them.
type Archiver struct {
	Source  Source
	Objects Objects
	Signer  *integrity.Signer
	Hasher  audit.Hasher
	Options Options
}

// MonthReport is what a run did with one month.
type MonthReport struct {
	Month   string
	Action  string // archived, skipped, resumed
	Events  int64
	Bytes   int64
	Dropped bool
	Note    string
}

// Report is a run's outcome.
type Report struct {
	// Skipped is true when another replica holds the archive lock.
	Skipped bool
	Months  []MonthReport
}

func (a *Archiver) log() *slog.Logger {
	if a.Options.Log != nil {
		return a.Options.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (a *Archiver) step(name string, month time.Time) {
	a.log().Info("archive step done", "step", name, "month", MonthString(month))
	if a.Options.AfterStep != nil {
		a.Options.AfterStep(name, month)
	}
}

// MonthPrefix is the key prefix of a month's objects: Hive-style, so
// DuckDB's read_parquet(..., hive_partitioning = true) adds a month column.
func MonthPrefix(month time.Time) string {
	return "audit_events/month=" + MonthString(month) + "/"
}

// ManifestKey is the key of a month's manifest. It does not end in
// .parquet, so a glob over *.parquet reads the data files only.
func ManifestKey(month time.Time) string { return MonthPrefix(month) + "manifest.json" }

func partKey(month time.Time, i int) string {
	return fmt.Sprintf("%spart-%05d.parquet", MonthPrefix(month), i)
}

// Due lists the months the job would archive today: attached, whose last
// day is older than After, not restored on purpose.
func (a *Archiver) due(ctx context.Context, s Session) ([]time.Time, map[time.Time]Record, error) {
	today, err := s.Today(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("archive: today: %w", err)
	}
	months, err := s.Months(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("archive: months: %w", err)
	}
	records, err := a.records(ctx)
	if err != nil {
		return nil, nil, err
	}
	cutoff := today.Add(-a.Options.After)
	var due []time.Time
	for _, m := range months {
		end := m.AddDate(0, 1, 0) // the day after the month's last day
		if !end.After(cutoff) {
			if r, ok := records[m]; ok && r.Status == StatusRestored {
				continue
			}
			due = append(due, m)
		}
	}
	return due, records, nil
}

func (a *Archiver) records(ctx context.Context) (map[time.Time]Record, error) {
	list, err := a.Source.ArchiveRecords(ctx)
	if err != nil {
		return nil, fmt.Errorf("archive: records: %w", err)
	}
	out := make(map[time.Time]Record, len(list))
	for _, r := range list {
		out[r.Month.UTC()] = r
	}
	return out, nil
}

// Run archives every due month (or only month, when it is not zero, due or
// not), one at a time, oldest first.
func (a *Archiver) Run(ctx context.Context, month time.Time) (Report, error) {
	s, leader, err := a.Source.OpenArchive(ctx)
	if err != nil {
		return Report{}, fmt.Errorf("archive: %w", err)
	}
	if !leader {
		return Report{Skipped: true}, nil
	}
	defer s.Close(ctx)
	due, records, err := a.due(ctx, s)
	if err != nil {
		return Report{}, err
	}
	if !month.IsZero() {
		months, err := s.Months(ctx)
		if err != nil {
			return Report{}, fmt.Errorf("archive: months: %w", err)
		}
		if !slices.Contains(months, month) {
			return Report{}, fmt.Errorf("archive: month %s has no partition", MonthString(month))
		}
		due = []time.Time{month}
	}
	var rep Report
	for _, m := range due {
		mr, err := a.archiveMonth(ctx, s, m, records[m])
		rep.Months = append(rep.Months, mr)
		if err != nil {
			return rep, fmt.Errorf("archive: month %s: %w", MonthString(m), err)
		}
	}
	return rep, nil
}

// archiveMonth takes one month through the steps. Every step is safe to
// repeat: files are overwritten under the same keys, the record is
// upserted, and the partition goes only in the transaction that checks it
// against the verified manifest.
func (a *Archiver) archiveMonth(ctx context.Context, s Session, month time.Time, rec Record) (MonthReport, error) {
	mr := MonthReport{Month: MonthString(month)}
	held, refs, err := s.Blockers(ctx, month)
	if err != nil {
		return mr, err
	}
	if held > 0 || refs > 0 {
		// Decision (docs/archive.md): a month with held events or with
		// events that later months point to stays whole in PostgreSQL; it is
		// archived by a later run once the hold is released.
		mr.Action, mr.Note = "skipped", fmt.Sprintf("%d held events, %d references from other months", held, refs)
		a.log().Warn("archive: month kept in PostgreSQL", "month", mr.Month, "held", held, "referenced", refs)
		return mr, nil
	}
	var m *Manifest
	if rec.Status == StatusVerified || rec.Status == StatusDropped {
		// A run stopped after the record: check what it recorded and go on.
		mr.Action = "resumed"
		if m, err = a.Verify(ctx, month); err != nil {
			a.log().Warn("archive: the recorded archive does not verify; writing it again", "month", mr.Month, "error", err)
			m = nil
		}
	}
	if m != nil {
		pg := NewDigest()
		if err := s.EachHash(ctx, month, pg.Add); err != nil {
			return mr, fmt.Errorf("digest of PostgreSQL: %w", err)
		}
		if err := m.matches(pg); err != nil {
			a.log().Warn("archive: the month changed since it was archived; writing it again", "month", mr.Month, "error", err)
			m = nil
		}
	}
	if m == nil {
		mr.Action = "archived"
		// What was written is read back from the target below, not trusted.
		if _, err := a.write(ctx, s, month); err != nil {
			return mr, err
		}
		a.step(StepWritten, month)
		if m, err = a.Verify(ctx, month); err != nil {
			return mr, fmt.Errorf("reading the archive back: %w", err)
		}
	}
	pg := NewDigest()
	if err := s.EachHash(ctx, month, pg.Add); err != nil {
		return mr, fmt.Errorf("digest of PostgreSQL: %w", err)
	}
	if err := m.matches(pg); err != nil {
		return mr, err
	}
	a.step(StepVerified, month)
	mb, size, err := a.manifestBytes(ctx, month)
	if err != nil {
		return mr, err
	}
	sum := sha256.Sum256(mb)
	var total int64
	for _, f := range m.Files {
		total += f.Bytes
	}
	mr.Events, mr.Bytes = m.Events, total+size
	if err := s.SaveRecord(ctx, Record{
		Month: month, Status: StatusVerified, Target: a.Options.Target, ManifestKey: ManifestKey(month),
		ManifestSHA256: hex.EncodeToString(sum[:]), Events: m.Events, Bytes: mr.Bytes,
		EventsDigest: m.EventsDigest, ArchivedAt: time.Now().UTC(),
	}); err != nil {
		return mr, fmt.Errorf("record: %w", err)
	}
	a.step(StepRecorded, month)
	if err := s.DropMonth(ctx, month, m.matches); err != nil {
		if errors.Is(err, ErrBlocked) {
			mr.Note = "a hold or a reference appeared: the partition stays, the archive is kept"
			return mr, nil
		}
		return mr, fmt.Errorf("drop: %w", err)
	}
	mr.Dropped = true
	a.step(StepDropped, month)
	return mr, nil
}

// matches compares the manifest's count and digest with d's.
func (m *Manifest) matches(d *Digest) error {
	if d.Count() != m.Events || d.Sum() != m.EventsDigest {
		return fmt.Errorf("PostgreSQL holds %d events (digest %s), the archive %d (digest %s): not dropping",
			d.Count(), d.Sum(), m.Events, m.EventsDigest)
	}
	return nil
}

// write writes the month's files and its signed manifest.
func (a *Archiver) write(ctx context.Context, s Session, month time.Time) (*Manifest, error) {
	rowsPerGroup := a.Options.RowsPerGroup
	if rowsPerGroup <= 0 {
		rowsPerGroup = 2048
	}
	rowsPerFile := a.Options.RowsPerFile
	if rowsPerFile <= 0 {
		rowsPerFile = 4 << 20
	}
	m := &Manifest{Format: ManifestFormat, Month: MonthString(month), CreatedAt: time.Now().UTC().Format(time.RFC3339)}
	digest := NewDigest()
	var (
		tmp   *os.File
		fw    *FileWriter
		hw    *hashingWriter
		file  File
		chain *Chain
	)
	defer func() {
		if tmp != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	finish := func() error {
		if fw == nil {
			return nil
		}
		if err := fw.Close(); err != nil {
			return err
		}
		file.Rows, file.Bytes, file.SHA256 = fw.Rows(), hw.n, hex.EncodeToString(hw.h.Sum(nil))
		file.RowGroups = int((fw.Rows() + int64(rowsPerGroup) - 1) / int64(rowsPerGroup))
		if _, err := tmp.Seek(0, io.SeekStart); err != nil {
			return err
		}
		if err := a.Objects.Put(ctx, file.Key, tmp, file.Bytes); err != nil {
			return fmt.Errorf("put %s: %w", file.Key, err)
		}
		m.Files = append(m.Files, file)
		tmp.Close()
		os.Remove(tmp.Name())
		tmp, fw = nil, nil
		return nil
	}
	err := s.EachEvent(ctx, month, func(e *audit.Event) error {
		newChain := chain == nil || chain.CorrelationID != e.CorrelationID
		// A chain's links of the month stay in one file, so a lookup finds
		// them where the manifest says.
		if fw != nil && newChain && fw.Rows() >= rowsPerFile {
			if err := finish(); err != nil {
				return err
			}
		}
		if fw == nil {
			var err error
			if tmp, err = os.CreateTemp(a.Options.TempDir, "archive-*.parquet"); err != nil {
				return err
			}
			hw = &hashingWriter{w: tmp, h: sha256.New()}
			fw = NewFileWriter(hw, rowsPerGroup)
			file = File{Key: partKey(month, len(m.Files)), First: e.CorrelationID}
		}
		row, err := RowOf(e)
		if err != nil {
			return err
		}
		if err := fw.Write(row); err != nil {
			return err
		}
		file.Last = e.CorrelationID
		digest.Add(row.EventHash)
		if newChain {
			m.Correlations = append(m.Correlations, Chain{CorrelationID: e.CorrelationID,
				FirstSeq: e.ChainSeq, FirstHash: e.Hash, File: len(m.Files)})
			chain = &m.Correlations[len(m.Correlations)-1]
		}
		chain.Events++
		chain.LastSeq, chain.LastHash = e.ChainSeq, e.Hash
		if m.HashAlgorithm == "" {
			m.HashAlgorithm = e.HashAlgorithm
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("write: %w", err)
	}
	if err := finish(); err != nil {
		return nil, fmt.Errorf("write: %w", err)
	}
	m.Events, m.EventsDigest = digest.Count(), digest.Sum()
	if m.Rollups, err = s.RollupTotals(ctx, month); err != nil {
		return nil, fmt.Errorf("rollups: %w", err)
	}
	if m.Files == nil {
		m.Files = []File{}
	}
	b, err := m.Sign(a.Signer)
	if err != nil {
		return nil, err
	}
	if err := a.Objects.Put(ctx, ManifestKey(month), bytes.NewReader(b), int64(len(b))); err != nil {
		return nil, fmt.Errorf("put manifest: %w", err)
	}
	// A rewrite with fewer files must not leave the old extra files for
	// a glob over the directory to count twice.
	if err := a.removeStale(ctx, month, m); err != nil {
		return nil, err
	}
	return m, nil
}

func (a *Archiver) removeStale(ctx context.Context, month time.Time, m *Manifest) error {
	list, err := a.Objects.List(ctx, MonthPrefix(month))
	if err != nil {
		return fmt.Errorf("list %s: %w", MonthPrefix(month), err)
	}
	keep := map[string]bool{ManifestKey(month): true}
	for _, f := range m.Files {
		keep[f.Key] = true
	}
	for _, o := range list {
		if !keep[o.Key] && path.Ext(o.Key) == ".parquet" {
			if err := a.Objects.Delete(ctx, o.Key); err != nil {
				return fmt.Errorf("delete stale %s: %w", o.Key, err)
			}
		}
	}
	return nil
}

type hashingWriter struct {
	w io.Writer
	h interface {
		io.Writer
		Sum([]byte) []byte
	}
	n int64
}

func (w *hashingWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	return n, err
}

func (a *Archiver) manifestBytes(ctx context.Context, month time.Time) ([]byte, int64, error) {
	obj, err := a.Objects.Open(ctx, ManifestKey(month))
	if err != nil {
		return nil, 0, fmt.Errorf("open manifest: %w", err)
	}
	defer obj.Close()
	b := make([]byte, obj.Size())
	if _, err := obj.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, 0, fmt.Errorf("read manifest: %w", err)
	}
	return b, int64(len(b)), nil
}

// Manifest reads and verifies (signature only) a month's manifest.
func (a *Archiver) Manifest(ctx context.Context, month time.Time) (*Manifest, error) {
	b, _, err := a.manifestBytes(ctx, month)
	if err != nil {
		return nil, err
	}
	return ParseManifest(b, a.Signer.PublicKey())
}

// Verify checks a month's archive completely, offline from PostgreSQL;
// see VerifyArchive.
func (a *Archiver) Verify(ctx context.Context, month time.Time) (*Manifest, error) {
	b, _, err := a.manifestBytes(ctx, month)
	if err != nil {
		return nil, err
	}
	return VerifyArchive(ctx, a.Objects, b, a.Signer.PublicKey(), a.Hasher)
}

// VerifyArchive checks an archived month: the manifest's signature with
// pub; every file's size, SHA-256 and row count; every event's hash
// recomputed from its content (hasher must be the server's); the chains'
// links within the month and their first and last links against the
// manifest; the events digest.
func VerifyArchive(ctx context.Context, objs Objects, manifest []byte, pub ed25519.PublicKey, hasher audit.Hasher) (*Manifest, error) {
	m, err := ParseManifest(manifest, pub)
	if err != nil {
		return nil, err
	}
	digest := NewDigest()
	ci := 0
	var cur *Chain
	var prevHash string
	var prevSeq, n int64
	for fi, f := range m.Files {
		obj, err := objs.Open(ctx, f.Key)
		if err != nil {
			return m, fmt.Errorf("file %s: %w", f.Key, err)
		}
		sum, size, err := sha256Of(obj)
		if err != nil {
			obj.Close()
			return m, fmt.Errorf("file %s: %w", f.Key, err)
		}
		if size != f.Bytes || sum != f.SHA256 {
			obj.Close()
			return m, fmt.Errorf("file %s: %d bytes with SHA-256 %s, the manifest says %d bytes with %s: the file was changed",
				f.Key, size, sum, f.Bytes, f.SHA256)
		}
		rows, err := EachRow(obj, size, func(r *Row) error {
			e, err := r.Event()
			if err != nil {
				return err
			}
			n++
			if cur == nil || cur.CorrelationID != e.CorrelationID {
				if cur != nil && (cur.LastSeq != prevSeq || cur.LastHash != prevHash) {
					return fmt.Errorf("correlation %s ends at chain_seq %d, the manifest says %d", cur.CorrelationID, prevSeq, cur.LastSeq)
				}
				if ci >= len(m.Correlations) || m.Correlations[ci].CorrelationID != e.CorrelationID {
					return fmt.Errorf("event %s: correlation %s is not the manifest's next one", e.ID, e.CorrelationID)
				}
				cur = &m.Correlations[ci]
				ci++
				if cur.File != fi || cur.FirstSeq != e.ChainSeq || cur.FirstHash != e.Hash {
					return fmt.Errorf("correlation %s: its first link in the files differs from the manifest's", e.CorrelationID)
				}
			} else if e.ChainSeq != prevSeq+1 || *e.PreviousHash != prevHash {
				return fmt.Errorf("event %s (%s chain_seq %d) does not link to chain_seq %d", e.ID, e.CorrelationID, e.ChainSeq, prevSeq)
			}
			canon, err := e.Canonical()
			if err != nil {
				return fmt.Errorf("event %s: %w", e.ID, err)
			}
			if e.HashAlgorithm == hasher.Algorithm() && hasher.Link(*e.PreviousHash, canon) != e.Hash {
				return fmt.Errorf("event %s: content does not match event_hash: the event was changed", e.ID)
			}
			prevSeq, prevHash = e.ChainSeq, e.Hash
			digest.Add(r.EventHash)
			return nil
		})
		obj.Close()
		if err != nil {
			return m, fmt.Errorf("file %s: %w", f.Key, err)
		}
		if rows != f.Rows {
			return m, fmt.Errorf("file %s holds %d rows, the manifest says %d", f.Key, rows, f.Rows)
		}
	}
	if cur != nil && (cur.LastSeq != prevSeq || cur.LastHash != prevHash) {
		return m, fmt.Errorf("correlation %s ends at chain_seq %d, the manifest says %d", cur.CorrelationID, prevSeq, cur.LastSeq)
	}
	if ci != len(m.Correlations) {
		return m, fmt.Errorf("the files hold %d correlations, the manifest lists %d", ci, len(m.Correlations))
	}
	if digest.Count() != m.Events || digest.Sum() != m.EventsDigest {
		return m, fmt.Errorf("the files hold %d events (digest %s), the manifest says %d (%s)", digest.Count(), digest.Sum(), m.Events, m.EventsDigest)
	}
	return m, nil
}

func sha256Of(obj Object) (string, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, io.NewSectionReader(obj, 0, obj.Size()))
	if err != nil {
		return "", n, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
