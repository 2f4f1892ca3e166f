package objstore_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/failure"
	"kubernaut.ai/datastorage/internal/objstore"
)

// testContract runs the behaviour every target promises. newStore returns an empty store of
// the target under test; each subtest gets its own.
func testContract(t *testing.T, newStore func(t *testing.T) objstore.Store) {
	t.Run("PutThenOpenReadsRanges", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		body := []byte("0123456789abcdefghij")
		require.NoError(t, s.Put(ctx, "2026/11/a.parquet", bytes.NewReader(body), int64(len(body))))

		o, err := s.Open(ctx, "2026/11/a.parquet")
		require.NoError(t, err)
		defer func() { require.NoError(t, o.Close()) }()
		assert.Equal(t, int64(len(body)), o.Size())

		buf := make([]byte, 4)
		n, err := o.ReadAt(buf, 10)
		require.NoError(t, err)
		assert.Equal(t, "abcd", string(buf[:n]))

		n, err = o.ReadAt(buf, 0)
		require.NoError(t, err)
		assert.Equal(t, "0123", string(buf[:n]))

		// A read reaching past the end returns what there is and io.EOF, as io.ReaderAt says.
		n, err = o.ReadAt(buf, 18)
		assert.ErrorIs(t, err, io.EOF)
		assert.Equal(t, "ij", string(buf[:n]))

		n, err = o.ReadAt(buf, 20)
		assert.ErrorIs(t, err, io.EOF)
		assert.Zero(t, n)

		all := make([]byte, len(body))
		n, err = o.ReadAt(all, 0)
		require.NoError(t, err)
		assert.Equal(t, body, all[:n])
	})

	t.Run("EmptyObject", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		require.NoError(t, s.Put(ctx, "empty", strings.NewReader(""), 0))
		o, err := s.Open(ctx, "empty")
		require.NoError(t, err)
		defer o.Close()
		assert.Zero(t, o.Size())
		n, err := o.ReadAt(make([]byte, 1), 0)
		assert.ErrorIs(t, err, io.EOF)
		assert.Zero(t, n)
	})

	t.Run("PutReplaces", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		require.NoError(t, s.Put(ctx, "k", strings.NewReader("first version"), 13))
		require.NoError(t, s.Put(ctx, "k", strings.NewReader("second"), 6))
		assert.Equal(t, "second", readAll(t, s, "k"))
	})

	t.Run("OpenMissingIsNotFound", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		require.NoError(t, s.Put(ctx, "dir/present", strings.NewReader("x"), 1))
		for _, key := range []string{"absent", "dir/absent", "dir", "dir/present/below", "nodir/x"} {
			_, err := s.Open(ctx, key)
			require.ErrorIs(t, err, objstore.ErrNotFound, key)
			assert.Equal(t, failure.Data, failure.ClassOf(err), key)
			assert.Contains(t, err.Error(), key)
		}
	})

	t.Run("ListSortedByKeyUnderPrefix", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		// "a-b" sorts before "a/b" as a string ('-' < '/'), while a directory walk would
		// return a/… before a-b; "a0" sorts after both.
		keys := []string{"a/b", "a/c/d", "a-b", "a0", "b", "a/ba"}
		for i, k := range keys {
			body := strings.Repeat("x", i+1)
			require.NoError(t, s.Put(ctx, k, strings.NewReader(body), int64(len(body))))
		}
		list := func(prefix string) []objstore.Info {
			got, err := s.List(ctx, prefix)
			require.NoError(t, err, prefix)
			return got
		}
		assert.Equal(t, []objstore.Info{
			{Key: "a-b", Size: 3}, {Key: "a/b", Size: 1}, {Key: "a/ba", Size: 6},
			{Key: "a/c/d", Size: 2}, {Key: "a0", Size: 4}, {Key: "b", Size: 5},
		}, list(""))
		assert.Equal(t, []objstore.Info{{Key: "a/b", Size: 1}, {Key: "a/ba", Size: 6}, {Key: "a/c/d", Size: 2}}, list("a/"))
		assert.Equal(t, []objstore.Info{{Key: "a/b", Size: 1}, {Key: "a/ba", Size: 6}}, list("a/b"))
		assert.Equal(t, []objstore.Info{{Key: "a/c/d", Size: 2}}, list("a/c"))
		assert.Empty(t, list("zz/"))
		assert.Empty(t, list("a/c/d/"))
		assert.Empty(t, list("a/c/d/e/f"), "below an object")
	})

	t.Run("DeleteRemovesAndIsIdempotent", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		require.NoError(t, s.Put(ctx, "m/x", strings.NewReader("x"), 1))
		require.NoError(t, s.Put(ctx, "m/y", strings.NewReader("y"), 1))
		require.NoError(t, s.Delete(ctx, "m/x"))
		_, err := s.Open(ctx, "m/x")
		require.ErrorIs(t, err, objstore.ErrNotFound)
		require.NoError(t, s.Delete(ctx, "m/x"), "deleting again")
		require.NoError(t, s.Delete(ctx, "never/was"))
		got, err := s.List(ctx, "")
		require.NoError(t, err)
		assert.Equal(t, []objstore.Info{{Key: "m/y", Size: 1}}, got)
	})

	t.Run("InvalidKeysRefusedBeforeIO", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		for _, key := range []string{"", "/abs", "trailing/", "a//b", "../up", "a/../b", "a/./b", ".", "..", `a\b`, "a/.objstore-tmp-x"} {
			err := s.Put(ctx, key, strings.NewReader("x"), 1)
			require.ErrorIs(t, err, objstore.ErrInvalidKey, "put %q", key)
			assert.Equal(t, failure.Data, failure.ClassOf(err))
			_, err = s.Open(ctx, key)
			require.ErrorIs(t, err, objstore.ErrInvalidKey, "open %q", key)
			require.ErrorIs(t, s.Delete(ctx, key), objstore.ErrInvalidKey, "delete %q", key)
		}
		for _, prefix := range []string{"/", "../", "a/../", "a//"} {
			_, err := s.List(ctx, prefix)
			require.ErrorIs(t, err, objstore.ErrInvalidKey, "list %q", prefix)
		}
		got, err := s.List(ctx, "")
		require.NoError(t, err)
		assert.Empty(t, got, "no invalid put left anything")
	})

	t.Run("FailedPutLeavesNoKey", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		require.NoError(t, s.Put(ctx, "kept", strings.NewReader("old"), 3))
		big := int64(3 << 20) // past the first part of a multipart upload on S3
		// The body's own error comes back with its class, not one of the target's.
		boom := failure.Mark(errors.New("the producer failed"), failure.Data)
		cases := []struct {
			name  string
			key   string
			body  io.Reader
			size  int64
			check func(t *testing.T, err error)
		}{
			{"body error midway", "new", io.MultiReader(pattern(big), errReader{boom}), 2 * big,
				func(t *testing.T, err error) {
					require.ErrorIs(t, err, boom)
					assert.Equal(t, failure.Data, failure.ClassOf(err))
				}},
			{"body error on a replacement", "kept", io.MultiReader(strings.NewReader("new data"), errReader{boom}), 100,
				func(t *testing.T, err error) {
					require.ErrorIs(t, err, boom)
					assert.Equal(t, failure.Data, failure.ClassOf(err))
				}},
			{"body shorter than size", "short", strings.NewReader("abc"), 4,
				func(t *testing.T, err error) { assert.Equal(t, failure.Data, failure.ClassOf(err)) }},
			{"body longer than size", "long", strings.NewReader("abcde"), 4,
				func(t *testing.T, err error) { assert.Equal(t, failure.Data, failure.ClassOf(err)) }},
			{"negative size", "neg", strings.NewReader(""), -1,
				func(t *testing.T, err error) { assert.Equal(t, failure.Data, failure.ClassOf(err)) }},
		}
		for _, tc := range cases {
			err := s.Put(ctx, tc.key, tc.body, tc.size)
			require.Error(t, err, tc.name)
			tc.check(t, err)
		}
		cctx, cancel := context.WithCancel(ctx)
		err := s.Put(cctx, "canceled", &cancelAfter{r: pattern(big), n: 1 << 20, cancel: cancel}, big)
		require.ErrorIs(t, err, context.Canceled)
		assert.Equal(t, failure.Unavailable, failure.ClassOf(err))

		got, err := s.List(ctx, "")
		require.NoError(t, err)
		assert.Equal(t, []objstore.Info{{Key: "kept", Size: 3}}, got, "only the object stored before")
		assert.Equal(t, "old", readAll(t, s, "kept"))
	})

	t.Run("LargeObjectStreamed", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		const size = 20 << 20
		want := sha256.New()
		_, _ = io.Copy(want, pattern(size))

		require.NoError(t, s.Put(ctx, "big/object", pattern(size), size))

		o, err := s.Open(ctx, "big/object")
		require.NoError(t, err)
		defer o.Close()
		require.Equal(t, int64(size), o.Size())
		got := sha256.New()
		_, err = io.Copy(got, io.NewSectionReader(o, 0, o.Size()))
		require.NoError(t, err)
		assert.Equal(t, want.Sum(nil), got.Sum(nil))

		// A range in the middle, across an S3 part boundary, at an odd offset.
		buf := make([]byte, 1000)
		off := int64(8<<20 - 333)
		n, err := o.ReadAt(buf, off)
		require.NoError(t, err)
		require.Equal(t, len(buf), n)
		exp := make([]byte, len(buf))
		_, _ = io.ReadFull(io.NewSectionReader(patternAt{}, off, int64(len(buf))), exp)
		assert.Equal(t, exp, buf)

		// Concurrent reads of one Object, as a Parquet reader fetching row groups in parallel.
		var wg sync.WaitGroup
		errs := make([]error, 8)
		for i := range errs {
			wg.Go(func() {
				off := int64(i) * (size / 8)
				got := make([]byte, 64<<10)
				if _, err := o.ReadAt(got, off); err != nil {
					errs[i] = err
					return
				}
				want := make([]byte, len(got))
				_, _ = patternAt{}.ReadAt(want, off)
				if !bytes.Equal(got, want) {
					errs[i] = fmt.Errorf("range at %d differs", off)
				}
			})
		}
		wg.Wait()
		for _, err := range errs {
			assert.NoError(t, err)
		}
	})
}

// readAll returns the whole object under key.
func readAll(t *testing.T, s objstore.Store, key string) string {
	t.Helper()
	o, err := s.Open(t.Context(), key)
	require.NoError(t, err)
	defer o.Close()
	b, err := io.ReadAll(io.NewSectionReader(o, 0, o.Size()))
	require.NoError(t, err)
	return string(b)
}

// patternAt serves bytes that differ with their offset within any 251 bytes (a prime, so
// no power-of-two part or buffer size lines up with it), so a misplaced range shows.
type patternAt struct{}

// pattern returns a stream of the first n bytes of patternAt.
func pattern(n int64) io.Reader { return io.NewSectionReader(patternAt{}, 0, n) }

func (patternAt) ReadAt(b []byte, off int64) (int, error) {
	for i := range b {
		b[i] = byte((off + int64(i)) % 251)
	}
	return len(b), nil
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// cancelAfter cancels its context once n bytes were read, as a caller giving up mid-upload.
type cancelAfter struct {
	r      io.Reader
	n      int
	read   int
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(b []byte) (int, error) {
	if c.read >= c.n {
		c.cancel()
	}
	n, err := c.r.Read(b)
	c.read += n
	return n, err
}
