package archive

import (
	"bufio"
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
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/parquet-go/parquet-go"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/integrity"
)

// Steps after which Options.AfterStep is called: the points where a crash
// leaves a distinct state (the crash tests kill the process at each).
const (
	StepWatched  = "watched"  // writes to the month are noted from here on
	StepSorted   = "sorted"   // the month is read and sorted; its first rows are being written
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
	// RowsPerGroup and RowsPerFile size the Parquet files; 0 means
	// DefaultRowsPerGroup and 4,194,304.
	RowsPerGroup int
	RowsPerFile  int64
	// TempDir holds a file while it is written (the store needs its size
	// before the upload) and the runs the month's sort spills (about the
	// partition's heap size); "" means os.TempDir.
	TempDir string
	// SortMemory bounds the bytes of rows the month's sort holds in
	// memory at once; 0 means 256 MiB (see SortOptions).
	SortMemory int64
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
	// Compared is true when the drop compared the whole month with the
	// files because the watch could not prove it unchanged.
	Compared bool
	Note     string
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
			if r, ok := records[m]; ok && (r.Status == StatusRestored || removed(r)) {
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
// upserted, and the partition goes only in the transaction that proves it
// is the month the verified files hold.
//
// PostgreSQL's month is read once, to write the files; the watch armed
// just before (Session.WatchMonth) notes any write to the month that
// commits after it. The files are compared with what was read when they
// are read back (verify: the digest of the rows read, in the manifest);
// the drop proves, under the locks that keep the month as it is until it
// commits, that nothing was written since the watch was armed for these
// files. When the watch cannot prove it (a write was noted, or the archive
// was written before the watch existed, or armed again since), the drop
// compares the whole month with the files' order-independent Sums, as a
// second read of PostgreSQL; a comparison outside the drop's transaction
// could be stale by the time of the drop, so it would prove nothing.
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
	var (
		m    *Manifest
		sums Sums
		mb   []byte // the manifest as verified: the record names its SHA-256
		// watch is the generation the files were written under: a resumed
		// archive keeps the one it was recorded with.
		watch = rec.Watch
	)
	resumed := rec.Status == StatusVerified || rec.Status == StatusDropped
	if resumed {
		// A run stopped after the record: check what it recorded and go on.
		mr.Action = "resumed"
		if m, sums, mb, err = a.verify(ctx, month); err != nil {
			a.log().Warn("archive: the recorded archive does not verify; writing it again", "month", mr.Month, "error", err)
			m = nil
		}
	}
	for {
		if m == nil {
			mr.Action = "archived"
			if watch, err = s.WatchMonth(ctx, month); err != nil {
				return mr, fmt.Errorf("watch: %w", err)
			}
			a.step(StepWatched, month)
			// What was written is read back from the target below, not trusted.
			if err := a.write(ctx, s, month); err != nil {
				return mr, err
			}
			a.step(StepWritten, month)
			if m, sums, mb, err = a.verify(ctx, month); err != nil {
				return mr, fmt.Errorf("reading the archive back: %w", err)
			}
			a.step(StepVerified, month)
		}
		sum := sha256.Sum256(mb)
		var total int64
		for _, f := range m.Files {
			total += f.Bytes
		}
		mr.Events, mr.Bytes = m.Events, total+int64(len(mb))
		if err := s.SaveRecord(ctx, Record{
			Month: month, Status: StatusVerified, Target: a.Options.Target, ManifestKey: ManifestKey(month),
			ManifestSHA256: hex.EncodeToString(sum[:]), Events: m.Events, Bytes: mr.Bytes,
			EventsDigest: m.EventsDigest, Watch: watch, ArchivedAt: time.Now().UTC(),
		}); err != nil {
			return mr, fmt.Errorf("record: %w", err)
		}
		a.step(StepRecorded, month)
		files := sums
		mr.Compared, err = s.DropMonth(ctx, month, watch, func(pg Sums) error { return compareSums(m, files, pg) })
		switch {
		case errors.Is(err, ErrBlocked):
			mr.Note = "a hold or a reference appeared: the partition stays, the archive is kept"
			return mr, nil
		case errors.Is(err, ErrChanged) && mr.Action == "resumed":
			// The month changed since the recorded archive was written:
			// write it again, now.
			a.log().Warn("archive: the month changed since it was archived; writing it again", "month", mr.Month, "error", err)
			m = nil
			continue
		case err != nil:
			return mr, fmt.Errorf("drop: %w", err)
		}
		mr.Dropped = true
		a.log().Info("archive: month dropped", "month", mr.Month, "compared_in_full", mr.Compared)
		a.step(StepDropped, month)
		return mr, nil
	}
}

// ErrChanged is returned (wrapped) by the drop when PostgreSQL's month is
// not the archived one: an event was written to it after the files were.
var ErrChanged = errors.New("archive: the month differs from its archive")

// compareSums compares PostgreSQL's sums with the files'.
func compareSums(m *Manifest, files, pg Sums) error {
	if pg != files {
		return fmt.Errorf("%w: PostgreSQL holds %d events (sums %s/%d), the archive %d (sums %s/%d): not dropping",
			ErrChanged, pg.Count, pg.Sum, pg.Xor, m.Events, files.Sum, files.Xor)
	}
	return nil
}

// write writes the month's files and its signed manifest. Reading
// PostgreSQL (the driver's decoding) runs in its own goroutine, ahead of
// the conversion and Parquet encoding here, so that the two use both CPUs.
func (a *Archiver) write(ctx context.Context, s Session, month time.Time) error {
	rowsPerGroup := a.Options.RowsPerGroup
	if rowsPerGroup <= 0 {
		rowsPerGroup = DefaultRowsPerGroup
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
		if err := hw.w.Flush(); err != nil {
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
	// lastHash is the event_hash of the piece's last row so far: made hex
	// once, when the piece ends, not for every row.
	var lastHash []byte
	endPiece := func() {
		if chain != nil {
			chain.LastHash = hex.EncodeToString(lastHash)
		}
	}
	add := func(r *Row) error {
		newChain := chain == nil || chain.CorrelationID != r.CorrelationID
		// A chain's links in a month need not be consecutive: a late event
		// stamped into an earlier month takes the chain's next chain_seq
		// there, and retention may have removed links between two that
		// remain. Each run of consecutive links is an entry of its own in
		// the manifest (a piece), so that verification still checks every
		// link inside a run and, at a gap, that the next run starts where
		// the signed manifest says.
		newPiece := newChain || r.ChainSeq != chain.LastSeq+1
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
			hw = &hashingWriter{w: bufio.NewWriterSize(tmp, 1<<20), h: sha256.New()}
			fw = NewFileWriter(hw, rowsPerGroup)
			file = File{Key: partKey(month, len(m.Files)), First: r.CorrelationID}
		}
		if err := fw.Write(*r); err != nil {
			return err
		}
		file.Last = r.CorrelationID
		digest.Add(r.EventHash)
		if newPiece {
			endPiece()
			m.Correlations = append(m.Correlations, Chain{CorrelationID: r.CorrelationID,
				FirstSeq: r.ChainSeq, FirstHash: hex.EncodeToString(r.EventHash), File: len(m.Files)})
			chain = &m.Correlations[len(m.Correlations)-1]
		}
		chain.Events++
		chain.LastSeq, lastHash = r.ChainSeq, r.EventHash
		if m.HashAlgorithm == "" {
			m.HashAlgorithm = r.HashAlgorithm
		}
		return nil
	}
	if err := a.streamRows(ctx, s, month, add); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	endPiece()
	if err := finish(); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	m.Events, m.EventsDigest = digest.Count(), digest.Sum()
	var err error
	if m.Rollups, err = s.RollupTotals(ctx, month); err != nil {
		return fmt.Errorf("rollups: %w", err)
	}
	if m.Files == nil {
		m.Files = []File{}
	}
	b, err := m.Sign(a.Signer)
	if err != nil {
		return err
	}
	if err := a.Objects.Put(ctx, ManifestKey(month), bytes.NewReader(b), int64(len(b))); err != nil {
		return fmt.Errorf("put manifest: %w", err)
	}
	// A rewrite with fewer files must not leave the old extra files for
	// a glob over the directory to count twice.
	return a.removeStale(ctx, month, m)
}

// streamRows calls fn with the month's rows in order, reading, sorting
// and decoding them in another goroutine, in batches, so that the Parquet
// encoding here and the merge and decoding there use both CPUs.
func (a *Archiver) streamRows(ctx context.Context, s Session, month time.Time, fn func(*Row) error) error {
	const batch = 512
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan []Row, 4)
	free := make(chan []Row, 6)
	errc := make(chan error, 1)
	go func() {
		defer close(batches)
		buf := make([]Row, 0, batch)
		send := func() error {
			select {
			case batches <- buf:
			case <-ctx.Done():
				return ctx.Err()
			}
			select {
			case buf = <-free:
				buf = buf[:0]
			default:
				buf = make([]Row, 0, batch)
			}
			return nil
		}
		err := s.EachRow(ctx, month, SortOptions{TempDir: a.Options.TempDir, Memory: a.Options.SortMemory}, func(r *Row) error {
			buf = append(buf, *r)
			if len(buf) == batch {
				return send()
			}
			return nil
		})
		if err == nil && len(buf) > 0 {
			err = send()
		}
		errc <- err
	}()
	first := true
	for b := range batches {
		if first {
			// A crash here is one while writing: the files are written
			// again by the next run.
			a.step(StepSorted, month)
			first = false
		}
		for i := range b {
			if err := fn(&b[i]); err != nil {
				cancel()
				for range batches {
				}
				<-errc
				return err
			}
		}
		clear(b)
		select {
		case free <- b:
		default:
		}
	}
	return <-errc
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
	w *bufio.Writer
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

func (a *Archiver) manifestBytes(ctx context.Context, month time.Time) ([]byte, error) {
	return readManifest(ctx, a.Objects, ManifestKey(month))
}

// readManifest reads the manifest object at key whole: it is hashed and
// parsed at once.
func readManifest(ctx context.Context, objs Objects, key string) ([]byte, error) {
	obj, err := objs.Open(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("open manifest: %w", err)
	}
	defer obj.Close()
	b := make([]byte, obj.Size())
	if _, err := obj.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	return b, nil
}

// recordedManifest reads the manifest at key and checks it is the one
// recorded (its SHA-256 is sha) and that its signature verifies with pub.
func recordedManifest(ctx context.Context, objs Objects, key, sha string, pub ed25519.PublicKey) (*Manifest, error) {
	b, err := readManifest(ctx, objs, key)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	if hex.EncodeToString(sum[:]) != sha {
		return nil, errors.New("the manifest differs from the one recorded: it was changed")
	}
	return ParseManifest(b, pub)
}

// Manifest reads and verifies (signature only) a month's manifest.
func (a *Archiver) Manifest(ctx context.Context, month time.Time) (*Manifest, error) {
	b, err := a.manifestBytes(ctx, month)
	if err != nil {
		return nil, err
	}
	return ParseManifest(b, a.Signer.PublicKey())
}

// Verify checks a month's archive completely, offline from PostgreSQL;
// see VerifyArchive.
func (a *Archiver) Verify(ctx context.Context, month time.Time) (*Manifest, error) {
	b, err := a.manifestBytes(ctx, month)
	if err != nil {
		return nil, err
	}
	m, _, err := verifyArchive(ctx, a.Objects, b, a.Signer.PublicKey(), &a.Hasher)
	return m, err
}

// verify is Verify for the job: everything but the recomputation of each
// event's hash from its content, which is Verify's (docs/archive.md, "Which
// check is where").
func (a *Archiver) verify(ctx context.Context, month time.Time) (*Manifest, Sums, []byte, error) {
	b, err := a.manifestBytes(ctx, month)
	if err != nil {
		return nil, Sums{}, nil, err
	}
	m, sums, err := verifyArchive(ctx, a.Objects, b, a.Signer.PublicKey(), nil)
	return m, sums, b, err
}

// VerifyArchive checks an archived month: the manifest's signature with
// pub; every file's size, SHA-256 and row count; every event's hash
// recomputed from its content (hasher must be the server's); the chains'
// links within the month and their first and last links against the
// manifest; the events digest. Row groups are decoded and their events'
// hashes recomputed on every CPU; the checks of order run over their
// results in file order.
func VerifyArchive(ctx context.Context, objs Objects, manifest []byte, pub ed25519.PublicKey, hasher audit.Hasher) (*Manifest, error) {
	m, _, err := verifyArchive(ctx, objs, manifest, pub, &hasher)
	return m, err
}

// link is what the checks of order need of one archived event.
type link struct {
	id          [16]byte
	seq         int64
	hash, prev  []byte
	correlation string
}

// verifyArchive is VerifyArchive; with a nil hasher it reads only the
// columns of the chains (correlation_id, chain_seq and the two hashes) and
// does not recompute the events' hashes from their content.
func verifyArchive(ctx context.Context, objs Objects, manifest []byte, pub ed25519.PublicKey, hasher *audit.Hasher) (*Manifest, Sums, error) {
	m, err := ParseManifest(manifest, pub)
	if err != nil {
		return nil, Sums{}, err
	}
	digest := NewDigest()
	ci := 0
	var cur *Chain
	var prevHash []byte
	var prevSeq int64
	curEnd := func() error {
		if cur != nil && (cur.LastSeq != prevSeq || cur.LastHash != hex.EncodeToString(prevHash)) {
			return fmt.Errorf("correlation %s ends at chain_seq %d, the manifest says %d", cur.CorrelationID, prevSeq, cur.LastSeq)
		}
		return nil
	}
	for fi, f := range m.Files {
		obj, err := objs.Open(ctx, f.Key)
		if err != nil {
			return m, Sums{}, fmt.Errorf("file %s: %w", f.Key, err)
		}
		// The SHA-256 of every byte is computed on a goroutine of its own
		// while the row groups are decoded (both read the object, as the
		// decoding workers already do at once), and it decides first: a
		// changed file is reported as changed, whatever its decoding said.
		shac := make(chan error, 1)
		go func() { shac <- sameBytes(obj, f) }()
		var rows int64
		err = func() error {
			pf, err := openParquet(obj, obj.Size())
			if err != nil {
				return err
			}
			groups := pf.RowGroups()
			var cols [5]int
			if hasher == nil {
				for i, name := range []string{correlationColumn, "chain_seq", "event_hash", "previous_event_hash", "event_id"} {
					if cols[i], err = columnIndex(pf, name); err != nil {
						return err
					}
				}
			}
			return inOrder(ctx, len(groups), runtime.GOMAXPROCS(0), func(i int) ([]link, error) {
				if hasher == nil {
					return chainColumns(groups[i], cols)
				}
				var out []link
				err := eachRow(groups[i], func(r *Row) error {
					e, err := r.Event()
					if err != nil {
						return err
					}
					canon, err := e.Canonical()
					if err != nil {
						return fmt.Errorf("event %s: %w", e.ID, err)
					}
					if e.HashAlgorithm == hasher.Algorithm() && hasher.Link(*e.PreviousHash, canon) != e.Hash {
						return fmt.Errorf("event %s: content does not match event_hash: the event was changed", e.ID)
					}
					// The reader may reuse the row's memory for the next rows.
					out = append(out, link{id: r.EventID, seq: r.ChainSeq, hash: bytes.Clone(r.EventHash),
						prev: bytes.Clone(r.PreviousEventHash), correlation: strings.Clone(r.CorrelationID)})
					return nil
				})
				return out, err
			}, func(_ int, links []link) error {
				for i := range links {
					l := &links[i]
					rows++
					// A link that does not follow the one before in its chain
					// starts the next piece (see add in write), which the
					// manifest must list there; a link removed from inside a
					// piece is a break the manifest does not have.
					if cur == nil || cur.CorrelationID != l.correlation ||
						(l.seq > prevSeq+1 && ci < len(m.Correlations) && m.Correlations[ci].CorrelationID == l.correlation) {
						if err := curEnd(); err != nil {
							return err
						}
						if ci >= len(m.Correlations) || m.Correlations[ci].CorrelationID != l.correlation {
							return fmt.Errorf("event %s: correlation %s is not the manifest's next one", uuidString(l.id), l.correlation)
						}
						cur = &m.Correlations[ci]
						ci++
						if cur.File != fi || cur.FirstSeq != l.seq || cur.FirstHash != hex.EncodeToString(l.hash) {
							return fmt.Errorf("correlation %s: its first link in the files differs from the manifest's", l.correlation)
						}
					} else if l.seq != prevSeq+1 || !bytes.Equal(l.prev, prevHash) {
						return fmt.Errorf("event %s (%s chain_seq %d) does not link to chain_seq %d", uuidString(l.id), l.correlation, l.seq, prevSeq)
					}
					prevSeq, prevHash = l.seq, l.hash
					digest.Add(l.hash)
				}
				return nil
			})
		}()
		if serr := <-shac; serr != nil {
			err = serr
		}
		obj.Close()
		if err != nil {
			return m, Sums{}, fmt.Errorf("file %s: %w", f.Key, err)
		}
		if rows != f.Rows {
			return m, Sums{}, fmt.Errorf("file %s holds %d rows, the manifest says %d", f.Key, rows, f.Rows)
		}
	}
	if err := curEnd(); err != nil {
		return m, Sums{}, err
	}
	if ci != len(m.Correlations) {
		return m, Sums{}, fmt.Errorf("the files hold %d correlations, the manifest lists %d", ci, len(m.Correlations))
	}
	if digest.Count() != m.Events || digest.Sum() != m.EventsDigest {
		return m, Sums{}, fmt.Errorf("the files hold %d events (digest %s), the manifest says %d (%s)", digest.Count(), digest.Sum(), m.Events, m.EventsDigest)
	}
	return m, digest.Sums(), nil
}

// chainColumns reads the links of a row group from its chain columns
// alone (cols: correlation_id, chain_seq, event_hash, previous_event_hash,
// event_id).
func chainColumns(rg parquet.RowGroup, cols [5]int) ([]link, error) {
	var vals [5][]parquet.Value
	for i, c := range cols {
		v, err := columnValues(rg, c)
		if err != nil {
			return nil, err
		}
		if int64(len(v)) != rg.NumRows() {
			return nil, fmt.Errorf("archive: parquet: column %d holds %d values for %d rows", c, len(v), rg.NumRows())
		}
		vals[i] = v
	}
	out := make([]link, len(vals[0]))
	for i := range out {
		out[i] = link{seq: vals[1][i].Int64(), hash: vals[2][i].ByteArray(), prev: vals[3][i].ByteArray(),
			correlation: string(vals[0][i].ByteArray())}
		copy(out[i].id[:], vals[4][i].ByteArray())
	}
	return out, nil
}

func uuidString(id [16]byte) string { return uuid.UUID(id).String() }

// inOrder runs work(0..n-1) on up to workers goroutines and calls consume
// with the results in index order, on the calling goroutine, keeping at
// most 2×workers results in flight. The first error stops it.
func inOrder[T any](ctx context.Context, n, workers int, work func(int) (T, error), consume func(int, T) error) error {
	if workers < 1 {
		workers = 1
	}
	type result struct {
		v   T
		err error
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	slots := make([]chan result, n)
	for i := range slots {
		slots[i] = make(chan result, 1)
	}
	next := make(chan int)
	window := make(chan struct{}, 2*workers)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	go func() {
		defer close(next)
		for i := range n {
			select {
			case window <- struct{}{}:
			case <-ctx.Done():
				return
			}
			select {
			case next <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				v, err := work(i)
				slots[i] <- result{v, err}
			}
		}()
	}
	for i := range n {
		var r result
		select {
		case r = <-slots[i]:
		case <-ctx.Done():
			return ctx.Err()
		}
		<-window
		if r.err != nil {
			return r.err
		}
		if err := consume(i, r.v); err != nil {
			return err
		}
	}
	return nil
}

// sameBytes checks the object's size and SHA-256 against the manifest's
// entry f.
func sameBytes(obj Object, f File) error {
	sum, size, err := sha256Of(obj)
	if err != nil {
		return err
	}
	if size != f.Bytes || sum != f.SHA256 {
		return fmt.Errorf("%d bytes with SHA-256 %s, the manifest says %d bytes with %s: the file was changed",
			size, sum, f.Bytes, f.SHA256)
	}
	return nil
}

func sha256Of(obj Object) (string, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, io.NewSectionReader(obj, 0, obj.Size()))
	if err != nil {
		return "", n, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
