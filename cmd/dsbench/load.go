package main

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
)

// loopbackClient is an HTTP client that can only reach 127.0.0.1: the dialer
// refuses every other address, whatever URL it is handed.
func loopbackClient(conns int) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Client{
		Timeout: 60 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				host, _, err := net.SplitHostPort(addr)
				if err != nil {
					return nil, err
				}
				if host != "127.0.0.1" {
					return nil, fmt.Errorf("dsbench talks to 127.0.0.1 only, not %s", host)
				}
				return d.DialContext(ctx, network, addr)
			},
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
			ForceAttemptHTTP2:   false,
		},
	}
}

// loadSpec is one HTTP scenario.
type loadSpec struct {
	name        string
	batch       int // events per request; 1 posts to /events, more to /events/batch
	concurrency int
	warmup      time.Duration
	duration    time.Duration
	// parentEvery makes every n-th single-event request name the worker's
	// previous event as parent_event_id (0: never).
	parentEvery int
}

// loadResult is what a scenario measured.
type loadResult struct {
	spec      loadSpec
	requests  int64
	events    int64
	errors    map[int]int64 // status (0: transport error) → count
	elapsed   time.Duration // the measured window
	latencies []time.Duration
	cpu       cpuSplit
	peakRSS   int64
	firstErr  string
	deep      *deepDive
	// work is PostgreSQL's counters over the measured window (writepath.go).
	work *pgWork
}

func (r loadResult) eventsPerSec() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.events) / r.elapsed.Seconds()
}

func (r loadResult) percentile(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	i := int(float64(len(r.latencies)-1) * p)
	return r.latencies[i]
}

func (r loadResult) max() time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	return r.latencies[len(r.latencies)-1]
}

func (r loadResult) errorCount() int64 {
	var n int64
	for _, c := range r.errors {
		n += c
	}
	return n
}

// maxRequestsPerWorker bounds every worker loop in count as the clock bounds
// it in time.
const maxRequestsPerWorker = 2_000_000

// runLoad drives the API with spec.concurrency workers, each sending one
// request at a time on its own kept-alive connection, for the warm-up and
// then the measured window. Only requests that start inside the window
// count.
func runLoad(ctx context.Context, e *env, spec loadSpec, bodies [][]byte, probe func(phase string)) loadResult {
	path := "/api/v1/audit/events"
	if spec.batch > 1 {
		path += "/batch"
	}
	start := time.Now()
	measureFrom := start.Add(spec.warmup)
	measureTo := measureFrom.Add(spec.duration)

	var (
		mu   sync.Mutex
		res  = loadResult{spec: spec, errors: map[int]int64{}}
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
		if !sleepUntil(ctx, measureFrom) {
			return
		}
		probe("start")
		sleepUntil(ctx, measureTo)
		probe("end")
	}()
	for w := range spec.concurrency {
		wg.Go(func() {
			c := &rawClient{addr: e.apiAddr}
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
				if spec.parentEvery > 0 && parent != "" && n%spec.parentEvery == 0 {
					buf = withParent(buf, body, parent)
					body = buf
				}
				status, resp, err := c.post(path, body)
				d := time.Since(t0)
				measured := !t0.Before(measureFrom)
				if status == http.StatusCreated {
					if spec.batch == 1 {
						if id := eventID(resp); id != "" {
							parent = id
						}
					}
					if measured {
						reqs++
						events += int64(spec.batch)
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
			res.requests += reqs
			res.events += events
			res.latencies = append(res.latencies, lat...)
			for k, v := range errs {
				res.errors[k] += v
			}
			if res.firstErr == "" {
				res.firstErr = firstErr
			}
		})
	}
	wg.Wait()
	<-probeDone
	res.elapsed = spec.duration
	slices.Sort(res.latencies)
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
		conn, err := dialLoopback(c.addr)
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

// dialLoopback connects to addr, which must be on 127.0.0.1.
func dialLoopback(addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if host != "127.0.0.1" {
		return nil, fmt.Errorf("dsbench talks to 127.0.0.1 only, not %s", host)
	}
	return net.DialTimeout("tcp", addr, 5*time.Second)
}

func sleepUntil(ctx context.Context, t time.Time) bool {
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
