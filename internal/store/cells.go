package store

import (
	"maps"
	"strings"
	"time"
)

// Open cells (migration 00012). Each chain head carries its correlation's
// open cell: an (hour, namespace, cluster) and the events counted in it that
// audit_rollup_correlations does not hold yet. A chained commit (commitSQL,
// smallSQL, loneSQL) moves the head and the cell in the same UPDATE, so a
// commit updates one row per correlation instead of two (the head and the
// correlation's rollup row). The cell the commit leaves open is the one of
// the correlation's latest event in it (unless that is an earlier hour
// than the stored cell's: cellSet); the stored cell, when it is another
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

// cellReturning returns the RETURNING list of a head's UPDATE that
// closedCells reads: the stored cell (b, ns, cl, n) before the update, the
// commit's cell (nb, nns, ncl, nn: the given expressions) and kept, whether
// the stored cell stayed open (cellSet).
func cellReturning(b, ns, cl, n string) string {
	return "o.cell_bucket AS b, o.cell_namespace AS ns, o.cell_cluster AS cl, o.cell_events AS n, " +
		b + " AS nb, " + ns + " AS nns, " + cl + " AS ncl, " + n + " AS nn, coalesce(o.cell_bucket > " + b + ", false) AS kept"
}

// cellSet is the SET list that leaves the cell (b, ns, cl) with n events of
// the commit open on head a: added to the stored count when it is the
// stored cell, instead of it otherwise (the stored one is closed). When
// the commit's cell is an earlier hour than the stored one (events that
// arrive late, or out of order around the hour), the stored cell stays
// open and the commit's count is handed over instead: the open hour only
// moves forward, so cell_bucket, the one indexed column, changes about
// once an hour per correlation and the head's UPDATE stays HOT (measured:
// without this rule, commits that alternate between two hours made half
// the heads' updates non-HOT and added 4–10 % of WAL).
func cellSet(b, ns, cl, n string) string {
	keep := "a.cell_bucket > " + b
	return "cell_bucket = CASE WHEN " + keep + " THEN a.cell_bucket ELSE " + b + " END" +
		", cell_namespace = CASE WHEN " + keep + " THEN a.cell_namespace ELSE " + ns + " END" +
		", cell_cluster = CASE WHEN " + keep + " THEN a.cell_cluster ELSE " + cl + " END" +
		", cell_events = CASE WHEN " + keep + " THEN a.cell_events" +
		" WHEN (a.cell_bucket, a.cell_namespace, a.cell_cluster) = (" + b + ", " + ns + ", " + cl + ")" +
		" THEN a.cell_events + " + n + " ELSE " + n + " END"
}

// closedCells selects, from the RETURNING rows of a head's UPDATE (the CTE
// from, cellReturning's columns, with the correlation as corr), the counts
// to hand to audit_rollup_correlations: the stored cell when the commit
// closed it, the commit's cell when the stored one stayed open.
func closedCells(from, corr string) string {
	return "SELECT b, " + corr + ", ns, cl, n FROM " + from + " WHERE NOT kept AND n <> 0 AND (b, ns, cl) IS DISTINCT FROM (nb, nns, ncl)" +
		" UNION ALL SELECT nb, " + corr + ", nns, ncl, nn FROM " + from + " WHERE kept"
}

// correlationsNewSQL is the query of a commit statement's correlations_new
// CTE: the cells the head UPDATE from closed (closedCells) and the
// commit's counts no cell keeps (the arrays cb, ci, cn, cc, cnt: bucket,
// correlation, namespace, cluster, count), summed per key, so that the
// UPDATE … FROM audit_rollup_correlations after it meets each key once.
func correlationsNewSQL(from, cb, ci, cn, cc, cnt string) string {
	return "\tSELECT b, c, ns, cl, sum(n)::bigint FROM (\n" +
		"\t\t" + closedCells(from, "correlation_id") + "\n" +
		"\t\tUNION ALL SELECT * FROM unnest(" + strings.Join([]string{cb, ci, cn, cc, cnt}, ", ") + ")\n" +
		"\t) AS x(b, c, ns, cl, n) GROUP BY 1, 2, 3, 4"
}

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
