package testenv

import (
	"io"
	"net"
	"sync"
	"testing"
)

// Balancer is a TCP load balancer on 127.0.0.1 that hands each new
// connection to the next of its backends in turn, as a Kubernetes Service
// (CloudNativePG's -ro service) spreads connections over the standbys
// behind it. pgx does not balance a multi-host connection string (it
// tries the hosts in order; libpq's load_balance_hosts has no pgx
// equivalent), so a test that needs one address in front of several
// servers uses this. Close stops it and cuts the connections it carries.
type Balancer struct {
	ln       net.Listener
	backends []string

	mu    sync.Mutex
	next  int
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// NewBalancer starts a Balancer over backends (host:port), closed by
// t.Cleanup.
func NewBalancer(t testing.TB, backends ...string) *Balancer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &Balancer{ln: ln, backends: backends, conns: map[net.Conn]struct{}{}}
	b.wg.Go(b.serve)
	t.Cleanup(b.Close)
	return b
}

// Addr is the balancer's host:port.
func (b *Balancer) Addr() string { return b.ln.Addr().String() }

func (b *Balancer) serve() {
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.mu.Lock()
		backend := b.backends[b.next%len(b.backends)]
		b.next++
		b.mu.Unlock()
		b.wg.Go(func() { b.pipe(c, backend) })
	}
}

func (b *Balancer) pipe(client net.Conn, backend string) {
	server, err := net.Dial("tcp", backend)
	if err != nil {
		client.Close()
		return
	}
	if !b.track(client, server) {
		return
	}
	defer b.untrack(client, server)
	done := make(chan struct{}, 2)
	copyHalf := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		// One side ended: end both, as a proxy does.
		client.Close()
		server.Close()
		done <- struct{}{}
	}
	go copyHalf(server, client)
	go copyHalf(client, server)
	<-done
	<-done
}

func (b *Balancer) track(cs ...net.Conn) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.conns == nil { // closed
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		b.conns[c] = struct{}{}
	}
	return true
}

func (b *Balancer) untrack(cs ...net.Conn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range cs {
		delete(b.conns, c)
	}
}

// Close stops accepting, closes every connection carried and waits for
// its goroutines.
func (b *Balancer) Close() {
	_ = b.ln.Close()
	b.mu.Lock()
	for c := range b.conns {
		c.Close()
	}
	b.conns = nil
	b.mu.Unlock()
	b.wg.Wait()
}
