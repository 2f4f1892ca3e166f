package httpapi

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
)

// A request with both Content-Length and Transfer-Encoding is how request
// smuggling starts: a proxy in front that frames the body by one header and
// a server that frames it by the other disagree on where the next request
// begins. net/http follows RFC 9112 (Transfer-Encoding wins) but deletes the
// Content-Length header before a handler could see it, and keeps the
// connection open. So the raw request heads are watched on the connection
// itself: GuardListener marks a connection on which a head carried both, and
// the API refuses that request with 400 and closes the connection.
//
// The watch needs the plain bytes, so it covers plain-TCP listeners only: a
// TLS listener hands net/http *tls.Conn values, which must stay unwrapped
// for HTTP/2 and the handshake to work.

// GuardListener wraps the API's (plain TCP) listener for the framing check;
// the server must also set ConnContext.
func GuardListener(l net.Listener) net.Listener { return framingListener{l} }

// ConnContext is the http.Server ConnContext that gives handlers the
// framing watch of a connection accepted by GuardListener.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if fc, ok := c.(*framingConn); ok {
		return context.WithValue(ctx, framingKey, fc)
	}
	return ctx
}

type framingKeyType struct{}

var framingKey framingKeyType

// framingConflict reports whether a request head read on r's connection
// carried both Content-Length and Transfer-Encoding.
func framingConflict(r *http.Request) bool {
	fc, ok := r.Context().Value(framingKey).(*framingConn)
	return ok && fc.conflict.Load()
}

type framingListener struct{ net.Listener }

func (l framingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &framingConn{Conn: c}, nil
}

// framingConn watches the lines read from a connection: a block of lines
// ended by an empty line (a request head, but also the end of a chunked
// body) that holds both a Content-Length and a Transfer-Encoding line sets
// conflict. Reading is done by the one goroutine serving the connection;
// conflict is read by the handler.
type framingConn struct {
	net.Conn
	// line holds the start of the current line, lower-cased (a CR
	// included); n counts its bytes (beyond len(line) too).
	line         [len("transfer-encoding:")]byte
	n            int
	sawCL, sawTE bool
	conflict     atomic.Bool
}

func (c *framingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	// Line by line: only a line's first bytes are looked at, so a body
	// (usually one long line) costs a search for '\n', not a loop per byte.
	for b := p[:n]; len(b) > 0; {
		seg, rest, eol := bytes.Cut(b, []byte{'\n'})
		for i := 0; i < len(seg) && c.n+i < len(c.line); i++ {
			ch := seg[i]
			if 'A' <= ch && ch <= 'Z' {
				ch += 'a' - 'A'
			}
			c.line[c.n+i] = ch
		}
		c.n += len(seg)
		if eol {
			c.endLine()
		}
		b = rest
	}
	return n, err
}

func (c *framingConn) endLine() {
	l := string(c.line[:min(c.n, len(c.line))])
	switch {
	case c.n == 0 || l == "\r":
		if c.sawCL && c.sawTE {
			c.conflict.Store(true)
		}
		c.sawCL, c.sawTE = false, false
	case strings.HasPrefix(l, "content-length:"):
		c.sawCL = true
	case l == "transfer-encoding:":
		c.sawTE = true
	}
	c.n = 0
}
