package store

import (
	"bufio"
	"bytes"
	"cmp"
	"container/heap"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/klauspost/compress/s2"

	"kubernaut.ai/datastorage/internal/archive"
)

// The archive's sort. PostgreSQL sorting a month's whole rows by
// (correlation_id COLLATE "C", chain_seq) was an external sort of the
// heap's size (8.3 GB of temp files at 10 M events, 127 s of a 175 s run:
// bench/results/archive.md), and no index has that order. Here the month
// is read in physical order (a sequential scan, nothing sorted in
// PostgreSQL) with COPY … TO STDOUT (FORMAT binary) and sorted in the job:
// rows are kept as PostgreSQL sent them (each binary COPY tuple without its
// field count, not decoded), cut into runs of SortMemory bytes, each run
// sorted by its key and, when there are several, spilled to a temporary
// file; the runs are then merged and only the merged rows are decoded,
// straight into Parquet rows (archiverow.go). The files' order and format
// do not change.
//
// COPY rather than a query: the driver does not decode a DataRow message
// per row into its values (COPY's data is handed over as bytes), and a
// binary tuple is already the sort's row format, so a row is one copy into
// the run (bench/results/archive-2026-12-07c.md).

// defaultSortMemory bounds the raw row bytes one run holds: 256 MiB is
// ~230,000 events of ~1.1 KB, 43 runs at 10 M events.
const defaultSortMemory = 256 << 20

// Column positions in eventColumns of the sort key, and their number.
const (
	sortCorrelationCol = 8
	sortChainSeqCol    = 25
	archiveColumnCount = 34
)

// A row is kept as one byte string, in memory and in a spilled run alike:
// for each column a big-endian int32 length (-1 for NULL) and the bytes in
// PostgreSQL's binary format (a binary COPY tuple after its int16 field
// count), so that a run is written and read back without a copy per
// column, and the runs hold no pointers for the garbage collector to scan.

// sortedRow is one row of a run: its encoded columns and its key (corr
// points into row).
type sortedRow struct {
	// prefix is corr's first 8 bytes as a big-endian integer (zero-padded):
	// it orders two rows as their bytes do whenever it differs, which for
	// ids like UUIDs is almost always, at the cost of an integer compare.
	prefix uint64
	corr   []byte
	seq    int64
	row    []byte
}

func compareRows(a, b *sortedRow) int {
	if a.prefix != b.prefix {
		return cmp.Compare(a.prefix, b.prefix)
	}
	if c := bytes.Compare(a.corr, b.corr); c != 0 {
		return c
	}
	return cmp.Compare(a.seq, b.seq)
}

// prefixOf is the first 8 bytes of b, zero-padded, big-endian: a shorter
// id that is a prefix of a longer one gets a prefix no larger than it.
func prefixOf(b []byte) uint64 {
	var w [8]byte
	copy(w[:], b)
	return binary.BigEndian.Uint64(w[:])
}

// errShortRow is a row whose lengths run past its end: a corrupt spill or
// COPY stream.
var errShortRow = errors.New("store: archive sort: a row is cut short")

// rowLen returns the length of the encoded row of n columns at the start
// of b, or -1 when b holds only part of it.
func rowLen(b []byte, n int) int {
	at := 0
	for range n {
		if len(b)-at < 4 {
			return -1
		}
		l := int32(binary.BigEndian.Uint32(b[at:]))
		at += 4
		if l > 0 {
			if int(l) > len(b)-at {
				return -1
			}
			at += int(l)
		}
	}
	return at
}

// keyOf reads the sort key of an encoded row into r (r.row set): the
// columns before chain_seq are skipped by their lengths, none decoded.
func keyOf(r *sortedRow) error {
	b := r.row
	at := 0
	for i := 0; i <= sortChainSeqCol; i++ {
		if len(b)-at < 4 {
			return errShortRow
		}
		l := int(int32(binary.BigEndian.Uint32(b[at:])))
		at += 4
		if l > len(b)-at {
			return errShortRow
		}
		switch i {
		case sortCorrelationCol:
			if l < 0 {
				return errors.New("store: archive sort: a row lacks correlation_id")
			}
			r.corr = b[at : at+l : at+l]
		case sortChainSeqCol:
			if l != 8 {
				return errors.New("store: archive sort: a row lacks chain_seq")
			}
			r.seq = int64(binary.BigEndian.Uint64(b[at:]))
		}
		at += max(l, 0)
	}
	r.prefix = prefixOf(r.corr)
	return nil
}

