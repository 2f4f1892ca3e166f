package archive

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress/zstd"

	"kubernaut.ai/datastorage/internal/audit"
)

// Row is one event as a Parquet row: every column of audit_events in the
// API's form (defaults filled in, hashes as their bytes), so that an event
// read back is the event that was archived, canonical form and hash alike,
// and so that an analytics engine sees the values the API shows.
type Row struct {
	EventID           [16]byte   `parquet:"event_id,uuid"`
	EventDate         int32      `parquet:"event_date,date"`
	EventTimestamp    time.Time  `parquet:"event_timestamp,timestamp(microsecond)"`
	Version           string     `parquet:"version,dict"`
	EventType         string     `parquet:"event_type,dict"`
	EventCategory     string     `parquet:"event_category,dict"`
	EventAction       string     `parquet:"event_action,dict"`
	EventOutcome      string     `parquet:"event_outcome,dict"`
	CorrelationID     string     `parquet:"correlation_id"`
	EventData         string     `parquet:"event_data,json"`
	ActorType         string     `parquet:"actor_type,dict"`
	ActorID           string     `parquet:"actor_id,dict"`
	ActorIP           *string    `parquet:"actor_ip,optional"`
	ResourceType      string     `parquet:"resource_type,dict"`
	ResourceID        string     `parquet:"resource_id"`
	ParentEventID     *string    `parquet:"parent_event_id,optional"`
	ParentEventDate   *int32     `parquet:"parent_event_date,optional,date"`
	Namespace         *string    `parquet:"namespace,optional,dict"`
	ClusterID         *string    `parquet:"cluster_id,optional,dict"`
	Severity          string     `parquet:"severity,dict"`
	DurationMS        *int32     `parquet:"duration_ms,optional"`
	ErrorCode         *string    `parquet:"error_code,optional"`
	ErrorMessage      *string    `parquet:"error_message,optional"`
	RetentionDays     int32      `parquet:"retention_days"`
	IsSensitive       bool       `parquet:"is_sensitive"`
	ChainSeq          int64      `parquet:"chain_seq"`
	EventHash         []byte     `parquet:"event_hash"`
	PreviousEventHash []byte     `parquet:"previous_event_hash"`
	HashAlgorithm     string     `parquet:"hash_algorithm,dict"`
	LegalHold         bool       `parquet:"legal_hold"`
	LegalHoldReason   *string    `parquet:"legal_hold_reason,optional"`
	LegalHoldPlacedBy *string    `parquet:"legal_hold_placed_by,optional"`
	LegalHoldPlacedAt *time.Time `parquet:"legal_hold_placed_at,optional,timestamp(microsecond)"`
	CreatedAt         time.Time  `parquet:"created_at,timestamp(microsecond)"`
}

// DefaultRowsPerGroup is the row group size when Options.RowsPerGroup is
// 0: a lookup decodes one group (or two) of this many rows.
const DefaultRowsPerGroup = 2048

// correlationColumn is the name of the column whose statistics a reader
// uses to skip row groups.
const correlationColumn = "correlation_id"

const secondsPerDay = 86400

func days(t time.Time) int32 { return int32(t.Unix() / secondsPerDay) }

