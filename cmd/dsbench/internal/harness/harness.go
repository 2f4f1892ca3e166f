// Package harness runs what dsbench measures: a PostgreSQL with the
// benchmark's durable settings, a Redis and the datastorage server, all on
// 127.0.0.1, with the process figures (CPU time, peak RSS) the reports need.
// Every connection it and the load generator open goes to 127.0.0.1 only.
package harness

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// Logf writes one progress line to stderr, stamped with the time: the
// report goes to a file, the progress to the terminal.
func Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "dsbench %s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// Prepare makes the work directory (the caller removes it) and the server
// binary: serverBin, or ./cmd/datastorage built into the work directory
// when serverBin is "".
func Prepare(ctx context.Context, serverBin string) (workDir, bin string, err error) {
	workDir, err = os.MkdirTemp("", "dsbench-")
	if err != nil {
		return "", "", err
	}
	bin = serverBin
	if bin == "" {
		Logf("building ./cmd/datastorage")
		if bin, err = buildServer(ctx, workDir); err != nil {
			return "", "", err
		}
	}
	if bin, err = filepath.Abs(bin); err != nil {
		return "", "", err
	}
	return workDir, bin, nil
}

// buildServer builds ./cmd/datastorage into dir.
func buildServer(ctx context.Context, dir string) (string, error) {
	out := filepath.Join(dir, "datastorage")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/datastorage")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/datastorage: %w", err)
	}
	return out, nil
}

// LoopbackClient is an HTTP client that can only reach 127.0.0.1: the dialer
// refuses every other address, whatever URL it is handed.
func LoopbackClient(conns int) *http.Client {
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

// DialLoopback connects to addr, which must be on 127.0.0.1.
func DialLoopback(addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if host != "127.0.0.1" {
		return nil, fmt.Errorf("dsbench talks to 127.0.0.1 only, not %s", host)
	}
	return net.DialTimeout("tcp", addr, 5*time.Second)
}
