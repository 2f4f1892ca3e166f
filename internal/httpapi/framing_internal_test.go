package httpapi

import (
	"net"
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