func fromDays(d int32) time.Time { return time.Unix(int64(d)*secondsPerDay, 0).UTC() }

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// RowOf converts an event (as the store reads it) to its Parquet row.
func RowOf(e *audit.Event) (Row, error) {
	hash, err := hex.DecodeString(e.Hash)
	if err != nil {
		return Row{}, fmt.Errorf("event %s: event_hash: %w", e.ID, err)
	}
	prev := []byte{}
	if e.PreviousHash != nil && *e.PreviousHash != "" {
		if prev, err = hex.DecodeString(*e.PreviousHash); err != nil {
			return Row{}, fmt.Errorf("event %s: previous_event_hash: %w", e.ID, err)
		}
	}
	r := Row{
		EventID: e.ID, EventDate: days(e.Date.Std()), EventTimestamp: e.Timestamp.Std().UTC(),
		Version: e.Version, EventType: e.Type, EventCategory: e.Category, EventAction: e.Action,
		EventOutcome: e.Outcome, CorrelationID: e.CorrelationID, EventData: string(e.Data),
		ActorType: e.ActorType, ActorID: e.ActorID, ActorIP: optString(e.ActorIP),
		ResourceType: e.ResourceType, ResourceID: e.ResourceID,
		Namespace: optString(e.Namespace), ClusterID: optString(e.ClusterID), Severity: e.Severity,
		DurationMS: e.DurationMS, ErrorCode: optString(e.ErrorCode), ErrorMessage: optString(e.ErrorMessage),
		RetentionDays: e.RetentionDays, IsSensitive: e.IsSensitive, ChainSeq: e.ChainSeq,
		EventHash: hash, PreviousEventHash: prev, HashAlgorithm: e.HashAlgorithm,
		LegalHold: e.LegalHold, LegalHoldReason: optString(e.HoldReason), LegalHoldPlacedBy: optString(e.HoldPlacedBy),
		CreatedAt: e.CreatedAt.Std().UTC(),
	}
	if e.ParentID != nil {
		s := e.ParentID.String()
		r.ParentEventID = &s
	}
	if e.ParentDate != nil {
		d := days(e.ParentDate.Std())
		r.ParentEventDate = &d
	}
	if e.HoldPlacedAt != nil {
		t := e.HoldPlacedAt.Std().UTC()
		r.LegalHoldPlacedAt = &t
	}
	return r, nil
}

// Event converts a row back to the event it was made from.
func (r *Row) Event() (audit.Event, error) {
	e := audit.Event{
		ID: r.EventID, Date: audit.Date(fromDays(r.EventDate)), Timestamp: audit.NewTime(r.EventTimestamp),
		Version: r.Version, Type: r.EventType, Category: r.EventCategory, Action: r.EventAction,
		Outcome: r.EventOutcome, CorrelationID: r.CorrelationID, Data: []byte(r.EventData),
		ActorType: r.ActorType, ActorID: r.ActorID, ActorIP: str(r.ActorIP),
		ResourceType: r.ResourceType, ResourceID: r.ResourceID,
		Namespace: str(r.Namespace), ClusterID: str(r.ClusterID), Severity: r.Severity,
		DurationMS: r.DurationMS, ErrorCode: str(r.ErrorCode), ErrorMessage: str(r.ErrorMessage),
		RetentionDays: r.RetentionDays, IsSensitive: r.IsSensitive, ChainSeq: r.ChainSeq,
		Hash: hex.EncodeToString(r.EventHash), HashAlgorithm: r.HashAlgorithm,
		LegalHold: r.LegalHold, HoldReason: str(r.LegalHoldReason), HoldPlacedBy: str(r.LegalHoldPlacedBy),
		CreatedAt: audit.NewTime(r.CreatedAt),
	}
	prev := hex.EncodeToString(r.PreviousEventHash)
	e.PreviousHash = &prev
	if r.ParentEventID != nil {
		id, err := uuid.Parse(*r.ParentEventID)
		if err != nil {
			return e, fmt.Errorf("event %s: parent_event_id: %w", e.ID, err)
		}
		e.ParentID = &id
	}
	if r.ParentEventDate != nil {
		t := audit.Time(fromDays(*r.ParentEventDate))
		e.ParentDate = &t
	}
	if r.LegalHoldPlacedAt != nil {
		t := audit.NewTime(*r.LegalHoldPlacedAt)
		e.HoldPlacedAt = &t
	}
	return e, nil
}

// zstdLevel is the files' compression level. zstd's default level was 12 %
// of the archive job's CPU in its profile; the fastest level makes the
// files 5 % larger (109 → 115 bytes per event in TestArchiveMeasure), well
// under the 250 of the target. (Its CPU saving was not measurable on the
// shared machine of that session.)
const zstdLevel = zstd.SpeedFastest

