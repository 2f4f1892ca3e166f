package httpapi

import (
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// fedConn is a net.Conn whose reads return the given pieces in turn.
type fedConn struct {
	net.Conn
	pieces []string
}

func (c *fedConn) Read(p []byte) (int, error) {
	n := copy(p, c.pieces[0])
	c.pieces = c.pieces[1:]
	return n, nil
}

// TestFramingWatchWhateverTheReadBoundaries feeds request heads split at
// every byte: a line or a CRLF cut across two reads is still seen.
func TestFramingWatchWhateverTheReadBoundaries(t *testing.T) {
	t.Parallel()
	for head, want := range map[string]bool{
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n": true,
		"POST / HTTP/1.1\r\nTRANSFER-ENCODING: chunked\r\ncontent-length: 4\r\n\r\n":            true,
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nTransfer-Encoding: chunked\r\n": false,
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nContent-Length: 4\r\n\r\n":   false, // body lines after a block end
		"POST / HTTP/1.1\r\nX-Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n":          false,
	} {
		for cut := 1; cut < len(head); cut++ {
			c := &framingConn{Conn: &fedConn{pieces: []string{head[:cut], head[cut:]}}}
			buf := make([]byte, len(head))
			_, _ = c.Read(buf)
			_, _ = c.Read(buf)
			assert.Equal(t, want, c.conflict.Load(), "%q cut at %d", head, cut)
		}
	}
}

// loopConn serves the same bytes forever, like a client streaming a body.
type loopConn struct {
	net.Conn
	data []byte
	off  int
}

func (c *loopConn) Read(p []byte) (int, error) {
	n := copy(p, c.data[c.off:])
	c.off = (c.off + n) % len(c.data)
	return n, nil
}

// BenchmarkFramingWatch is the watch's cost per byte of a JSON batch body,
// read in net/http's 4 KiB pieces.
func BenchmarkFramingWatch(b *testing.B) {
	body := []byte(`[` + strings.Repeat(`{"version":"1.0","event_type":"gateway.signal.received","event_data":{"a":1}},`, 4000) + `{}]`)
	c := &framingConn{Conn: &loopConn{data: body}}
	buf := make([]byte, 4096)
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	for range b.N {
		_, _ = c.Read(buf)
	}
}
