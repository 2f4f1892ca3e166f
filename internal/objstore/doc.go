// Package objstore stores whole files by key in a directory or in an S3-compatible bucket: the
// targets of the archive tier (issue 14), which writes each archived month once and reads it
// back by ranges.
//
// # Targets
//
// [Open] takes the target as a URL:
//
//   - file:///abs/dir — a directory on a local or mounted file system. A key is a slash path
//     below the directory. A [Store.Put] writes a temporary file next to its key, fsyncs it,
//     renames it over the key and fsyncs the directory, so after a crash a key holds either its
//     previous content or the complete new one, never a prefix.
//   - s3://bucket/prefix — a bucket of an S3-compatible service (AWS S3, MinIO, Ceph, versitygw)
//     at [Options.Endpoint] (empty: AWS). Keys are object names below prefix. S3 makes an object
//     visible only once its upload completes, which is the same promise.
//
// # Keys
//
// Keys are slash-separated paths such as "2026/11/events-0001.parquet": no leading or trailing
// slash, no empty, "." or ".." element, no backslash. Other keys fail with [ErrInvalidKey]
// before any I/O, on both targets, so a key that works on one works on the other.
//
// # Failures
//
// Every error is wrapped with the operation and key, and carries a class of
// [kubernaut.ai/datastorage/internal/failure]:
//
//   - Unavailable: the target could not do the work now and may later (connection refused or
//     reset, timeouts, an HTTP 5xx or throttling answer, a full disk, an I/O error, an ended
//     context).
//   - Internal: the target is misconfigured or refuses us (403, a missing bucket or directory,
//     a permission error, bad credentials): retrying does not help; an operator must.
//   - Data: the caller's request is wrong ([ErrInvalidKey], a body whose length is not the
//     announced size).
//
// A missing key is [ErrNotFound] (class Data), so callers test with errors.Is.
package objstore
