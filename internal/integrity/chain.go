package integrity

import (
	"fmt"
	"strings"

	"github.com/google/uuid"

	"kubernaut.ai/datastorage/internal/audit"
)

// MaxListedProblems bounds the broken links a report lists (their count is
// always exact): a chain of a million tampered events must not make a
// response of a million entries.
const MaxListedProblems = 1000

// TamperedEvent is one broken link (CONTRACT §8).
type TamperedEvent struct {
	EventID        string     `json:"event_id"`
	EventTimestamp audit.Time `json:"event_timestamp"`
	// ExpectedHash is the hash recomputed now from the stored content.
	ExpectedHash string `json:"expected_hash"`
	// ActualHash is the hash stored with the event.
	ActualHash string `json:"actual_hash"`
	// PreviousHash is the previous hash the recomputation used: the
	// event's stored previous_event_hash ("" for the first link).
	PreviousHash string `json:"previous_hash"`
	Message      string `json:"message"`
	// ChainSeq is the event's position in its chain (ours).
	ChainSeq int64 `json:"chain_seq,omitempty"`
}

// linkChecker walks the links of one or more chains in chain order and
// finds what is wrong with each. It has two modes:
//
//   - whole: the links are a correlation's entire stored chain, from
//     chain_seq 1. A gap in chain_seq is tampering unless a retention
//     tombstone covers it.
//   - partial: the links are what an export selected. A chain may start
//     mid-way (its first link's previous hash is taken as given) and may
//     have gaps (filtered out); links are checked where they are
//     consecutive.
//
// In both modes every link's own hash is recomputed from its content and
// its stored previous hash.
type linkChecker struct {
	hasher     audit.Hasher
	whole      bool
	tombstones []Tombstone

	corr      string
	started   bool
	next      int64  // the chain_seq expected next
	prevHash  string // the hash of chain_seq next-1, when prevKnown
	prevKnown bool
	prevID    uuid.UUID
	prevSeq   int64
}

func newWholeChecker(h audit.Hasher, tombstones []Tombstone) *linkChecker {
	return &linkChecker{hasher: h, whole: true, tombstones: tombstones, started: true, next: 1, prevKnown: true}
}

func newPartialChecker(h audit.Hasher) *linkChecker { return &linkChecker{hasher: h} }

// check returns what is wrong with link e ("" when nothing) and the hash
// recomputed for it, then advances past it.
func (c *linkChecker) check(e *audit.Event) (problem, expected string) {
	var msgs []string
	prev := ""
	if e.PreviousHash != nil {
		prev = *e.PreviousHash
	}
	if !c.whole && (!c.started || e.CorrelationID != c.corr) {
		// A new chain of a partial selection: from its first exported link.
		c.corr, c.started = e.CorrelationID, true
		c.next, c.prevKnown = e.ChainSeq, e.ChainSeq == 1
		c.prevHash = ""
	}

	switch {
	case e.ChainSeq < c.next:
		msgs = append(msgs, fmt.Sprintf("chain_seq %d appears again (after event %s): a second event claims this position", e.ChainSeq, c.prevID))
	case e.ChainSeq > c.next && c.whole:
		from, to := c.next, e.ChainSeq-1
		if c.covered(from, to) {
			c.prevHash, c.prevKnown = c.tombstoneHash(to)
		} else {
			msgs = append(msgs, fmt.Sprintf("%s missing before this event and not removed by retention: deleted or never stored", seqRange(from, to)))
			c.prevKnown = false
		}
	case e.ChainSeq > c.next:
		c.prevKnown = false // filtered out of the export: the link cannot be checked
	}

	canon, err := e.Canonical()
	switch {
	case err != nil:
		msgs = append(msgs, "content cannot be put in canonical form: "+err.Error())
	case e.HashAlgorithm != c.hasher.Algorithm():
		expected = c.hasher.Link(prev, canon)
		msgs = append(msgs, fmt.Sprintf("hashed with %q but verification uses %q (check integrity.hmacKeyFile): the hash cannot be verified",
			e.HashAlgorithm, c.hasher.Algorithm()))
	default:
		expected = c.hasher.Link(prev, canon)
		if expected != e.Hash {
			msgs = append(msgs, "content does not match event_hash: the event was changed after it was written")
		}
	}
	if e.ChainSeq >= c.next && c.prevKnown && prev != c.prevHash {
		if e.ChainSeq == 1 {
			msgs = append(msgs, "the first link of a chain must have an empty previous_event_hash")
		} else if e.ChainSeq-1 == c.prevSeq {
			msgs = append(msgs, fmt.Sprintf("previous_event_hash does not match the event_hash of the preceding event %s (chain_seq %d): the chain is broken between them",
				c.prevID, c.prevSeq))
		} else {
			msgs = append(msgs, fmt.Sprintf("previous_event_hash does not match the hash retention recorded for chain_seq %d", e.ChainSeq-1))
		}
	}
	if e.ChainSeq >= c.next {
		c.next = e.ChainSeq + 1
		c.prevHash, c.prevKnown = e.Hash, true
		c.prevID, c.prevSeq = e.ID, e.ChainSeq
	}
	return strings.Join(msgs, "; "), expected
}

// covered reports whether tombstones cover every chain_seq in from..to.
func (c *linkChecker) covered(from, to int64) bool {
	next := from
	for _, t := range c.tombstones { // ordered by FromSeq
		if t.FromSeq > next {
			break
		}
		if t.ToSeq >= next {
			next = t.ToSeq + 1
		}
		if next > to {
			return true
		}
	}
	return next > to
}

// tombstoneHash returns the hash retention recorded for chain_seq seq.
func (c *linkChecker) tombstoneHash(seq int64) (string, bool) {
	for _, t := range c.tombstones {
		if t.ToSeq == seq {
			return t.LastHash, true
		}
	}
	return "", false
}

func seqRange(from, to int64) string {
	if from == to {
		return fmt.Sprintf("chain_seq %d is", from)
	}
	return fmt.Sprintf("chain_seq %d..%d are", from, to)
}

// problems collects broken links, listing the first MaxListedProblems.
type problems struct {
	list  []TamperedEvent
	count int64
	last  string // the event_id/chain_seq of the last problem counted
}

func problemKey(e *audit.Event) string { return fmt.Sprintf("%s/%d", e.ID, e.ChainSeq) }

func (p *problems) add(e *audit.Event, expected, msg string) {
	p.count++
	p.last = problemKey(e)
	if len(p.list) >= MaxListedProblems {
		return
	}
	prev := ""
	if e.PreviousHash != nil {
		prev = *e.PreviousHash
	}
	p.list = append(p.list, TamperedEvent{
		EventID: e.ID.String(), EventTimestamp: e.Timestamp, ExpectedHash: expected,
		ActualHash: e.Hash, PreviousHash: prev, Message: msg, ChainSeq: e.ChainSeq,
	})
}

// amend adds msg to the problem of e when e was the last event counted, or
// counts e.
func (p *problems) amend(e *audit.Event, expected, msg string) {
	if p.last != problemKey(e) {
		p.add(e, expected, msg)
		return
	}
	if n := len(p.list); n > 0 && p.list[n-1].EventID == e.ID.String() && p.list[n-1].ChainSeq == e.ChainSeq {
		p.list[n-1].Message += "; " + msg
	}
}
