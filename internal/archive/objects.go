package archive

import (
	"context"
	"io"
)

// Objects is what the archive needs of an object store (a subset of
// internal/objstore.Store, which implements it): keys are slash-separated
// paths under the target's root.
type Objects interface {
	// Put stores size bytes of body under key; the key becomes visible
	// only complete, so a crash never leaves half a file under its name.
	Put(ctx context.Context, key string, body io.Reader, size int64) error
	// Open opens key for ranged reads. A Parquet reader then fetches the
	// footer and the row groups it needs, not the whole file.
	Open(ctx context.Context, key string) (Object, error)
	// List returns the objects whose key starts with prefix.
	List(ctx context.Context, prefix string) ([]ObjectInfo, error)
	// Delete removes key.
	Delete(ctx context.Context, key string) error
}

// Object is an opened stored object.
type Object interface {
	io.ReaderAt
	io.Closer
	Size() int64
}

// ObjectInfo describes one listed object.
type ObjectInfo struct {
	Key  string
	Size int64
}
