package archive_test

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/archive"
	"kubernaut.ai/datastorage/internal/integrity"
)

// timedSession times BeginExpiry (the transaction of step 2).
type timedSource struct {
	archive.RetentionSource
	begin time.Duration
	gone  *archive.Gone
}

type timedSession struct {
	archive.RetentionSession
	src *timedSource
}

func (s *timedSource) OpenArchiveRetention(ctx context.Context) (archive.RetentionSession, bool, error) {
	rs, ok, err := s.RetentionSource.OpenArchiveRetention(ctx)
	if rs != nil {
		rs = timedSession{rs, s}
	}
	return rs, ok, err
}

func (s timedSession) BeginExpiry(ctx context.Context, month time.Time, sha string, gone *archive.Gone,
	check func([]string) error) error {
	t0 := time.Now()
	err := s.RetentionSession.BeginExpiry(ctx, month, sha, gone, check)
	if gone.Events > 0 {
		s.src.begin, s.src.gone = time.Since(t0), gone
	}
	return err
}

// TestExpireMeasure measures the retention of an archived month and an
// export of it; it runs only when ARCHIVE_EXPIRE_MEASURE_CORRELATIONS is
// set (50 events each) and asserts nothing about time:
//
//	ARCHIVE_EXPIRE_MEASURE_CORRELATIONS=4000 go test -run TestExpireMeasure -v ./internal/archive/
func TestExpireMeasure(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("ARCHIVE_EXPIRE_MEASURE_CORRELATIONS"))
	if n <= 0 {
		t.Skip("set ARCHIVE_EXPIRE_MEASURE_CORRELATIONS to measure")
	}
	e := newEnv(t)
	start := time.Now()
	e.fillExpiring(n, 50, 30, nil)
	t.Logf("loaded %d correlations × 50 events in %s", n, time.Since(start).Round(time.Millisecond))
	ctx := context.Background()
	filter := integrity.ExportFilter{Since: e.month, Until: e.month.AddDate(0, 1, 0).Add(-time.Microsecond)}
	exportMonth := func(name string, svc *integrity.Service) {
		cpu0, t0 := cpuSeconds(t), time.Now()
		x, err := svc.OpenExport(ctx, integrity.ExportRequest{Format: integrity.FormatNDJSON, ExportedBy: "measure", Filter: filter})
		require.NoError(t, err)
		var buf bytes.Buffer
		require.NoError(t, x.Stream(ctx, &buf, nil))
		x.Close(ctx)
		took, cpu := time.Since(t0), cpuSeconds(t)-cpu0
		lines := int64(bytes.Count(buf.Bytes(), []byte("\n")) - 2)
		t.Logf("export of the month from %s (%d events, NDJSON %d bytes): %s, %.0f events/s, %.1f µs CPU/event (this process)",
			name, lines, buf.Len(), took.Round(time.Millisecond), float64(lines)/took.Seconds(), cpu*1e6/float64(lines))
	}
	exportMonth("PostgreSQL, before archiving", integrity.NewService(e.st, e.hasher, e.signer))
	objs := fileTarget(t, t.TempDir())
	a := e.archiver(objs)
	a.Options.RowsPerGroup, a.Options.RowsPerFile = 0, 0
	_, err := a.Run(ctx, e.month)
	require.NoError(t, err)
	events := e.record(e.month).Events
	t.Logf("archived %d events", events)

	rd := &archive.Reader{Source: e.st, Objects: objs, PublicKey: e.signer.PublicKey(), Holds: e.st}
	svc := integrity.NewService(archive.ChainStore{Store: e.st, Reader: rd, Holds: e.st}, e.hasher, e.signer)
	exportMonth("the archive", svc)

	t0 := time.Now()
	_, err = svc.PlaceHold(ctx, e.corrs[n/2], "measure", "m")
	require.NoError(t, err)
	t.Logf("hold on an archived correlation: %s", time.Since(t0).Round(time.Microsecond))
	_, err = svc.ReleaseHold(ctx, e.corrs[n/2], "measure", "m")
	require.NoError(t, err)

	src := &timedSource{RetentionSource: e.st}
	ex := &archive.Expirer{Source: src, Objects: objs, PublicKey: e.signer.PublicKey()}
	cpu0, t0 := cpuSeconds(t), time.Now()
	rep, err := ex.Run(ctx, false)
	require.NoError(t, err)
	took, cpu := time.Since(t0), cpuSeconds(t)-cpu0
	require.Equal(t, "expired", monthAction(t, rep, e.month).Action)
	require.NotNil(t, src.gone)
	t.Logf("retention of the archived month (%d events): %s, %.0f events/s, %.1f µs CPU/event (this process); "+
		"of which the transaction (rollups, tombstones, record): %s for %d hourly + %d correlation counts, %d tombstones",
		events, took.Round(time.Millisecond), float64(events)/took.Seconds(), cpu*1e6/float64(events),
		src.begin.Round(time.Millisecond), len(src.gone.Hourly), len(src.gone.Correlations), len(src.gone.Tombstones))
}
