package archive

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/stretchr/testify/require"
)

// TestFileWriterSplicesAsOneWriter: the row groups encoded in other
// goroutines and spliced into the file make the file that one writer
// makes, cutting a row group every rowsPerGroup rows (the job's writer
// until archive-2026-12-07c), byte for byte: rows with NULLs, dictionary
// and plain strings, large values, and a last group that is not full.
func TestFileWriterSplicesAsOneWriter(t *testing.T) {
	month := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
	var rows []Row
	for i := range 1000 {
		ts := month.Add(time.Duration(i) * time.Minute)
		h := sha256.Sum256([]byte{byte(i), byte(i >> 8)})
		r := Row{EventID: [16]byte{byte(i), byte(i >> 8), 7}, EventDate: days(ts), EventTimestamp: ts,
			Version: "1.0", EventType: []string{"gateway.signal.received", "workflow.selected"}[i%2],
			EventCategory: "gateway", EventAction: "received", EventOutcome: "success",
			CorrelationID: fmt.Sprintf("rr-%05d-ünï", i/7), EventData: fmt.Sprintf(`{"i":%d,"pad":%q}`, i, strings.Repeat("é", i%300)),
			ActorType: "service", ActorID: "gateway-service", ResourceType: "gateway", ResourceID: fmt.Sprint("r", i),
			Severity: "info", RetentionDays: int32(i), IsSensitive: i%5 == 0, ChainSeq: int64(i%7 + 1),
			EventHash: h[:], PreviousEventHash: []byte{}, HashAlgorithm: "hmac-sha256", CreatedAt: ts.Add(time.Second)}
		if i%3 == 0 {
			r.Namespace, r.ErrorMessage, r.ActorIP = optString("ns-"+fmt.Sprint(i%4)), optString(strings.Repeat("x", i)), optString("10.0.0.1")
			d := int32(i)
			r.DurationMS, r.ParentEventDate = &d, &r.EventDate
			r.LegalHoldPlacedAt = &r.CreatedAt
		}
		rows = append(rows, r)
	}
	for _, perGroup := range []int{1, 7, 64, 1000, 4096} {
		t.Run(fmt.Sprint(perGroup, " rows a group"), func(t *testing.T) {
			var one bytes.Buffer
			w := parquet.NewGenericWriter[Row](&one, writerOptions()...)
			// The job's writer before: rows in batches of 256, cut at
			// each group's end.
			var batch []Row
			for i := range rows {
				batch = append(batch, rows[i])
				if end := (i+1)%perGroup == 0; end || len(batch) == 256 {
					_, err := w.Write(batch)
					require.NoError(t, err)
					batch = batch[:0]
					if end {
						require.NoError(t, w.Flush())
					}
				}
			}
			_, err := w.Write(batch)
			require.NoError(t, err)
			require.NoError(t, w.Close())

			var spliced bytes.Buffer
			fw := NewFileWriter(&spliced, perGroup)
			for _, r := range rows {
				require.NoError(t, fw.Write(r))
			}
			require.NoError(t, fw.Close())
			require.Equal(t, int64(len(rows)), fw.Rows())
			require.True(t, bytes.Equal(one.Bytes(), spliced.Bytes()), "the spliced file (%d bytes) differs from one writer's (%d bytes)", spliced.Len(), one.Len())
		})
	}
}
