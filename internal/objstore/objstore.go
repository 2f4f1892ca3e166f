package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"kubernaut.ai/datastorage/internal/failure"
)

// Store is one target: a directory or a bucket prefix. Its methods are safe for concurrent
// use.
type Store interface {
	// Put stores size bytes read from body under key, replacing any previous object. The key
	// becomes visible only complete: a Put that fails (body error, short or long body, ended
	// context, crash) leaves the previous object or nothing. Put reads body as a stream and
	// does not hold it in memory.
	Put(ctx context.Context, key string, body io.Reader, size int64) error
	// Open returns the object stored under key for random reads, or an error matching
	// ErrNotFound if there is none.
	Open(ctx context.Context, key string) (Object, error)
	// List returns the objects whose key starts with prefix (a plain string prefix, not only
	// a directory), sorted by key.
	List(ctx context.Context, prefix string) ([]Info, error)
	// Delete removes the object under key. Deleting a key that does not exist is not an
	// error, as on S3, so a retried delete succeeds.
	Delete(ctx context.Context, key string) error
}

// Object is an opened object. ReadAt may be called concurrently; on S3 each call is one
// ranged GET, so callers read in blocks (a Parquet footer, a row group), not byte by byte.
// An Object never mixes two versions of its key: after the key is replaced or deleted, the
// file target keeps reading the version it opened, the S3 target's reads fail (each GET is
// conditional on the ETag seen at Open).
type Object interface {
	io.ReaderAt
	io.Closer
	// Size returns the object's length in bytes as of Open.
	Size() int64
}

// Info describes one listed object.
type Info struct {
	// Key is the object's key, without the target's directory or bucket prefix.
	Key string
	// Size is the object's length in bytes.
	Size int64
}

// Options configures the S3 target; the file target ignores them. Empty fields take the
// standard AWS behaviour, so a pod with AWS environment variables or a web identity needs no
// options at all.
type Options struct {
	// Endpoint is the S3 service URL (https://minio.example:9000); empty means AWS S3 in
	// Region.
	Endpoint string
	// Region is the bucket's region; empty takes AWS_REGION / the AWS config, else us-east-1
	// (which S3-compatible servers accept).
	Region string
	// PathStyle addresses buckets as endpoint/bucket instead of bucket.endpoint, as most
	// S3-compatible servers need.
	PathStyle bool
	// AccessKeyIDFile and SecretAccessKeyFile name files holding static credentials (the
	// project reads secrets from files, as mounted Kubernetes secrets). Both or neither; when
	// neither, the standard AWS credential chain is used (environment, shared config and
	// credentials files, web identity, container and instance roles).
	AccessKeyIDFile     string
	SecretAccessKeyFile string
	// StallTimeout is how long an S3 request may wait for the answer's headers, or between
	// two reads of its body, before it fails as Unavailable; 0 means one minute. It is not a
	// bound on a whole transfer, which the caller's context gives: it catches a server that
	// accepted the connection and went silent, which would otherwise hold a Put or a ReadAt
	// forever when the context has no deadline.
	StallTimeout time.Duration
}

// ErrNotFound is returned (wrapped) by Store.Open when no object has the key. It is class
// Data: asking again gives the same answer.
var ErrNotFound = failure.Mark(errors.New("objstore: object not found"), failure.Data)

// ErrInvalidKey is returned (wrapped) by every Store method given a key or prefix that is not
// a clean slash path (see the package documentation); it is class Data.
var ErrInvalidKey = failure.Mark(errors.New("objstore: invalid key"), failure.Data)

// errConfig marks errors of a target's configuration: the URL, the options, a missing
// directory or bucket.
func errConfig(format string, args ...any) error {
	return failure.Mark(fmt.Errorf(format, args...), failure.Internal)
}

// Open returns the target named by a URL: file:///abs/dir or s3://bucket/prefix. It checks
// that the target exists and can be reached (the directory is a directory; the bucket
// answers), so a misconfigured target fails at start, not at the first archive.
func Open(ctx context.Context, rawURL string, opts Options) (Store, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, errConfig("objstore: target %q: %w", rawURL, err)
	}
	switch u.Scheme {
	case "file":
		return openFile(u)
	case "s3":
		return openS3(ctx, u, opts)
	case "":
		return nil, errConfig("objstore: target %q: no scheme, want file:///abs/dir or s3://bucket/prefix", rawURL)
	default:
		return nil, errConfig("objstore: target %q: unsupported scheme %q, want file or s3", rawURL, u.Scheme)
	}
}

// checkKey returns ErrInvalidKey unless key is a clean slash path.
func checkKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	}
	if strings.Contains(key, `\`) || strings.ContainsRune(key, 0) {
		return fmt.Errorf("%w %q: backslash or NUL", ErrInvalidKey, key)
	}
	for el := range strings.SplitSeq(key, "/") {
		switch {
		case el == "" || el == "." || el == "..":
			return fmt.Errorf("%w %q: empty, \".\" or \"..\" element (or a leading or trailing slash)", ErrInvalidKey, key)
		case strings.HasPrefix(el, tempPrefix):
			return fmt.Errorf("%w %q: element starts with %q, reserved for uploads in progress", ErrInvalidKey, key, tempPrefix)
		}
	}
	return nil
}

// checkPrefix accepts "" and any prefix of a valid key: the complete elements must be valid,
// the last (partial) one may be empty ("2026/") but not "." or "..".
func checkPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if strings.HasSuffix(prefix, "/") {
		return checkKey(prefix + "x")
	}
	return checkKey(prefix)
}

// countingReader counts what it reads of a Put's body (given as a LimitReader of size+1
// bytes, so a body longer than announced is seen without reading the rest of it), remembers
// the body's own error, and stops when ctx ends.
type countingReader struct {
	ctx context.Context
	r   io.Reader
	n   int64
	err error // the body's or the context's error, not io.EOF
}

func (c *countingReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		c.err = err
		return 0, err
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}

// errSize is the error of a body whose length is not the size given to Put.
func errSize(key string, size, got int64, longer bool) error {
	if longer {
		return failure.Mark(fmt.Errorf("objstore: put %q: body longer than the announced %d bytes", key, size), failure.Data)
	}
	return failure.Mark(fmt.Errorf("objstore: put %q: body ended after %d of the announced %d bytes", key, got, size), failure.Data)
}
