// Package ingest is the write pipeline: it owns the rule that decides whether
// a write answers 201 (committed to PostgreSQL), 202 (durably queued in the
// spool) or 503 (neither could take it; the client keeps the event).
//
// # Group commit
//
// Handlers call [Pipeline.Submit] and wait. A few writer goroutines each take
// everything that is queued, up to a maximum batch, and write it with one
// statement in one transaction ([Store.InsertEvents]), then wake every waiter.
// Under load one commit carries hundreds of events, so the cost of a commit
// (the WAL flush) is shared; at low load a batch is a single event and nothing
// waits for company: a request that finds its writer idle, with nothing
// queued, takes the writer's turn and commits in its own goroutine, sparing
// the hand-over to the writer and back. Concurrent single-event requests and
// large client batches share the same commits.
//
// Small commits (under 200 events) run one at a time across the writers by
// default ([Options].SmallCommits, ingest.smallCommits): a writer with a
// small batch waits for the small commit in flight to end and then takes
// along everything that queued for it meanwhile. A small commit's cost to
// PostgreSQL has a large share that does not grow with its size (the
// statement's set-up, the commit record and its flush, the per-commit rows
// of chains and rollups), and where the service, PostgreSQL and its clients
// share few CPUs two small commits at once only halve each other's size
// (bench/results/wpgroup-2026-12-07.md). A lone request finds no commit in
// flight and is committed at once; large commits are not held by the bound,
// so client batches still overlap (store/overlap.go).
//
// # One request, one transaction
//
// Each writer owns the correlations that hash to it, so requests of one
// correlation are committed by one writer and concurrent commits rarely wait
// on each other's chain locks. A request is never split: a batch whose
// correlations belong to several writers is committed whole by the writer
// that owns most of it, in one transaction (CONTRACT §3: a batch is atomic).
// It used to be split, one transaction per writer, and a refusal of one part
// after another had committed answered "nothing was written" over committed
// events (issue 18). The alternatives were worse: PostgreSQL cannot commit
// several connections' transactions atomically without two-phase commit
// (max_prepared_transactions, off by default, and prepared transactions that
// outlive a crash), and undoing committed parts is impossible by design (rows
// are append-only by trigger, and other commits may already have chained onto
// them).
//
// The cost: such a request's events of other writers' correlations can meet a
// commit of those writers on a chain lock and wait for it (the advisory locks
// are taken in one order, so they wait, never deadlock), and a big
// multi-correlation batch is one commit instead of several in parallel.
// Measured with `dsbench -only batch500 -skip-raw` (500-event batches drawn
// from a shared pool of correlations; 2-CPU AMD EPYC shared with other
// builds, which took ~1.8 of the 2 CPUs, so only large differences count):
//
//	                        split per writer   one transaction   all spanning requests on one writer
//	batch500 c=1 events/s   1550               1950              2250
//	batch500 c=4 events/s   2500               2450              1150
//	c=4 PostgreSQL µs/event 75                 82                100
//	c=4 advisory-lock wait  ~0                 0.42 backends     ~0
//
// Throughput is unchanged within the noise; the price shows as chain-lock
// waits between the two writers' concurrent batch commits. Sending every
// spanning request to one writer removes those waits but serialises the
// commits and halved c=4 throughput, so the owner of most of the request
// commits it. Those waits were later removed for large commits: a commit of
// 200 events or more links optimistically and COPYs with no chain lock held
// (store/overlap.go), so only the locks, its last statement and the fsync
// are serial between two writers' commits that share chains
// (bench/results/writepath-2026-12-07b.md). Small requests that share
// chains with a small request already queued or committing follow it to
// its writer (claims.go) instead of meeting it on a chain lock
// (bench/results/writepath-2026-12-07d.md).
//
// # Failure
//
// What a failed commit means is one rule, [failure.ClassOf], read from the
// error the store returns:
//
//	class        what it is                               live single    live batch     replay (spool worker)              reads        readiness
//	-----------  ---------------------------------------  -------------  -------------  ---------------------------------  -----------  --------------
//	unavailable  connection refused/lost/timed out,       202 spooled    201 spooled    the page stays in the spool; the   503 +        database "down"
//	             closed pool, SQLSTATE 08 28 3D 53 57 58  (503 + Retry-  (503 + Retry-  worker waits for the database      Retry-After  (ready while the
//	             40, 25006, 42501, 55000                  After if the   After if the   (ping with backoff ≤ 1 s);                      spool is up)
//	                                                      spool cannot)  spool cannot)  nothing is dead-lettered
//	data         SQLSTATE 22, 23; missing parent; no      400 naming     400 naming     the page is split to isolate the   400 (404     —
//	             canonical form; ErrNotFound              the field      "[i]"          entry; it is retried after the     for not
//	                                                                                    claim timeout and dead-lettered    found)
//	                                                                                    after redis.maxDeliveries
//	internal     anything else: a statement that no       500 internal-  500 internal-  the page is parked: left pending   500
//	             longer fits the schema (42xxx), an       error with     error with     (unacknowledged), retried only
//	             answer that cannot be scanned, a bug     the request    the request    when claimed again after the claim
//	                                                      id, logged at  id, logged at  timeout, never dead-lettered;
//	                                                      error level    error level    datastorage_replay_parked_total
//	                                                                                    rises and DataStorageReplayParked
//	                                                                                    fires
//
// Notifications follow the same rule: unavailable 202 (spooled), a repeated
// notification_id 409, another data refusal 400, internal 500.
//
// When PostgreSQL is unavailable the same events, with their final ids, are
// appended to the spool and the waiters learn [Queued]. When the database
// refuses the data instead, the store names the first refused event of the
// commit ([audit.RefusedEventError], found by bisecting prefixes in
// rolled-back transactions); the request holding it is rejected with
// [RejectedError] naming its index, and the other requests of the commit are
// committed without it. When the store cannot name the event the commit is
// split in halves until the refused request is isolated. Either way one bad
// request never fails its neighbours. An internal error fails every request
// of the commit at once: a retry would fail the same way, and nothing says
// which request is at fault.
//
// The queue is bounded in events: when it is full a write waits up to its
// deadline and then gets [ErrBusy]; a client that leaves meanwhile gets
// [ErrAbandoned] and is counted apart (result "abandoned").
package ingest
