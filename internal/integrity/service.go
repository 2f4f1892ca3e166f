package integrity

import (
	"context"
	"fmt"
	"time"

	"kubernaut.ai/datastorage/internal/audit"
)

// Service is the integrity side of the API: chain verification, legal holds
// and signed exports. It is safe for concurrent use.
type Service struct {
	store  Store
	hasher audit.Hasher
	signer *Signer
	now    func() time.Time
}

// NewService returns a Service over st. hasher must be the one the writers
// use (same HMAC key, or none); signer signs exports.
func NewService(st Store, hasher audit.Hasher, signer *Signer) *Service {
	return &Service{store: st, hasher: hasher, signer: signer, now: time.Now}
}

// ChainReport is the answer of verify-chain (CONTRACT §8).
type ChainReport struct {
	CorrelationID    string          `json:"correlation_id"`
	IsValid          bool            `json:"is_valid"`
	TotalEvents      int64           `json:"total_events"`
	VerifiedEvents   int64           `json:"verified_events"`
	TamperedEvents   []TamperedEvent `json:"tampered_events"`
	VerificationTime audit.Time      `json:"verification_time"`
	Message          string          `json:"message"`
	// TamperedCount is the number of broken links, of which TamperedEvents
	// lists the first MaxListedProblems (ours).
	TamperedCount int64 `json:"tampered_count"`
}

// VerifyChain recomputes correlationID's chain from the stored rows, in
// chain_seq order, and reports every broken link: changed content (the
// recomputed hash differs), broken linkage (previous_event_hash is not the
// preceding event's hash), missing links (a gap in chain_seq that no
// retention tombstone explains), a chain head that does not match the last
// event (truncation), and links whose hash algorithm differs from this
// server's. It returns ErrNotFound when the correlation has no events.
func (s *Service) VerifyChain(ctx context.Context, correlationID string) (ChainReport, error) {
	rep := ChainReport{CorrelationID: correlationID, TamperedEvents: []TamperedEvent{}}
	var (
		checker *linkChecker
		head    *ChainHead
		probs   problems
		last    audit.Event
	)
	total, err := s.store.ReadChain(ctx, correlationID, func(st ChainState) error {
		checker = newWholeChecker(s.hasher, st.Tombstones)
		head = st.Head
		return nil
	}, func(e *audit.Event) error {
		msg, expected := checker.check(e)
		if msg != "" {
			probs.add(e, expected, msg)
		}
		last = *e
		return nil
	})
	rep.VerificationTime = audit.NewTime(s.now())
	if err != nil {
		return rep, err
	}
	rep.TotalEvents = total

	// The end of the chain: the head the writers moved forward with every
	// commit must be the last stored link, or a link retention removed.
	if msg, expected := checker.checkHead(head, &last); msg != "" {
		probs.amend(&last, expected, msg)
	}

	if probs.list != nil {
		rep.TamperedEvents = probs.list
	}
	rep.TamperedCount = probs.count
	rep.VerifiedEvents = total - probs.count
	rep.IsValid = probs.count == 0
	if rep.IsValid {
		rep.Message = fmt.Sprintf("hash chain intact: %d event(s) verified", total)
	} else {
		first := probs.list[0]
		rep.Message = fmt.Sprintf("hash chain broken: %d of %d event(s) fail verification; first broken link: event %s (chain_seq %d): %s",
			probs.count, total, first.EventID, first.ChainSeq, first.Message)
		if probs.count > int64(len(probs.list)) {
			rep.Message += fmt.Sprintf(" (the first %d are listed)", len(probs.list))
		}
	}
	return rep, nil
}

// checkHead compares the recorded chain head with last, the last stored
// link, after the whole chain was checked.
func (c *linkChecker) checkHead(head *ChainHead, last *audit.Event) (problem, expected string) {
	switch {
	case head == nil:
		return "no chain head is recorded for this correlation: the chain's record was removed", ""
	case head.Seq == last.ChainSeq:
		if head.Hash != last.Hash {
			return fmt.Sprintf("the chain head records hash %s for chain_seq %d, not this event's hash", head.Hash, head.Seq), head.Hash
		}
	case head.Seq > last.ChainSeq:
		from, to := last.ChainSeq+1, head.Seq
		if c.covered(from, to) {
			if h, ok := c.tombstoneHash(to); ok && h == head.Hash {
				return "", ""
			}
			return fmt.Sprintf("the chain head (chain_seq %d) does not match the hash retention recorded for it", head.Seq), head.Hash
		}
		return fmt.Sprintf("the chain head says the chain ends at chain_seq %d, but the stored events end here: %s missing (the chain was truncated)",
			head.Seq, seqRange(from, to)), head.Hash
	default:
		return fmt.Sprintf("this event is beyond the recorded chain head (chain_seq %d): it was not written by the service", head.Seq), head.Hash
	}
	return "", ""
}

// PlaceHold puts correlationID under legal hold on behalf of placedBy.
// ErrNotFound when it has no events.
func (s *Service) PlaceHold(ctx context.Context, correlationID, reason, placedBy string) (Hold, error) {
	return s.store.PlaceHold(ctx, correlationID, reason, placedBy, s.now())
}

// ReleaseHold releases the hold on correlationID on behalf of releasedBy.
// ErrNotFound when it is not held.
func (s *Service) ReleaseHold(ctx context.Context, correlationID, reason, releasedBy string) (HoldRelease, error) {
	return s.store.ReleaseHold(ctx, correlationID, reason, releasedBy, s.now())
}

// ListHolds returns the active holds.
func (s *Service) ListHolds(ctx context.Context) ([]Hold, error) {
	return s.store.ListHolds(ctx)
}
