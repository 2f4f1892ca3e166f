package ingest

import (
	"slices"
	"sync"

	"kubernaut.ai/datastorage/internal/audit"
)

// A small commit links its events to the chain heads its process remembers
// and checks them under the chain locks in its one round trip
// (store.insertFast). Two small commits in flight at once that share a
// chain link to the same head: the second waits on the chain lock for the
// first one's COMMIT and fsync, finds the head moved, commits nothing and
// starts again on the path that reads the heads: two waits and three more
// round trips for one request. With two writers and requests of a few
// dozen correlations out of a thousand, most pairs of concurrent requests
// share one (bench/results/writepath-2026-12-07d.md), and chains on cost
// the 32 × 2 shape of `make bench` half its throughput.
//
// So a request that shares a correlation with a small request a writer has
// queued or is committing goes to that writer's queue: it waits there
// instead of on the chain lock, links to the heads that commit leaves, and
// is committed with whatever else queued meanwhile, in one transaction
// whose fsync they share. A large request (store.copyMinRows events or
// more) attracts small requests only: two large commits sharing chains
// link to each other's predicted heads and overlap their COPYs
// (store/overlap.go), which queueing one behind the other would undo; a
// small commit beside a large one would take the chain locks before the
// large commit's check, which then fails and throws its COPY away.
//
// A request that shares correlations with the requests of two writers goes
// to the one it shares most with; the other may still make it wait on a
// chain lock, as before.

// smallRequest is the size from which a request is large: the store's
// threshold for optimistic, COPYed commits (store.copyMinRows).
const smallRequest = 200

// claims holds, per writer, how many of its queued or committing requests
// name each correlation, small and large requests apart.
type claims struct {
	mu    sync.Mutex
	small []map[string]int
	large []map[string]int
}

func newClaims(writers int) *claims {
	c := &claims{small: make([]map[string]int, writers), large: make([]map[string]int, writers)}
	for w := range writers {
		c.small[w], c.large[w] = map[string]int{}, map[string]int{}
	}
	return c
}

// claim is what one request holds until it is answered.
type claim struct {
	writer int
	small  bool
	corrs  []string
}

// place picks the writer of a request (see above) and records its claim,
// which the caller releases once the request is answered. Without a claim
// to follow it is the owner of most of the request (route), or, when that
// writer is busy and another idle, the idle one: nothing in flight shares
// the request's chains, so committing it at once costs no wait.
func (p *Pipeline) place(events []*audit.Event) (int, claim) {
	c := claim{small: len(events) < smallRequest, corrs: correlations(events)}
	p.claims.mu.Lock()
	defer p.claims.mu.Unlock()
	best, most := -1, 0
	for w := range p.queues {
		n := 0
		for _, id := range c.corrs {
			if p.claims.small[w][id] > 0 || (c.small && p.claims.large[w][id] > 0) {
				n++
			}
		}
		if n > most {
			best, most = w, n
		}
	}
	if best < 0 {
		best = p.route(events)
		if !p.idle(best) {
			for w := range p.queues {
				if p.idle(w) {
					best = w
					break
				}
			}
		}
	}
	c.writer = best
	m := p.claims.large[best]
	if c.small {
		m = p.claims.small[best]
	}
	for _, id := range c.corrs {
		m[id]++
	}
	return best, c
}

// release drops a request's claim.
func (c *claims) release(cl claim) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.large[cl.writer]
	if cl.small {
		m = c.small[cl.writer]
	}
	for _, id := range cl.corrs {
		if m[id]--; m[id] <= 0 {
			delete(m, id)
		}
	}
}

// idle reports, as a hint, whether writer w has nothing queued and no
// commit in progress.
func (p *Pipeline) idle(w int) bool { return len(p.turns[w]) == 0 && len(p.queues[w]) == 0 }

// correlations returns the correlations of events, once each.
func correlations(events []*audit.Event) []string {
	out := make([]string, 0, min(len(events), 64))
	for _, e := range events {
		out = append(out, e.CorrelationID)
	}
	slices.Sort(out)
	return slices.Compact(out)
}