// FileWriter writes one Parquet file of rows given in (correlation_id,
// chain_seq) order, cutting a row group every rowsPerGroup rows so that each
// group's min/max correlation_id is a narrow range a reader can skip on.
//
// The row groups are encoded and compressed in other goroutines, up to
// groupsInFlight at once, each as a one-group Parquet file in memory
// written by a writer of the same schema and options, then spliced into
// the file in order by the writer's verbatim copy of column chunks (no
// decoding): the encoding was the busiest goroutine of the archive job
// once the month was read (bench/results/archive-2026-12-07c.md). The
// spliced file is the file one writer makes (TestFileWriterSplicesAsOneWriter).
type FileWriter struct {
	w            *parquet.GenericWriter[Row]
	rowsPerGroup int
	rows         int64
	group        []Row
	// inFlight are the groups being encoded, in file order.
	inFlight []chan *groupEncoder
	// idle are encoders (and their buffers) free for another group.
	idle []*groupEncoder
	err  error
}

// groupsInFlight bounds the row groups encoded at once: enough to keep
// every CPU of the machine busy while the file's goroutine feeds them
// (the rows of a group, ~2 MB, are held until it is spliced).
func groupsInFlight() int { return max(2, runtime.GOMAXPROCS(0)+1) }

// writeBatch is how many rows go to the Parquet writer in one call.
const writeBatch = 256

// groupEncoder encodes one row group into a Parquet file in memory.
type groupEncoder struct {
	w    *parquet.GenericWriter[Row]
	buf  bytes.Buffer
	rows []Row
	file *parquet.File
	err  error
}

func writerOptions() []parquet.WriterOption {
	return []parquet.WriterOption{
		parquet.Compression(&zstd.Codec{Level: zstdLevel}),
		parquet.CreatedBy("kubernaut datastorage", "archive", "1"),
		parquet.KeyValueMetadata("datastorage.sorting", "correlation_id,chain_seq"),
	}
}

// NewFileWriter starts a file on w: zstd for every column, statistics on.
func NewFileWriter(w io.Writer, rowsPerGroup int) *FileWriter {
	return &FileWriter{
		w:            parquet.NewGenericWriter[Row](w, writerOptions()...),
		rowsPerGroup: rowsPerGroup,
		group:        make([]Row, 0, rowsPerGroup),
	}
}

// Write adds one row.
func (f *FileWriter) Write(r Row) error {
	if f.err != nil {
		return f.err
	}
	f.group = append(f.group, r)
	f.rows++
	if len(f.group) >= f.rowsPerGroup {
		return f.submit()
	}
	return nil
}

// submit hands the rows of the group to an encoder, first splicing the
// oldest group when groupsInFlight are being encoded.
func (f *FileWriter) submit() error {
	if len(f.group) == 0 {
		return nil
	}
	for len(f.inFlight) >= groupsInFlight() {
		if err := f.spliceOne(); err != nil {
			return err
		}
	}
	var e *groupEncoder
	if n := len(f.idle); n > 0 {
		e, f.idle = f.idle[n-1], f.idle[:n-1]
		e.buf.Reset()
		e.w.Reset(&e.buf)
	} else {
		e = &groupEncoder{}
		e.w = parquet.NewGenericWriter[Row](&e.buf, writerOptions()...)
	}
	// The encoder takes the group's rows; it gives its previous ones back
	// for the next group.
	e.rows, f.group = f.group, e.rows[:0]
	if cap(f.group) < f.rowsPerGroup {
		f.group = make([]Row, 0, f.rowsPerGroup)
	}
	done := make(chan *groupEncoder, 1)
	f.inFlight = append(f.inFlight, done)
	go func() {
		e.encode()
		done <- e
	}()
	return nil
}

func (e *groupEncoder) encode() {
	e.file, e.err = nil, nil
	// In batches of writeBatch rows, as the job's writer did before row
	// groups were encoded apart: where a page ends depends on them, and the
	// files stay the same.
	for lo := 0; lo < len(e.rows); lo += writeBatch {
		if _, err := e.w.Write(e.rows[lo:min(lo+writeBatch, len(e.rows))]); err != nil {
			e.err = fmt.Errorf("archive: parquet: write rows: %w", err)
			return
		}
	}
	if err := e.w.Close(); err != nil {
		e.err = fmt.Errorf("archive: parquet: end row group: %w", err)
		return
	}
	b := e.buf.Bytes()
	if e.file, e.err = parquet.OpenFile(bytes.NewReader(b), int64(len(b))); e.err != nil {
		e.err = fmt.Errorf("archive: parquet: encoded row group: %w", e.err)
	}
}

