package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"kubernaut.ai/datastorage/cmd/dsbench/internal/harness"
)

// Spec is one HTTP scenario.
type Spec struct {
	Name        string
	Batch       int // events per request; 1 posts to /events, more to /events/batch
	Concurrency int
	Warmup      time.Duration
	Duration    time.Duration
	// ParentEvery makes every n-th single-event request name the worker's
	// previous event as parent_event_id (0: never).
	ParentEvery int
	// Queued counts 202 Accepted as answered too: the scenario sends the
	// writes to the spool on purpose (PostgreSQL stopped), where 202 is the
	// success answer.
	Queued bool
}

// Result is what one run of a Spec measured, over the measured window only.
type Result struct {
	Spec      Spec
	Requests  int64         // answered 201 (or 202 with Spec.Queued)
	Events    int64         // in those requests
	Errors    map[int]int64 // status (0: transport error) → count
	Elapsed   time.Duration // the measured window
	Latencies []time.Duration
	FirstErr  string // the first failure's status and body, for the log
}

// EventsPerSec is the throughput of the measured window.
func (r Result) EventsPerSec() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Events) / r.Elapsed.Seconds()
}

// Percentile is the latency below which the fraction p (0..1) of the
// answered requests fell: the nearest-rank value of the sorted latencies,
// rounding the rank down (so p=1 is the maximum and p=0 the minimum). 0
// when nothing was answered.
func (r Result) Percentile(p float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	i := int(float64(len(r.Latencies)-1) * p)
	return r.Latencies[i]
}

// Max is the slowest answered request.
func (r Result) Max() time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	return r.Latencies[len(r.Latencies)-1]
}

// ErrorCount is the requests of the measured window not answered 201 (or
// 202 with Spec.Queued).
func (r Result) ErrorCount() int64 {
	var n int64
	for _, c := range r.Errors {
		n += c
	}
	return n
}

// maxRequestsPerWorker bounds every worker loop in count as the clock bounds
// it in time.
const maxRequestsPerWorker = 2_000_000

