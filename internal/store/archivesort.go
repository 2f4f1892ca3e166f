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
	"reflect"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"kubernaut.ai/datastorage/internal/archive"
)

// The archive's sort. PostgreSQL sorting a month's whole rows by
// (correlation_id COLLATE "C", chain_seq) was an external sort of the
// heap's size (8.3 GB of temp files at 10 M events, 127 s of a 175 s run:
// bench/results/archive.md), and no index has that order. Here the month
// is read in physical order (a sequential scan, nothing sorted in
// PostgreSQL) and sorted in the job: rows are kept as PostgreSQL sent them
// (the driver's raw column values, not decoded), cut into runs of
// SortMemory bytes, each run sorted by its key and, when there are several,
// spilled to a temporary file; the runs are then merged and only the
// merged rows are decoded. The files' order and format do not change.

// defaultSortMemory bounds the raw row bytes one run holds: 256 MiB is
// ~230,000 events of ~1.1 KB, 43 runs at 10 M events.
const defaultSortMemory = 256 << 20

// Column positions in eventColumns of the sort key.
const (
	sortCorrelationCol = 8
	sortChainSeqCol    = 25
)

// A row is kept as one byte string, in memory and in a spilled run alike:
// for each column a big-endian int32 length (-1 for NULL) and the bytes,
// so that a run is written and read back without a copy per column, and
// the runs hold no pointers for the garbage collector to scan.

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

// rowSorter collects raw rows into runs and merges them.
type rowSorter struct {
	typeMap *pgtype.Map
	fields  []pgconn.FieldDescription
	tempDir string
	limit   int

	arena []byte
	rows  []sortedRow
	runs  []*os.File
	spill *bufio.Writer

	// vals and plans decode the row being passed on (rawRow).
	vals  [][]byte
	plans []cachedPlan
}

// cachedPlan is a column's scan plan for the destination type it was made
// for: pgx's rows keep one per column, pgx.ScanRow plans every value.
type cachedPlan struct {
	dst  reflect.Type
	plan pgtype.ScanPlan
}

func newRowSorter(typeMap *pgtype.Map, o archive.SortOptions) *rowSorter {
	limit := o.Memory
	if limit <= 0 {
		limit = defaultSortMemory
	}
	return &rowSorter{typeMap: typeMap, tempDir: o.TempDir, limit: int(limit)}
}

// add copies one row's raw values (valid only until the next row) into the
// current run, spilling the run first when it is full.
func (s *rowSorter) add(vals [][]byte) error {
	n := 0
	for _, v := range vals {
		n += 4 + len(v)
	}
	if len(s.rows) > 0 && len(s.arena)+n > cap(s.arena) {
		if err := s.spillRun(); err != nil {
			return err
		}
	}
	if s.arena == nil {
		s.arena = make([]byte, 0, max(s.limit, n))
	}
	start := len(s.arena)
	for _, v := range vals {
		l := int32(len(v))
		if v == nil {
			l = -1
		}
		s.arena = binary.BigEndian.AppendUint32(s.arena, uint32(l))
		s.arena = append(s.arena, v...)
	}
	r := sortedRow{row: s.arena[start:len(s.arena):len(s.arena)]}
	if err := s.key(&r); err != nil {
		return err
	}
	s.rows = append(s.rows, r)
	return nil
}

// split decodes an encoded row into vals (reused), checking its lengths.
func split(row []byte, vals [][]byte) error {
	for i := range vals {
		if len(row) < 4 {
			return errors.New("store: archive sort: a row is cut short")
		}
		l := int32(binary.BigEndian.Uint32(row))
		row = row[4:]
		if l < 0 {
			vals[i] = nil
			continue
		}
		if int(l) > len(row) {
			return errors.New("store: archive sort: a row is cut short")
		}
		vals[i], row = row[:l:l], row[l:]
	}
	if len(row) != 0 {
		return errors.New("store: archive sort: a row is longer than its columns")
	}
	return nil
}

