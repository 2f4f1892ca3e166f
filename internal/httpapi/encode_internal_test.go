package httpapi

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
)

func TestAppendEventCreatedWritesWhatEncodingJSONWrites(t *testing.T) {
	ids := []uuid.UUID{uuid.Nil, uuid.Max, uuid.MustParse("0193a6f2-7c1e-7abc-8def-0123456789ab"), uuid.New()}
	stamps := []time.Time{
		time.Date(2026, 12, 7, 8, 30, 0, 0, time.UTC),
		time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC),
		time.Date(2026, 6, 30, 23, 59, 59, 999999000, time.FixedZone("CEST", 2*3600)), // written in UTC
		time.Now(),
	}
	for _, id := range ids {
		for _, ts := range stamps {
			want, err := json.Marshal(eventCreated{EventID: id.String(), EventTimestamp: audit.Time(ts), Message: eventCreatedMessage})
			require.NoError(t, err)
			got := appendEventCreated(nil, id, audit.Time(ts))
			assert.Equal(t, string(want)+"\n", string(got))
			assert.Len(t, got, eventCreatedSize, "the buffer is sized to the answer")
		}
	}
}

func TestWriteBodySetsTypeAndLength(t *testing.T) {
	rec := httptest.NewRecorder()
	writeBody(rec, http.StatusCreated, []byte("{\"a\":1}\n"))
	assert.Equal(t, http.StatusCreated, rec.Code)
	assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	assert.Equal(t, "8", rec.Header().Get("Content-Length"))
	assert.Equal(t, "{\"a\":1}\n", rec.Body.String())
}

func TestReadAllReadsTheWholeBodyWhateverItsAnnouncedLength(t *testing.T) {
	body := strings.Repeat("x", 700)
	for _, tc := range []struct {
		name   string
		length int64
	}{
		{"announced exactly", 700},
		{"unknown (chunked)", -1},
		{"announced short", 100},
		{"announced long", 5000},
		{"announced past the limit", 1 << 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// One byte per Read: the loop must gather every piece.
			got, err := readAll(iotest.OneByteReader(strings.NewReader(body)), tc.length, 1<<20)
			require.NoError(t, err)
			assert.Equal(t, body, string(got))
		})
	}
	got, err := readAll(strings.NewReader(body), 700, 1<<20)
	require.NoError(t, err)
	assert.Equal(t, 701, cap(got), "a body of the announced length is read into one buffer")

	got, err = readAll(strings.NewReader(body), 16<<20, 16<<20)
	require.NoError(t, err)
	assert.Equal(t, body, string(got))
	assert.Less(t, cap(got), presizeMax, "a client's Content-Length alone never sizes a buffer past presizeMax")

	boom := errors.New("connection reset")
	_, err = readAll(io.MultiReader(strings.NewReader("abc"), iotest.ErrReader(boom)), 700, 1<<20)
	assert.ErrorIs(t, err, boom)
}

func TestReadAllLetsTheLimitRefuseAnOversizedBody(t *testing.T) {
	rec := httptest.NewRecorder()
	r := http.MaxBytesReader(rec, io.NopCloser(strings.NewReader(strings.Repeat("x", 100))), 10)
	_, err := readAll(r, 100, 10)
	var tooLarge *http.MaxBytesError
	assert.ErrorAs(t, err, &tooLarge)
}

func TestObserveCountsEachRouteMethodAndStatusInItsOwnSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newHTTPMetrics(reg)
	for range 3 {
		m.observe("POST /api/v1/audit/events", "POST", 201, time.Millisecond)
	}
	m.observe("POST /api/v1/audit/events", "POST", 400, time.Millisecond)
	m.observe("GET /api/v1/audit/events", "GET", 200, 2*time.Second)
	m.observe("GET /api/v1/audit/events", "BREW", 200, time.Second) // a client's method: "other"

	series := map[string]float64{}
	histograms := 0
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += " " + l.GetName() + "=" + l.GetValue()
			}
			switch {
			case m.GetCounter() != nil:
				series[key] = m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				histograms++
				series[key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	assert.Equal(t, map[string]float64{
		"datastorage_http_requests_total code=201 method=POST route=POST /api/v1/audit/events":  3,
		"datastorage_http_requests_total code=400 method=POST route=POST /api/v1/audit/events":  1,
		"datastorage_http_requests_total code=200 method=GET route=GET /api/v1/audit/events":    1,
		"datastorage_http_requests_total code=200 method=other route=GET /api/v1/audit/events":  1,
		"datastorage_http_request_duration_seconds method=POST route=POST /api/v1/audit/events": 4,
		"datastorage_http_request_duration_seconds method=GET route=GET /api/v1/audit/events":   1,
		"datastorage_http_request_duration_seconds method=other route=GET /api/v1/audit/events": 1,
	}, series)
	assert.Equal(t, 3, histograms, "one histogram per route and method")
}
