// Package integrity makes the audit trail tamper-evident and provable
// (CONTRACT §8, docs/integrity.md):
//
//   - verification of a correlation's hash chain as stored, naming the first
//     broken link: changed content, broken linkage, missing links (a gap in
//     chain_seq that retention did not record) and a truncated end (the
//     recorded chain head is ahead of the last event);
//   - signed exports (JSON or NDJSON, streamed in constant memory) whose
//     signature covers the exact bytes of the exported events, and their
//     offline verification (datastorage verify-export);
//   - legal holds, and the periodic retention job that never deletes a held
//     event.
//
// The SQL lives in internal/store; this package decides what the rows mean.
package integrity