// rowSorter collects raw rows into runs and merges them.
type rowSorter struct {
	tempDir string
	limit   int

	arena []byte
	rows  []sortedRow
	runs  []*os.File
	spill *bufio.Writer
	// zspill compresses what spill writes (see spillBlock).
	zspill *s2.Writer
}

// spillBlock is the block size of the spilled runs' S2 (Snappy-like)
// compression. Writing a run to the page cache was the largest cost of the
// job's read (21 % of its CPU at 2 M events on a loaded machine,
// bench/results/archive-2026-12-07c.md); the rows' JSON compresses
// several times at a small fraction of that. Small blocks, because the
// merge holds a reader (and a block) per run: 86 runs at 10 M events.
const spillBlock = 128 << 10

func newRowSorter(o archive.SortOptions) *rowSorter {
	limit := o.Memory
	if limit <= 0 {
		limit = defaultSortMemory
	}
	return &rowSorter{tempDir: o.TempDir, limit: int(limit)}
}

// add copies one encoded row (valid only until the next) into the current
// run, spilling the run first when it is full.
func (s *rowSorter) add(row []byte) error {
	if len(s.rows) > 0 && len(s.arena)+len(row) > cap(s.arena) {
		if err := s.spillRun(); err != nil {
			return err
		}
	}
	if s.arena == nil {
		s.arena = make([]byte, 0, max(s.limit, len(row)))
		// Room for a run of ~1 KB rows at once, not grown by copies.
		s.rows = make([]sortedRow, 0, s.limit/1024+1)
	}
	start := len(s.arena)
	s.arena = append(s.arena, row...)
	r := sortedRow{row: s.arena[start:len(s.arena):len(s.arena)]}
	if err := keyOf(&r); err != nil {
		return err
	}
	s.rows = append(s.rows, r)
	return nil
}

func (s *rowSorter) sortRun() {
	slices.SortFunc(s.rows, func(a, b sortedRow) int { return compareRows(&a, &b) })
}

