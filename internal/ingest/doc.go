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
// waits for company. Concurrent single-event requests and large client batches
// share the same commits.
//
// Each writer owns the correlations that hash to it, so two commits of one
// process never extend the same hash chain at once and never wait on each
// other's chain locks. A single event, and a batch whose correlations all
// belong to one writer, is one transaction, committed whole or not at all. A
// batch that spans writers is split, one transaction per writer, committed in
// parallel (an event stays with a parent that is earlier in the batch); the
// request is answered when every part is committed or spooled. The cost is in
// one failure: when PostgreSQL fails between two parts and the spool is down
// too, the request answers 503 although some parts were committed (see
// [Pipeline.route]).
//
// # Failure
//
// When PostgreSQL cannot take a batch ([IsUnavailable]) the same events,
// with their final ids, are appended to the spool and the waiters learn
// [Queued]. When the database refuses the data instead, the batch is split in
// halves until the refused request is isolated, so one bad request never fails
// its neighbours. The queue is bounded in events: when it is full a write waits
// up to its deadline and then gets [ErrBusy].
package ingest