// Run drives the API at apiAddr (127.0.0.1:port) with spec.Concurrency
// workers, each sending one request at a time on its own kept-alive
// connection, the bodies in turn, for the warm-up and then the measured
// window. Only requests that start inside the window count. probe, if not
// nil, is called with "start" and "end" on the clock at the window's edges.
func Run(ctx context.Context, apiAddr string, spec Spec, bodies [][]byte, probe func(phase string)) Result {
	path := "/api/v1/audit/events"
	if spec.Batch > 1 {
		path += "/batch"
	}
	start := time.Now()
	measureFrom := start.Add(spec.Warmup)
	measureTo := measureFrom.Add(spec.Duration)

	var (
		mu   sync.Mutex
		res  = Result{Spec: spec, Errors: map[int]int64{}}
		next atomic.Int64
		wg   sync.WaitGroup
	)
	// The probe marks the measured window for the CPU and wait-event
	// samplers, on the clock rather than on any worker's progress.
	probeDone := make(chan struct{})
	go func() {
		defer close(probeDone)
		if probe == nil {
			return
		}
		if !SleepUntil(ctx, measureFrom) {
			return
		}
		probe("start")
		SleepUntil(ctx, measureTo)
		probe("end")
	}()
	for w := range spec.Concurrency {
		wg.Go(func() {
			c := &rawClient{addr: apiAddr}
			defer c.close()
			var (
				lat      = make([]time.Duration, 0, 4096)
				reqs     int64
				events   int64
				errs     = map[int]int64{}
				firstErr string
				parent   string
				buf      []byte
			)
			for n := 0; n < maxRequestsPerWorker; n++ {
				if ctx.Err() != nil {
					break
				}
				t0 := time.Now()
				if !t0.Before(measureTo) {
					break
				}
				body := bodies[int(next.Add(1))%len(bodies)]
				if spec.ParentEvery > 0 && parent != "" && n%spec.ParentEvery == 0 {
					buf = withParent(buf, body, parent)
					body = buf
				}
				status, resp, err := c.post(path, body)
				d := time.Since(t0)
				measured := !t0.Before(measureFrom)
				if status == http.StatusCreated || spec.Queued && status == http.StatusAccepted {
					if spec.Batch == 1 {
						if id := eventID(resp); id != "" {
							parent = id
						}
					}
					if measured {
						reqs++
						events += int64(spec.Batch)
						lat = append(lat, d)
					}
					continue
				}
				if measured {
					errs[status]++
				}
				if firstErr == "" {
					msg := string(resp)
					if err != nil {
						msg = err.Error()
					}
					firstErr = fmt.Sprintf("worker %d: status %d: %.300s", w, status, msg)
				}
				if status == 0 || status == http.StatusServiceUnavailable {
					// Back off a little so a failing server is not hammered.
					time.Sleep(10 * time.Millisecond)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			res.Requests += reqs
			res.Events += events
			res.Latencies = append(res.Latencies, lat...)
			for k, v := range errs {
				res.Errors[k] += v
			}
			if res.FirstErr == "" {
				res.FirstErr = firstErr
			}
		})
	}
	wg.Wait()
	<-probeDone
	res.Elapsed = spec.Duration
	slices.Sort(res.Latencies)
	runtime.GC()
	return res
}

// rawClient is a minimal HTTP/1.1 client for one kept-alive connection:
// it writes the request bytes itself and parses the answer with
// http.ReadResponse. net/http's Transport costs several goroutine switches
// per request, and the load generator shares the CPUs with what it
// measures, so every microsecond it spends is taken from the server.
type rawClient struct {
	addr string // 127.0.0.1:port
	conn net.Conn
	br   *bufio.Reader
	wbuf []byte
	body []byte
}

func (c *rawClient) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// post sends body and returns the status and the response body (valid
// until the next call). Status 0 means a transport error.
func (c *rawClient) post(path string, body []byte) (int, []byte, error) {
	if c.conn == nil {
		conn, err := harness.DialLoopback(c.addr)
		if err != nil {
			return 0, nil, err
		}
		c.conn, c.br = conn, bufio.NewReaderSize(conn, 64<<10)
	}
	c.wbuf = append(c.wbuf[:0], "POST "...)
	c.wbuf = append(c.wbuf, path...)
	c.wbuf = append(c.wbuf, " HTTP/1.1\r\nHost: "...)
	c.wbuf = append(c.wbuf, c.addr...)
	c.wbuf = append(c.wbuf, "\r\nContent-Type: application/json\r\nContent-Length: "...)
	c.wbuf = strconv.AppendInt(c.wbuf, int64(len(body)), 10)
	c.wbuf = append(c.wbuf, "\r\n\r\n"...)
	c.wbuf = append(c.wbuf, body...)
	_ = c.conn.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := c.conn.Write(c.wbuf); err != nil {
		c.close()
		return 0, nil, err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		c.close()
		return 0, nil, err
	}
	c.body, err = readAll(c.body[:0], resp.Body)
	resp.Body.Close()
	if err != nil {
		c.close()
		return 0, nil, err
	}
	if resp.Close {
		c.close()
	}
	return resp.StatusCode, c.body, nil
}

// SleepUntil waits until t and reports true, or false when ctx ends first.
func SleepUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

func readAll(dst []byte, r io.Reader) ([]byte, error) {
	for {
		if len(dst) == cap(dst) {
			dst = append(dst, 0)[:len(dst)]
		}
		n, err := r.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if errors.Is(err, io.EOF) {
			return dst, nil
		}
		if err != nil {
			return dst, err
		}
	}
}

// eventID picks event_id out of a 201 answer without a full decode.
func eventID(b []byte) string {
	const key = `"event_id":"`
	i := bytes.Index(b, []byte(key))
	if i < 0 || len(b) < i+len(key)+36 {
		return ""
	}
	return string(b[i+len(key) : i+len(key)+36])
}