// spliceOne waits for the oldest group in flight and copies its column
// chunks into the file as one row group.
func (f *FileWriter) spliceOne() error {
	e := <-f.inFlight[0]
	f.inFlight = f.inFlight[1:]
	err := e.err
	if err == nil {
		if rgs := e.file.RowGroups(); len(rgs) != 1 {
			err = fmt.Errorf("archive: parquet: an encoded group has %d row groups", len(rgs))
		} else if _, werr := f.w.WriteRowGroup(rgs[0]); werr != nil {
			err = fmt.Errorf("archive: parquet: splice row group: %w", werr)
		}
	}
	clear(e.rows)
	e.file = nil
	f.idle = append(f.idle, e)
	if err != nil && f.err == nil {
		f.err = err
	}
	return f.err
}

// Rows counts the rows written.
func (f *FileWriter) Rows() int64 { return f.rows }

// Close writes the last row group and the footer. A FileWriter that
// failed is closed too: no encoder goroutine outlives it.
func (f *FileWriter) Close() error {
	if f.err == nil {
		_ = f.submit()
	}
	for len(f.inFlight) > 0 {
		_ = f.spliceOne()
	}
	if f.err != nil {
		return f.err
	}
	if err := f.w.Close(); err != nil {
		return fmt.Errorf("archive: parquet: close: %w", err)
	}
	return nil
}

// openParquet opens a file for ranged reads: the footer now, row groups
// when they are read. The page index and bloom filters are not loaded, the
// row groups' statistics are all a lookup uses.
func openParquet(r io.ReaderAt, size int64) (*parquet.File, error) {
	f, err := parquet.OpenFile(r, size, parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true),
		parquet.ReadBufferSize(256<<10))
	if err != nil {
		return nil, fmt.Errorf("archive: parquet: %w", err)
	}
	return f, nil
}

// groupMayHold reports whether row group i of f can hold correlation id
// according to its min/max statistics (true when it has none). A max
// truncated by a writer is a prefix of the real maximum, so a value that
// starts with it may still be in the group.
func groupMayHold(f *parquet.File, i int, col int, id string) bool {
	rgs := f.Metadata().RowGroups
	if i >= len(rgs) || col >= len(rgs[i].Columns) {
		return true
	}
	st := rgs[i].Columns[col].MetaData.Statistics
	lo, hi := st.MinValue, st.MaxValue
	if lo == nil && hi == nil {
		lo, hi = st.Min, st.Max //nolint:staticcheck // older writers fill only the deprecated fields
	}
	if lo == nil || hi == nil {
		return true
	}
	if id < string(lo) {
		return false
	}
	return id <= string(hi) || strings.HasPrefix(id, string(hi))
}

// columnIndex finds a top-level column by name.
func columnIndex(f *parquet.File, name string) (int, error) {
	for i, c := range f.Schema().Fields() {
		if c.Name() == name {
			return i, nil
		}
	}
	return 0, fmt.Errorf("archive: parquet: no column %q", name)
}

// ScanStats counts what a lookup read.
type ScanStats struct {
	RowGroups, RowGroupsRead int
}

