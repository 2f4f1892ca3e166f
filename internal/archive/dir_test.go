package archive_test

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"kubernaut.ai/datastorage/internal/archive"
)

// dirObjects is a directory as an object store, for these tests only
// (internal/objstore's file target replaces it once merged).
type dirObjects struct{ root string }

func (d dirObjects) path(key string) string { return filepath.Join(d.root, filepath.FromSlash(key)) }

func (d dirObjects) Put(_ context.Context, key string, body io.Reader, size int64) error {
	p := d.path(key)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".put-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	n, err := io.Copy(tmp, body)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != size {
		err = errors.New("short body")
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), p)
}

type dirObject struct{ *os.File }

func (o dirObject) Size() int64 {
	st, err := o.Stat()
	if err != nil {
		return 0
	}
	return st.Size()
}

func (d dirObjects) Open(_ context.Context, key string) (archive.Object, error) {
	f, err := os.Open(d.path(key))
	if err != nil {
		return nil, err
	}
	return dirObject{f}, nil
}

func (d dirObjects) List(_ context.Context, prefix string) ([]archive.ObjectInfo, error) {
	var out []archive.ObjectInfo
	err := filepath.WalkDir(d.root, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(d.root, p)
		key := filepath.ToSlash(rel)
		if strings.HasPrefix(key, prefix) && !strings.Contains(key, "/.put-") {
			info, err := e.Info()
			if err != nil {
				return err
			}
			out = append(out, archive.ObjectInfo{Key: key, Size: info.Size()})
		}
		return nil
	})
	return out, err
}

func (d dirObjects) Delete(_ context.Context, key string) error { return os.Remove(d.path(key)) }