// spillRun sorts the current run and writes it to a temporary file, each
// row preceded by its length.
func (s *rowSorter) spillRun() error {
	s.sortRun()
	f, err := os.CreateTemp(s.tempDir, "archive-sort-*.run")
	if err != nil {
		return fmt.Errorf("store: archive sort: %w", err)
	}
	// Unlinked at once: the open descriptor keeps the data, and a crash
	// leaves no file behind.
	_ = os.Remove(f.Name())
	s.runs = append(s.runs, f)
	if s.spill == nil {
		s.zspill = s2.NewWriter(f, s2.WriterConcurrency(1), s2.WriterBlockSize(spillBlock))
		s.spill = bufio.NewWriterSize(s.zspill, 64<<10)
	} else {
		s.zspill.Reset(f)
		s.spill.Reset(s.zspill)
	}
	var l [4]byte
	for i := range s.rows {
		binary.BigEndian.PutUint32(l[:], uint32(len(s.rows[i].row)))
		_, _ = s.spill.Write(l[:])
		_, _ = s.spill.Write(s.rows[i].row)
	}
	if err := s.spill.Flush(); err != nil {
		return fmt.Errorf("store: archive sort: spilling a run: %w", err)
	}
	if err := s.zspill.Close(); err != nil { // ends the stream; f stays open
		return fmt.Errorf("store: archive sort: spilling a run: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("store: archive sort: %w", err)
	}
	clear(s.rows)
	s.rows = s.rows[:0]
	s.arena = s.arena[:0]
	return nil
}

// close removes the runs.
func (s *rowSorter) close() {
	for _, f := range s.runs {
		f.Close()
	}
	s.runs = nil
}

// each calls fn with the rows in key order: from memory when they fit one
// run, else merged from the spilled runs.
func (s *rowSorter) each(fn func(*sortedRow) error) error {
	if len(s.runs) == 0 {
		s.sortRun()
		for i := range s.rows {
			if err := fn(&s.rows[i]); err != nil {
				return err
			}
		}
		return nil
	}
	return mergeSorted([]*rowSorter{s}, fn)
}

// mergeSorted spills what the sorters still hold in memory and calls fn
// with the rows of all their runs merged in key order.
func mergeSorted(sorters []*rowSorter, fn func(*sortedRow) error) error {
	var runs []*os.File
	for _, s := range sorters {
		if len(s.rows) > 0 {
			if err := s.spillRun(); err != nil {
				return err
			}
		}
		s.arena, s.rows = nil, nil // the merge holds one row per run
		runs = append(runs, s.runs...)
	}
	h := make(runHeap, 0, len(runs))
	for _, f := range runs {
		r := &runReader{r: bufio.NewReaderSize(s2.NewReader(f, s2.ReaderMaxBlockSize(spillBlock)), 256<<10)}
		ok, err := r.next()
		if err != nil {
			return err
		}
		if ok {
			h = append(h, r)
		}
	}
	heap.Init(&h)
	for len(h) > 0 {
		r := h[0]
		if err := fn(&r.row); err != nil {
			return err
		}
		ok, err := r.next()
		if err != nil {
			return err
		}
		if ok {
			heap.Fix(&h, 0)
		} else {
			heap.Pop(&h)
		}
	}
	return nil
}

// runReader reads one spilled run back, a row at a time: in place in its
// buffered reader's buffer when the row fits there (it stays valid until
// the reader moves on, and each reader moves on only after its row was
// passed on), else copied into a buffer it reuses.
type runReader struct {
	r       *bufio.Reader
	buf     []byte
	row     sortedRow
	peeked  int // bytes of the current row still in r's buffer
	scratch [4]byte
}

func (r *runReader) next() (bool, error) {
	if r.peeked > 0 {
		if _, err := r.r.Discard(r.peeked); err != nil {
			return false, fmt.Errorf("store: archive sort: reading a run: %w", err)
		}
		r.peeked = 0
	}
	if _, err := io.ReadFull(r.r, r.scratch[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		return false, fmt.Errorf("store: archive sort: reading a run: %w", err)
	}
	n := int(binary.BigEndian.Uint32(r.scratch[:]))
	var row []byte
	if n <= r.r.Size() {
		b, err := r.r.Peek(n)
		if err != nil {
			return false, fmt.Errorf("store: archive sort: reading a run: %w", err)
		}
		row, r.peeked = b[:n:n], n
	} else {
		r.buf = slices.Grow(r.buf[:0], n)[:n]
		if _, err := io.ReadFull(r.r, r.buf); err != nil {
			return false, fmt.Errorf("store: archive sort: reading a run: %w", err)
		}
		row = r.buf
	}
	r.row = sortedRow{row: row}
	return true, keyOf(&r.row)
}

type runHeap []*runReader

func (h runHeap) Len() int           { return len(h) }
func (h runHeap) Less(i, j int) bool { return compareRows(&h[i].row, &h[j].row) < 0 }
func (h runHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *runHeap) Push(x any)        { *h = append(*h, x.(*runReader)) }
func (h *runHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// copySignature starts a binary COPY stream; a 32-bit flags field and the
// length of a header extension follow it.
var copySignature = []byte("PGCOPY\n\377\r\n\x00")

// copyReader is the io.Writer that pgconn's CopyTo writes a binary COPY
// stream to: it cuts the stream into tuples and adds each to the sorter.
// PostgreSQL sends one tuple per CopyData message, but nothing in the
// protocol promises it, so a tuple cut across writes is carried over.
type copyReader struct {
	s       *rowSorter
	header  bool // the stream's header was read
	done    bool // the trailer was read
	rows    int64
	pending []byte
}

func (c *copyReader) Write(p []byte) (int, error) {
	data := p
	if len(c.pending) > 0 {
		c.pending = append(c.pending, p...)
		data = c.pending
	}
	at, err := c.consume(data)
	if err != nil {
		return 0, err
	}
	// Keep what is left (pgconn reuses p): moved to the front of pending
	// when it already is pending's.
	rest := data[at:]
	if len(c.pending) > 0 {
		c.pending = c.pending[:copy(c.pending, rest)]
	} else {
		c.pending = append(c.pending[:0], rest...)
	}
	return len(p), nil
}

// consume adds every whole tuple of b and returns how many bytes it used.
func (c *copyReader) consume(b []byte) (int, error) {
	at := 0
	if !c.header {
		if len(b) < len(copySignature)+8 {
			return 0, nil
		}
		if !bytes.Equal(b[:len(copySignature)], copySignature) {
			return 0, errors.New("store: archive read: not a binary COPY stream")
		}
		ext := int(binary.BigEndian.Uint32(b[len(copySignature)+4:]))
		at = len(copySignature) + 8 + ext
		if at > len(b) {
			return 0, nil
		}
		c.header = true
	}
	for len(b)-at >= 2 {
		if c.done {
			return 0, errors.New("store: archive read: data after the COPY trailer")
		}
		n := int(int16(binary.BigEndian.Uint16(b[at:])))
		if n == -1 {
			c.done = true
			at += 2
			continue
		}
		if n != archiveColumnCount {
			return 0, fmt.Errorf("store: archive read: a tuple of %d columns, not %d", n, archiveColumnCount)
		}
		l := rowLen(b[at+2:], n)
		if l < 0 {
			break
		}
		if err := c.s.add(b[at+2 : at+2+l]); err != nil {
			return 0, err
		}
		c.rows++
		at += 2 + l
	}
	return at, nil
}

// readStreams is how many COPY streams read a month that does not fit in
// one run, each a range of the partition's pages on its own connection
// and backend. One backend's sequential scan and output functions were the
// slowest step of the run (PostgreSQL ~0.9 CPU for 51 s at 10 M events,
// bench/results/archive.md); two use both CPUs of the machine the target
// was measured on. More would only add runs to merge there.
const readStreams = 2

// readSorted reads the month's partition in physical order into s.
func readSorted(ctx context.Context, conn *pgx.Conn, table string, s *rowSorter) error {
	return copySorted(ctx, conn, `SELECT `+eventColumns+` FROM `+table, s)
}

// copySorted runs COPY (query) TO STDOUT (FORMAT binary) into s.
func copySorted(ctx context.Context, conn *pgx.Conn, query string, s *rowSorter) error {
	c := &copyReader{s: s}
	tag, err := conn.PgConn().CopyTo(ctx, c, `COPY (`+query+`) TO STDOUT (FORMAT binary)`)
	if err != nil {
		return err
	}
	switch {
	case !c.done || len(c.pending) > 0:
		return errors.New("store: archive read: the COPY stream ended inside a tuple or without its trailer")
	case tag.RowsAffected() != c.rows:
		return fmt.Errorf("store: archive read: COPY sent %d rows, %d were read", tag.RowsAffected(), c.rows)
	}
	return nil
}

// pageRanges cuts pages into n ranges of whole pages as TID range
// conditions; the last is open, so that it also covers pages added after
// the count (the snapshot decides what is seen, not the count).
func pageRanges(pages int64, n int) []string {
	out := make([]string, 0, n)
	for i := range n {
		lo, hi := pages*int64(i)/int64(n), pages*int64(i+1)/int64(n)
		switch {
		case i == 0 && n == 1:
			out = append(out, "true")
		case i == 0:
			out = append(out, fmt.Sprintf("ctid < '(%d,0)'::tid", hi))
		case i == n-1:
			out = append(out, fmt.Sprintf("ctid >= '(%d,0)'::tid", lo))
		default:
			out = append(out, fmt.Sprintf("ctid >= '(%d,0)'::tid AND ctid < '(%d,0)'::tid", lo, hi))
		}
	}
	return out
}
