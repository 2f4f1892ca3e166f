package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// memObjects is an in-memory Objects for the unit tests of scan.
type memObjects map[string][]byte

type memObject struct{ *bytes.Reader }

func (memObject) Close() error { return nil }

func (m memObjects) Put(_ context.Context, key string, body io.Reader, _ int64) error {
	b, err := io.ReadAll(body)
	m[key] = b
	return err
}

func (m memObjects) Open(_ context.Context, key string) (Object, error) {
	return memObject{bytes.NewReader(m[key])}, nil
}

func (m memObjects) List(context.Context, string) ([]ObjectInfo, error) { return nil, nil }

func (m memObjects) Delete(_ context.Context, key string) error { delete(m, key); return nil }

// TestScanTombstonesRunsOfLinks: a correlation whose links in the month
// are not consecutive (chain_seq 1, 2, 4, 5, 6: seq 3 is in another
// month) gets one tombstone per run, each with its last link's hash; a
// correlation listed twice in the manifest (in pieces) is taken whole; the
// counts to subtract are per hour and per correlation; the last retained
// day is the latest event_date + retention_days.
func TestScanTombstonesRunsOfLinks(t *testing.T) {
	month := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
	hash := func(c string, seq int64) []byte { h := sha256.Sum256([]byte(c + string(rune('0'+seq)))); return h[:] }
	var buf bytes.Buffer
	w := NewFileWriter(&buf, 2)
	type link struct {
		corr string
		seq  int64
		hour int
		days int32
	}
	links := []link{{"a", 1, 0, 30}, {"a", 2, 0, 30}, {"a", 4, 1, 30}, {"a", 5, 1, 30}, {"a", 6, 5, 400},
		{"b", 7, 2, 30}, {"b", 8, 2, 30}}
	for _, l := range links {
		ts := month.Add(time.Duration(l.hour)*time.Hour + time.Duration(l.seq)*time.Minute)
		require.NoError(t, w.Write(Row{CorrelationID: l.corr, ChainSeq: l.seq, EventHash: hash(l.corr, l.seq),
			EventTimestamp: ts, EventDate: days(ts), RetentionDays: l.days, EventType: "t", EventCategory: "c",
			EventOutcome: "success", Severity: "info", Namespace: optString("ns")}))
	}
	require.NoError(t, w.Close())
	sum := sha256.Sum256(buf.Bytes())
	objs := memObjects{"f0": buf.Bytes()}
	m := &Manifest{Month: "2026-07", Events: int64(len(links)),
		Files: []File{{Key: "f0", SHA256: hex.EncodeToString(sum[:]), Bytes: int64(buf.Len()), Rows: int64(len(links))}},
		Correlations: []Chain{
			{CorrelationID: "a", Events: 5, FirstSeq: 1, LastSeq: 6, LastHash: hex.EncodeToString(hash("a", 6))},
			{CorrelationID: "b", Events: 1, FirstSeq: 7, LastSeq: 7, LastHash: hex.EncodeToString(hash("b", 7))},
			{CorrelationID: "b", Events: 1, FirstSeq: 8, LastSeq: 8, LastHash: hex.EncodeToString(hash("b", 8))},
		}}
	x := &Expirer{Objects: objs}
	sc, err := x.scan(context.Background(), m)
	require.NoError(t, err)
	assert.ElementsMatch(t, []Tombstone{
		{CorrelationID: "a", FromSeq: 1, ToSeq: 2, LastHash: hex.EncodeToString(hash("a", 2))},
		{CorrelationID: "a", FromSeq: 4, ToSeq: 6, LastHash: hex.EncodeToString(hash("a", 6))},
		{CorrelationID: "b", FromSeq: 7, ToSeq: 8, LastHash: hex.EncodeToString(hash("b", 8))},
	}, sc.gone.Tombstones)
	assert.Equal(t, month.AddDate(0, 0, 400), sc.lastRetained)
	assert.EqualValues(t, 7, sc.gone.Events)
	var hours []int64
	for _, h := range sc.gone.Hourly {
		hours = append(hours, h.Events)
	}
	assert.Equal(t, []int64{2, 2, 2, 1}, hours, "hours 0, 1, 2, 5 in order")
	assert.Len(t, sc.gone.Correlations, 4, "(hour, correlation): a@0, a@1, b@2, a@5")

	// A file that differs from the manifest is refused.
	objs["f0"] = append(bytes.Clone(buf.Bytes()), 0)
	_, err = x.scan(context.Background(), m)
	require.ErrorContains(t, err, "differs from the manifest")
}
