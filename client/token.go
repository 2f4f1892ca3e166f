package client

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
)

// TokenSource supplies the bearer token of each request. Implementations
// must be safe for concurrent use. An empty token sends no Authorization
// header.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
}

// StaticToken is a fixed bearer token.
type StaticToken string

// Token returns the token.
func (t StaticToken) Token(context.Context) (string, error) { return string(t), nil }

// FileToken reads the bearer token from a file, and reads it again whenever
// the file changes (another inode, size or modification time). That is
// what a Kubernetes projected service-account token needs: the kubelet
// replaces it before it expires, by swapping a symlink, and a process that
// read it once would go on sending an expired token.
//
// The file is checked with one stat per request, which costs microseconds.
// Surrounding white space is removed. If the file cannot be read after it
// has been read once, the last token is kept (a rotation in progress) and
// the error is returned only when there has never been a token.
type FileToken struct {
	path string

	mu    sync.Mutex
	token string
	info  os.FileInfo
}

// NewFileToken returns a TokenSource reading path.
func NewFileToken(path string) *FileToken { return &FileToken{path: path} }

// Token returns the file's current token.
func (f *FileToken) Token(context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fi, err := os.Stat(f.path)
	if err != nil {
		return f.keep(fmt.Errorf("datastorage: token file: %w", err))
	}
	if f.info != nil && os.SameFile(f.info, fi) && fi.Size() == f.info.Size() && fi.ModTime().Equal(f.info.ModTime()) {
		return f.token, nil
	}
	b, err := os.ReadFile(f.path)
	if err != nil {
		return f.keep(fmt.Errorf("datastorage: token file: %w", err))
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return f.keep(errors.New("datastorage: token file " + f.path + " is empty"))
	}
	f.token, f.info = tok, fi
	return tok, nil
}

// Invalidate makes the next Token read the file again even if it looks
// unchanged. The client calls it after a 401.
func (f *FileToken) Invalidate() {
	f.mu.Lock()
	f.info = nil
	f.mu.Unlock()
}

func (f *FileToken) keep(err error) (string, error) {
	if f.token != "" {
		return f.token, nil
	}
	return "", err
}

// invalidator is a TokenSource that can be told its token was refused.
type invalidator interface{ Invalidate() }
