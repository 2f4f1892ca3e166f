// Package archive is the archive tier of audit_events (docs/archive.md,
// issue 14): months older than archive.after are written to object storage
// as Apache Parquet with a signed manifest, verified against PostgreSQL,
// recorded in audit_archives and only then dropped from PostgreSQL. Archived
// correlations stay readable (timeline, verify-chain) through the row-group
// statistics of the files, and a month can be restored into a partition.
//
// The package owns the policy and the file formats; the SQL is
// internal/store's (it implements Source), the bytes go to whatever
// implements Objects (internal/objstore: a directory or S3).
package archive
