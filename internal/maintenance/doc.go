// Package maintenance is the work that runs on a schedule rather than on a
// request: partitions created ahead of the calendar ([PartitionUpkeep]),
// retention ([RetentionJob]), and rollup rebuilds ([RebuildRollups], run by
// `datastorage rollups rebuild`). The archive job goes here next.
//
// Each job is a function that runs until its context ends (Run), so the
// server runs every one of them as a lifecycle.Loop and waits for each on
// shutdown; the same jobs run once from the command line. Like the other
// domain packages it declares what it needs of PostgreSQL ([PartitionStore],
// [RetentionStore] with its [RetentionSession], [RollupStore]) and
// internal/store implements it; the SQL stays there, one small method per
// statement, while the decisions (which month to drop, how batches shrink
// after a timeout, how detach and drop follow each other) are made here,
// where a unit test can drive them without a database.
//
// Retention is here rather than in internal/integrity: it is scheduled,
// leader-elected, batched work on partitions, whose only link to integrity
// is a rule the store's SQL applies (a held event never goes; every removed
// link leaves a tombstone for verify-chain). Integrity keeps the meaning of
// holds and tombstones; this package decides when and how much runs.
package maintenance