// readCorrelation returns the events of correlation id in the file, in
// chain order, reading only the row groups whose statistics can hold it
// (col is the index of correlation_id).
func readCorrelation(f *parquet.File, col int, id string, stats *ScanStats) ([]audit.Event, error) {
	var out []audit.Event
	for i, rg := range f.RowGroups() {
		stats.RowGroups++
		if !groupMayHold(f, i, col, id) {
			continue
		}
		stats.RowGroupsRead++
		// The rows are sorted by correlation_id: the correlation's rows are
		// one run, found by reading that column alone; only they are
		// decoded whole.
		lo, n, err := runOf(rg, col, id)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			continue
		}
		rd := parquet.NewGenericRowGroupReader[Row](rg)
		if err := rd.SeekToRow(lo); err != nil {
			rd.Close()
			return nil, fmt.Errorf("archive: parquet: seek: %w", err)
		}
		rows := make([]Row, n)
		got := 0
		for got < len(rows) {
			k, err := rd.Read(rows[got:])
			got += k
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				rd.Close()
				return nil, fmt.Errorf("archive: parquet: read rows: %w", err)
			}
		}
		rd.Close()
		for i := range rows[:got] {
			if rows[i].CorrelationID != id {
				return nil, fmt.Errorf("archive: parquet: row %d of a group is %q, not %q: the rows are not sorted", lo+int64(i), rows[i].CorrelationID, id)
			}
			e, err := rows[i].Event()
			if err != nil {
				return nil, err
			}
			out = append(out, e)
		}
	}
	return out, nil
}

// runOf returns the first row and the number of rows of the run of id in
// a row group sorted by correlation_id (n = 0 when it is not there),
// decoding the pages of that column (col) alone.
func runOf(rg parquet.RowGroup, col int, id string) (lo int64, n int, err error) {
	lo = -1
	err = eachValue(rg, col, func(row int64, val parquet.Value) bool {
		switch v := string(val.ByteArray()); {
		case v == id:
			if lo < 0 {
				lo = row
			}
			n++
		case lo >= 0 || v > id:
			return false
		}
		return true
	})
	if err != nil {
		return 0, 0, err
	}
	return max(lo, 0), n, nil
}

// columnValues reads every value of column col of a row group (a required,
// flat column: one value per row), cloned out of the pages it came from.
func columnValues(rg parquet.RowGroup, col int) ([]parquet.Value, error) {
	out := make([]parquet.Value, 0, rg.NumRows())
	err := eachValue(rg, col, func(_ int64, v parquet.Value) bool {
		out = append(out, v.Clone())
		return true
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// eachValue calls fn with every value of column col of a row group (a
// required, flat column: one value per row) and its row number, page by
// page, until fn returns false. A value lives only during the call: its
// page is released after.
func eachValue(rg parquet.RowGroup, col int, fn func(row int64, v parquet.Value) bool) error {
	pages := rg.ColumnChunks()[col].Pages()
	defer pages.Close()
	buf := make([]parquet.Value, 1024)
	var at int64
	for {
		p, err := pages.ReadPage()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("archive: parquet: read page of column %d: %w", col, err)
		}
		more, err := eachPageValue(p, buf, &at, fn)
		parquet.Release(p)
		if err != nil || !more {
			return err
		}
	}
}

// eachPageValue is eachValue's loop over one page; more is false when fn
// stopped.
func eachPageValue(p parquet.Page, buf []parquet.Value, at *int64, fn func(int64, parquet.Value) bool) (more bool, _ error) {
	vr := p.Values()
	for {
		k, err := vr.ReadValues(buf)
		for i := range k {
			if !fn(*at+int64(i), buf[i]) {
				return false, nil
			}
		}
		*at += int64(k)
		if errors.Is(err, io.EOF) {
			return true, nil
		}
		if err != nil {
			return false, fmt.Errorf("archive: parquet: read values: %w", err)
		}
	}
}

// eachRow reads a row group in batches.
func eachRow(rg parquet.RowGroup, fn func(*Row) error) error {
	rd := parquet.NewGenericRowGroupReader[Row](rg)
	defer rd.Close()
	buf := make([]Row, 512)
	for {
		n, err := rd.Read(buf)
		for i := range n {
			if ferr := fn(&buf[i]); ferr != nil {
				return ferr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("archive: parquet: read rows: %w", err)
		}
	}
}

// EachRow reads every row of a file in its order.
func EachRow(r io.ReaderAt, size int64, fn func(*Row) error) (int64, error) {
	f, err := openParquet(r, size)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, rg := range f.RowGroups() {
		if err := eachRow(rg, func(row *Row) error { n++; return fn(row) }); err != nil {
			return n, err
		}
	}
	return n, nil
}