// key reads the sort key from the encoded row, in the format PostgreSQL
// sent it (text is its bytes in either format; Go's byte order is
// COLLATE "C").
func (s *rowSorter) key(r *sortedRow) error {
	if len(s.fields) <= sortChainSeqCol {
		return errors.New("store: archive sort: the rows lack correlation_id or chain_seq")
	}
	if len(s.vals) != len(s.fields) {
		s.vals = make([][]byte, len(s.fields))
	}
	if err := split(r.row, s.vals); err != nil {
		return err
	}
	if s.vals[sortCorrelationCol] == nil || s.vals[sortChainSeqCol] == nil {
		return errors.New("store: archive sort: a row lacks correlation_id or chain_seq")
	}
	r.corr = s.vals[sortCorrelationCol]
	r.prefix = prefixOf(r.corr)
	f := s.fields[sortChainSeqCol]
	return s.typeMap.Scan(f.DataTypeOID, f.Format, s.vals[sortChainSeqCol], &r.seq)
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
		s.spill = bufio.NewWriterSize(f, 1<<20)
	} else {
		s.spill.Reset(f)
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
	if len(s.rows) > 0 {
		if err := s.spillRun(); err != nil {
			return err
		}
	}
	s.arena, s.rows = nil, nil // the merge holds one row per run
	h := make(runHeap, 0, len(s.runs))
	for _, f := range s.runs {
		r := &runReader{r: bufio.NewReaderSize(f, 256<<10)}
		ok, err := r.next(s)
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
		ok, err := r.next(s)
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

// runReader reads one spilled run back, a row at a time, into a buffer it
// reuses.
type runReader struct {
	r   *bufio.Reader
	buf []byte
	row sortedRow
}

func (r *runReader) next(s *rowSorter) (bool, error) {
	var l [4]byte
	if _, err := io.ReadFull(r.r, l[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		return false, fmt.Errorf("store: archive sort: reading a run: %w", err)
	}
	n := int(binary.BigEndian.Uint32(l[:]))
	r.buf = slices.Grow(r.buf[:0], n)[:n]
	if _, err := io.ReadFull(r.r, r.buf); err != nil {
		return false, fmt.Errorf("store: archive sort: reading a run: %w", err)
	}
	r.row = sortedRow{row: r.buf}
	return true, s.key(&r.row)
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

// rawRow is a sorted row as pgx.CollectableRow, so that scanEvent decodes
// it exactly as it decodes a row of a query. Its values are valid until
// the next row.
type rawRow struct {
	s *rowSorter
}

// load decodes row into the sorter's vals for rawRow.
func (s *rowSorter) load(row *sortedRow) (rawRow, error) {
	return rawRow{s}, split(row.row, s.vals)
}

func (r rawRow) FieldDescriptions() []pgconn.FieldDescription { return r.s.fields }

// Scan decodes the values with a plan per column, kept while the
// destination's type stays the same (as pgx's own rows do).
func (r rawRow) Scan(dest ...any) error {
	s := r.s
	if len(dest) != len(s.fields) {
		return fmt.Errorf("store: archive sort: %d destinations for %d columns", len(dest), len(s.fields))
	}
	if len(s.plans) != len(dest) {
		s.plans = make([]cachedPlan, len(dest))
	}
	for i, d := range dest {
		t := reflect.TypeOf(d)
		p := &s.plans[i]
		if p.plan == nil || p.dst != t {
			f := s.fields[i]
			p.dst, p.plan = t, s.typeMap.PlanScan(f.DataTypeOID, f.Format, d)
		}
		if err := p.plan.Scan(s.vals[i], d); err != nil {
			return fmt.Errorf("store: archive sort: column %s: %w", s.fields[i].Name, err)
		}
	}
	return nil
}

func (r rawRow) Values() ([]any, error) {
	out := make([]any, len(r.s.vals))
	for i, v := range r.s.vals {
		if v == nil {
			continue
		}
		f := r.s.fields[i]
		if t, ok := r.s.typeMap.TypeForOID(f.DataTypeOID); ok {
			val, err := t.Codec.DecodeValue(r.s.typeMap, f.DataTypeOID, f.Format, v)
			if err != nil {
				return nil, err
			}
			out[i] = val
		} else {
			out[i] = string(v)
		}
	}
	return out, nil
}

func (r rawRow) RawValues() [][]byte { return r.s.vals }

// readSorted reads the month's partition in physical order into s.
func readSorted(ctx context.Context, conn *pgx.Conn, table string, s *rowSorter) error {
	rows, err := conn.Query(ctx, `SELECT `+eventColumns+` FROM `+table)
	if err != nil {
		return err
	}
	defer rows.Close()
	s.fields = slices.Clone(rows.FieldDescriptions())
	for rows.Next() {
		if err := s.add(rows.RawValues()); err != nil {
			return err
		}
	}
	return rows.Err()
}
