package store

import (
	"maps"
	"time"
)

// Open cells (migration 00012). Each chain head carries its correlation's
// open cell: an (hour, namespace, cluster) and the events counted in it that
// audit_rollup_correlations does not hold yet. A chained commit (commitSQL,
// smallSQL, loneSQL) moves the head and the cell in the same UPDATE, so a
// commit updates one row per correlation instead of two (the head and the
// correlation's rollup row). The cell the commit leaves open is the one of
// the correlation's latest event in it; the stored cell, when it is another
// one, and the commit's other cells of that correlation go to
// audit_rollup_correlations in the same statement, summed by key first (an
// UPDATE … FROM with two source rows for one target row applies one of
// them).
//
// Exactness. The statement reads the stored cell (the head joined to
// itself as o: the row its snapshot sees) and updates the head only if the
// head still holds that very cell (cellUnchanged): in
// READ COMMITTED an UPDATE that finds its row changed since its snapshot
// re-checks its WHERE on the newest version, so a cell changed meanwhile
// (by a writer that did not move the head) fails the update instead of
// being closed with a count that is no longer true. Every writer of a cell
// moves the head or takes the table lock (RebuildRollups), and chained
// writers hold the chain lock, so this does not happen in practice: what it
// costs is a comparison, and what it keeps out is a double or lost count.
// A failed update fails the commit as a lost race does (a primary-key
// violation of the head's INSERT in commitSQL, the guard in smallSQL and
// loneSQL), and nothing of it is written.

// cellUnchanged is the condition, on the head a being updated and the same
// head o as the statement's snapshot has it, that the head still holds the
// cell read. (In an UPDATE's re-check, a table joined in FROM keeps the row
// version it first found, the target gets its newest.)
const cellUnchanged = `(a.cell_bucket, a.cell_namespace, a.cell_cluster, a.cell_events) IS NOT DISTINCT FROM (o.cell_bucket, o.cell_namespace, o.cell_cluster, o.cell_events)`

// cellReturning is the RETURNING list of a head's UPDATE that closedCell
// reads: the stored cell (b, ns, cl, n) before the update.
const cellReturning = `o.cell_bucket AS b, o.cell_namespace AS ns, o.cell_cluster AS cl, o.cell_events AS n`

// cellSet is the SET list that leaves the cell (b, ns, cl) with n events of
// the commit open on head a: added to the stored count when it is the
// stored cell, instead of it otherwise (the stored one is closed).
func cellSet(b, ns, cl, n string) string {
	return "cell_bucket = " + b + ", cell_namespace = " + ns + ", cell_cluster = " + cl +
		", cell_events = CASE WHEN (a.cell_bucket, a.cell_namespace, a.cell_cluster) = (" + b + ", " + ns + ", " + cl + ")" +
		" THEN a.cell_events + " + n + " ELSE " + n + " END"
}

// closedCell is the condition, on an updated head's RETURNING row (the
// stored cell b, ns, cl, n and the new one nb, nns, ncl), that the stored
// cell was closed with events to hand to audit_rollup_correlations.
const closedCell = `n <> 0 AND (b, ns, cl) IS DISTINCT FROM (nb, nns, ncl)`

// cells splits the correlation counts of a commit for the chains corrs
// (sorted; each must have events in d): each chain's open cell, the cell
// of its latest event, as columns aligned with corrs (bucket, namespace,
// cluster, the commit's count in it), and every other count (of those
// chains' other cells, and of correlations not in corrs) as the columns of
// correlationCountColumns, to be added to audit_rollup_correlations.
func (d rollupDelta) cells(corrs []string) (open, rest []any) {
	n := len(corrs)
	buckets, nss, clusters, counts := make([]time.Time, n), make([]string, n), make([]string, n), make([]int64, n)
	others := maps.Clone(d.correlations)
	for i, c := range corrs {
		k := d.latest[c].key
		buckets[i], nss[i], clusters[i], counts[i] = k.bucket, k.ns, k.cluster, others[k]
		delete(others, k)
	}
	return []any{buckets, nss, clusters, counts}, correlationCountColumns(others)
}
