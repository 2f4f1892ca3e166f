package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// rawRequest sends raw on a new connection to the server and returns the
// response, its body and whether the server closed the connection after it.
func (s *server) rawRequest(raw string) (*http.Response, string, bool) {
	s.t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(s.base, "http://"))
	require.NoError(s.t, err)
	defer c.Close()
	require.NoError(s.t, c.SetDeadline(time.Now().Add(time.Minute))) // a hung test's guard, not a measurement
	_, err = io.WriteString(c, raw)
	require.NoError(s.t, err)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(s.t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(s.t, err)
	closed := false
	if resp.Close {
		_, err = br.ReadByte()
		closed = err == io.EOF
	}
	return resp, string(body), closed
}

// TestHostileInputToTheBinary sends issue 18's hostile requests to the real
// binary, so that its wiring (the connection guard, the read timeout) is
// what is tested.
func TestHostileInputToTheBinary(t *testing.T) {
	t.Parallel()
	s := start(t, "DATASTORAGE_SERVER_READTIMEOUT=2s")
	corr := "rr-" + uuid.NewString()
	ev, err := json.Marshal(event(corr, nil))
	require.NoError(t, err)

	// Content-Length and Transfer-Encoding: 400, connection closed, nothing written.
	chunked := fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(ev), ev)
	resp, body, closed := s.rawRequest("POST /api/v1/audit/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
		"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked)
	require.Equal(t, 400, resp.StatusCode, body)
	assert.True(t, closed, "the connection is closed")

	// A form body (what a web page can make a browser send): 415.
	resp, body, _ = s.rawRequest(fmt.Sprintf("POST /api/v1/audit/events HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(ev), ev))
	require.Equal(t, 415, resp.StatusCode, body)
	assert.Contains(t, body, "unsupported-media-type")

	// NUL in a filter and in a path: 400 naming it.
	status, v := s.get("/api/v1/audit/events?namespace=%00")
	require.Equal(t, 400, status)
	assert.Contains(t, v["field_errors"], "namespace")
	status, v = s.get("/api/v1/audit/timeline/%ff")
	require.Equal(t, 400, status)
	assert.Contains(t, v["field_errors"], "correlation_id")

	// A body that stops half-way: 408 once the read timeout passes, with no addresses.
	resp, body, _ = s.rawRequest("POST /api/v1/audit/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n" + string(ev[:20]))
	require.Equal(t, 408, resp.StatusCode, body)
	assert.NotContains(t, body, "127.0.0.1")

	status, list := s.get("/api/v1/audit/events?correlation_id=" + corr)
	require.Equal(t, 200, status)
	assert.Empty(t, list["data"], "nothing was written")
	assert.NotContains(t, s.output(), "level=ERROR")
}
