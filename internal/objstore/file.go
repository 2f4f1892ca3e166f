package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"kubernaut.ai/datastorage/internal/failure"
)

// tempPrefix starts the name of every file being written by Put. List skips such files and
// keys may not contain them, so an upload cut short by a crash is never listed or opened.
const tempPrefix = ".objstore-tmp-"

// fileStore is the file:// target: a directory whose files are the objects.
type fileStore struct {
	root string // absolute, cleaned
}

// fileRoot returns the absolute directory a file:// URL names.
func fileRoot(u *url.URL) (string, error) {
	if u.Host != "" && u.Host != "localhost" {
		return "", fmt.Errorf("file URL %q has host %q; write file:///abs/dir (three slashes)", u.String(), u.Host)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("file URL %q: no query or fragment allowed", u.String())
	}
	if u.Path == "" || !filepath.IsAbs(u.Path) {
		return "", fmt.Errorf("file URL %q: the directory must be an absolute path (file:///abs/dir)", u.String())
	}
	return filepath.Clean(u.Path), nil
}

func openFile(u *url.URL) (*fileStore, error) {
	root, err := fileRoot(u)
	if err != nil {
		return nil, errConfig("objstore: %w", err)
	}
	fi, err := os.Stat(root)
	if err != nil {
		return nil, fileErr("objstore: target directory", err)
	}
	if !fi.IsDir() {
		return nil, errConfig("objstore: target %s is not a directory", root)
	}
	return &fileStore{root: root}, nil
}

func (s *fileStore) path(key string) string {
	return filepath.Join(s.root, filepath.FromSlash(key))
}

// Put writes to a temporary file in the key's directory, then renames it over the key:
// rename is atomic on POSIX file systems, and the fsyncs of the file before and the
// directory after make the key durable once Put returns.
func (s *fileStore) Put(ctx context.Context, key string, body io.Reader, size int64) (err error) {
	op := fmt.Sprintf("objstore: put %q", key)
	if err := checkKey(key); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if size < 0 {
		return failure.Mark(fmt.Errorf("%s: negative size %d", op, size), failure.Data)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	dst := s.path(key)
	dir := filepath.Dir(dst)
	if err := s.mkdirAll(dir); err != nil {
		return fileErr(op, err)
	}
	f, err := os.CreateTemp(dir, tempPrefix+filepath.Base(dst)+"-*")
	if err != nil {
		return fileErr(op, err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	cr := &countingReader{ctx: ctx, r: io.LimitReader(body, size+1)}
	// Not io.Copy: *os.File's ReadFrom may take the body's error and ours in any order; the
	// buffer makes which side failed plain.
	n, err := io.CopyBuffer(struct{ io.Writer }{f}, cr, make([]byte, 32<<10))
	switch {
	case cr.err != nil: // the body failed, or ctx ended: its error and class
		return fmt.Errorf("%s: reading the body: %w", op, cr.err)
	case err != nil: // writing the file failed
		return fileErr(op, err)
	}
	if n != size {
		return errSize(key, size, n, n > size)
	}
	if err := f.Sync(); err != nil {
		return fileErr(op, err)
	}
	if err := f.Close(); err != nil {
		return fileErr(op, err)
	}
	if err := os.Rename(f.Name(), dst); err != nil {
		return fileErr(op, err)
	}
	if err := syncDir(dir); err != nil {
		return fileErr(op, err)
	}
	return nil
}

// mkdirAll creates dir and its missing parents below the root, fsyncing each parent after
// creating a child, so that the directory entries of a durable key are durable too.
func (s *fileStore) mkdirAll(dir string) error {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return &fs.PathError{Op: "mkdir", Path: dir, Err: syscall.ENOTDIR}
		}
		return nil
	}
	if dir == s.root {
		return &fs.PathError{Op: "stat", Path: dir, Err: fs.ErrNotExist}
	}
	parent := filepath.Dir(dir)
	if err := s.mkdirAll(parent); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o750); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return syncDir(parent)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

func (s *fileStore) Open(ctx context.Context, key string) (Object, error) {
	op := fmt.Sprintf("objstore: open %q", key)
	if err := checkKey(key); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	f, err := os.Open(s.path(key))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil, fmt.Errorf("%s: %w", op, ErrNotFound)
		}
		return nil, fileErr(op, err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, fileErr(op, err)
	}
	if !fi.Mode().IsRegular() { // a directory is a key prefix, not an object
		_ = f.Close()
		return nil, fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	return &fileObject{File: f, size: fi.Size()}, nil
}

// fileObject is an open file; *os.File's ReadAt is safe for concurrent use (pread).
type fileObject struct {
	*os.File
	size int64
}

func (o *fileObject) Size() int64 { return o.size }

func (s *fileStore) List(ctx context.Context, prefix string) ([]Info, error) {
	op := fmt.Sprintf("objstore: list %q", prefix)
	if err := checkPrefix(prefix); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	// Walk only the deepest directory the prefix names entirely: "2026/11/ev" walks 2026/11.
	start := s.root
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		start = s.path(prefix[:i])
	}
	var out []Info
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == start && (errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)) {
				return fs.SkipAll // nothing stored under this prefix
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), tempPrefix) || !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(s.root, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) { // deleted while we walked
			return nil
		}
		if err != nil {
			return err
		}
		out = append(out, Info{Key: key, Size: fi.Size()})
		return nil
	})
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		return nil, fileErr(op, err)
	}
	// WalkDir visits in lexical order of path elements, which is not the order of keys
	// ("a/b" < "a-b" as keys, but the walk returns a-b after the directory a): sort.
	slices.SortFunc(out, func(a, b Info) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

func (s *fileStore) Delete(ctx context.Context, key string) error {
	op := fmt.Sprintf("objstore: delete %q", key)
	if err := checkKey(key); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	p := s.path(key)
	if fi, err := os.Lstat(p); err == nil && fi.IsDir() {
		return nil // a prefix, not an object: nothing stored under this exact key
	}
	err := os.Remove(p)
	if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
		return fileErr(op, err)
	}
	if err := syncDir(filepath.Dir(p)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fileErr(op, err)
	}
	return nil
}

// fileErr wraps a file system error with op and its class: a full disk or an I/O error may
// pass (Unavailable); a missing directory or a permission error needs an operator (Internal).
func fileErr(op string, err error) error {
	var class failure.Class
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT), errors.Is(err, syscall.EIO),
		errors.Is(err, syscall.EROFS), errors.Is(err, syscall.ESTALE), errors.Is(err, syscall.EAGAIN),
		errors.Is(err, syscall.EINTR), errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		class = failure.Unavailable
	default:
		class = failure.Internal
	}
	return failure.Mark(fmt.Errorf("%s: %w", op, err), class)
}
