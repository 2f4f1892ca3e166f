package objstore_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/failure"
	"kubernaut.ai/datastorage/internal/objstore"
)

// How each kind of S3 answer is classified. A real server does not answer 503 or SlowDown on
// demand, so a fake one does (a unit test); the real server's failures (killed, missing
// bucket, bad credentials) are in s3_test.go.
func TestS3AnswersAreClassified(t *testing.T) {
	// One attempt per call: the SDK's retries would only repeat the same answer, slowly.
	t.Setenv("AWS_MAX_ATTEMPTS", "1")
	t.Setenv("AWS_ACCESS_KEY_ID", "fake")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "fake")
	for _, tc := range []struct {
		status int
		code   string
		want   failure.Class
	}{
		{503, "ServiceUnavailable", failure.Unavailable},
		{503, "SlowDown", failure.Unavailable},
		{500, "InternalError", failure.Unavailable},
		{429, "TooManyRequests", failure.Unavailable},
		{400, "RequestTimeout", failure.Unavailable},
		{403, "AccessDenied", failure.Internal},
		{403, "InvalidAccessKeyId", failure.Internal},
		{400, "InvalidRequest", failure.Internal},
		{301, "PermanentRedirect", failure.Internal},
	} {
		t.Run(fmt.Sprint(tc.status, tc.code), func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodHead && strings.Count(strings.Trim(r.URL.Path, "/"), "/") == 0 {
					return // HeadBucket at Open: the bucket exists
				}
				w.Header().Set("Content-Type", "application/xml")
				w.WriteHeader(tc.status)
				if r.Method != http.MethodHead {
					fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>m</Message></Error>`, tc.code)
				}
			}))
			defer srv.Close()
			s, err := objstore.Open(t.Context(), "s3://bucket/p", objstore.Options{Endpoint: srv.URL, PathStyle: true})
			require.NoError(t, err)
			for name, err := range map[string]error{
				"put":    s.Put(t.Context(), "k", strings.NewReader("x"), 1),
				"delete": s.Delete(t.Context(), "k"),
				"list":   func() error { _, err := s.List(t.Context(), ""); return err }(),
			} {
				require.Error(t, err, name)
				assert.Equal(t, tc.want, failure.ClassOf(err), "%s: %v", name, err)
			}
		})
	}
}

// A server that accepts connections and never answers fails every call as Unavailable after
// the stall timeout, rather than holding it for as long as the context allows.
func TestS3SilentServerIsUnavailable(t *testing.T) {
	t.Setenv("AWS_MAX_ATTEMPTS", "1")
	t.Setenv("AWS_ACCESS_KEY_ID", "fake")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "fake")
	var silent atomic.Bool
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if silent.Load() {
			<-release // no answer while the test runs
		}
	}))
	defer srv.Close()
	defer close(release)
	s, err := objstore.Open(t.Context(), "s3://bucket", objstore.Options{Endpoint: srv.URL, PathStyle: true, StallTimeout: 200 * time.Millisecond})
	require.NoError(t, err)
	silent.Store(true)
	// The context would end the calls too, much later: it must still be live when they fail
	// (net/http's timeout errors also match context.DeadlineExceeded, so the error alone
	// does not tell).
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for name, err := range map[string]error{
		"put":  s.Put(ctx, "k", strings.NewReader("x"), 1),
		"list": func() error { _, err := s.List(ctx, ""); return err }(),
	} {
		require.Error(t, err, name)
		require.NoError(t, ctx.Err(), "%s failed only when the context ended: %v", name, err)
		assert.Equal(t, failure.Unavailable, failure.ClassOf(err), "%s: %v", name, err)
	}
}
