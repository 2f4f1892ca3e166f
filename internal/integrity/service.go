package integrity

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/store"
)

// Service is the integrity side of the API: chain verification, legal holds
// and signed exports. It is safe for concurrent use.
type Service struct {
	store  *store.Store
	hasher audit.Hasher
	signer *Signer
	now    func() time.Time
	// verifying holds a token per verification running (verifyChain's
	// semaphore).
	verifying chan struct{}
	// checkpointEvery is checkpointEvery, smaller in tests.
	checkpointEvery int64
}

// MaxConcurrentVerifications bounds the chain verifications one replica
// runs at once. A verification is CPU-bound (SHA-256 over every link read)
// and holds a database connection and a snapshot for its whole run: four
// unbounded verifications of a 415,000-event chain all timed out (issue 18
// item 8). One beyond the bound is refused at once with ErrBusy (503 with
// Retry-After) rather than queued: a queued verification would hold its
// connection and its request deadline while it waits, and the client's
// retry after Retry-After costs nothing meanwhile.
const MaxConcurrentVerifications = 2

// ErrBusy is returned by VerifyChain when MaxConcurrentVerifications are
// already running. Nothing was read; retry later. Test with errors.Is.
var ErrBusy = errors.New("integrity: too many chain verifications running")

// checkpointEvery is how many links a verification checks between two
// checkpoints it records while it runs. A verification stopped by its
// request deadline keeps what it proved: the next one starts from the
// last checkpoint, so even a chain too long to verify in one request
// deadline is verified over a few.
const checkpointEvery = 20000

// NewService returns a Service over st. hasher must be the one the writers
// use (same HMAC key, or none); signer signs exports.
func NewService(st *store.Store, hasher audit.Hasher, signer *Signer) *Service {
	return &Service{store: st, hasher: hasher, signer: signer, now: time.Now,
		verifying: make(chan struct{}, MaxConcurrentVerifications), checkpointEvery: checkpointEvery}
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
	// EventsRead is the number of links this verification read and
	// checked: all of them in a full verification, those after the
	// checkpoint otherwise (ours).
	EventsRead int64 `json:"events_read"`
	// VerifiedFrom is the checkpoint this verification started after, nil
	// when it checked the chain from its first link (ours).
	VerifiedFrom *CheckpointRef `json:"verified_from,omitempty"`
}

// CheckpointRef names a checkpoint in a ChainReport.
type CheckpointRef struct {
	ChainSeq   int64      `json:"chain_seq"`
	EventID    string     `json:"event_id"`
	VerifiedAt audit.Time `json:"verified_at"`
}

// VerifyChain recomputes correlationID's chain from the stored rows, in
// chain_seq order, and reports every broken link: changed content (the
// recomputed hash differs), broken linkage (previous_event_hash is not the
// preceding event's hash), missing links (a gap in chain_seq that no
// retention tombstone explains), a chain head that does not match the last
// event (truncation), and links whose hash algorithm differs from this
// server's. It returns store.ErrNotFound when the correlation has no events,
// and ErrBusy when MaxConcurrentVerifications are running.
//
// Unless full, it starts after the chain's checkpoint (the sealed head of
// the prefix an earlier verification found intact) and reads only the
// links past it; a checkpoint whose seal does not verify with this
// server's signing key is ignored. While the chain is intact it records a
// checkpoint every checkpointEvery links and at the end, so the next
// verification starts there. Tampering inside a checkpointed prefix is
// found only by a full verification (docs/integrity.md); a full
// verification never moves a checkpoint back.
func (s *Service) VerifyChain(ctx context.Context, correlationID string, full bool) (ChainReport, error) {
	select {
	case s.verifying <- struct{}{}:
		defer func() { <-s.verifying }()
	default:
		return ChainReport{}, ErrBusy
	}
	rep := ChainReport{CorrelationID: correlationID, TamperedEvents: []TamperedEvent{}}
	var (
		checker *linkChecker
		head    *store.ChainHead
		probs   problems
		last    audit.Event
		from    *store.Checkpoint
		read    int64

		tombstones []store.Tombstone
	)
	// seal records the verified prefix up to last, read links in.
	seal := func() error {
		var before int64
		if from != nil {
			before = from.Events
		}
		cp := store.Checkpoint{Seq: last.ChainSeq, EventID: last.ID, Hash: last.Hash,
			VerifiedAt: s.now().UTC().Truncate(time.Microsecond), Events: before + read}
		cp.Seal = s.sealCheckpoint(correlationID, cp)
		return s.store.AdvanceCheckpoint(ctx, correlationID, cp)
	}
	n, err := s.store.ReadChainAfter(ctx, correlationID, func(st store.ChainState) (int64, error) {
		checker = newWholeChecker(s.hasher, st.Tombstones)
		head, tombstones = st.Head, st.Tombstones
		if full || st.Checkpoint == nil || !s.checkpointSealed(correlationID, *st.Checkpoint) {
			return 0, nil
		}
		from = st.Checkpoint
		checker.next, checker.prevHash, checker.prevKnown = from.Seq+1, from.Hash, true
		checker.prevID, checker.prevSeq = from.EventID, from.Seq
		last = audit.Event{ID: from.EventID, ChainSeq: from.Seq, Hash: from.Hash}
		return from.Seq, nil
	}, func(e *audit.Event) error {
		msg, expected := checker.check(e)
		if msg != "" {
			probs.add(e, expected, msg)
		}
		last = *e
		read++
		if read%s.checkpointEvery == 0 && probs.count == 0 && !full {
			return seal()
		}
		return nil
	})
	rep.VerificationTime = audit.NewTime(s.now())
	if err != nil {
		return rep, err
	}
	rep.EventsRead = n
	rep.TotalEvents = n
	if from != nil {
		rep.TotalEvents += from.Events - removedSince(*from, tombstones)
		if rep.TotalEvents == 0 {
			// Retention removed the whole chain since it was verified.
			return rep, fmt.Errorf("integrity: verify chain of %q: %w", correlationID, store.ErrNotFound)
		}
		rep.VerifiedFrom = &CheckpointRef{ChainSeq: from.Seq, EventID: from.EventID.String(), VerifiedAt: audit.NewTime(from.VerifiedAt)}
	}

	// The end of the chain: the head the writers moved forward with every
	// commit must be the last stored link, or a link retention removed.
	if msg, expected := checker.checkHead(head, &last); msg != "" {
		probs.amend(&last, expected, msg)
	}
	if probs.count == 0 && n > 0 {
		if err := seal(); err != nil {
			return rep, err
		}
	}

	if probs.list != nil {
		rep.TamperedEvents = probs.list
	}
	rep.TamperedCount = probs.count
	rep.VerifiedEvents = rep.TotalEvents - probs.count
	rep.IsValid = probs.count == 0
	if rep.IsValid {
		rep.Message = fmt.Sprintf("hash chain intact: %d event(s) verified", rep.TotalEvents)
	} else {
		first := probs.list[0]
		rep.Message = fmt.Sprintf("hash chain broken: %d of %d event(s) fail verification; first broken link: event %s (chain_seq %d): %s",
			probs.count, rep.TotalEvents, first.EventID, first.ChainSeq, first.Message)
		if probs.count > int64(len(probs.list)) {
			rep.Message += fmt.Sprintf(" (the first %d are listed)", len(probs.list))
		}
	}
	if from != nil {
		rep.Message += fmt.Sprintf("; links up to chain_seq %d were verified at %s and not read again (verify with \"full\": true to re-check them)",
			from.Seq, from.VerifiedAt.UTC().Format(time.RFC3339))
	}
	return rep, nil
}

// removedSince returns how many links of cp's prefix retention removed
// after cp was recorded (every removal leaves a tombstone), so that a
// checkpoint's count of stored links stays exact without reading them.
func removedSince(cp store.Checkpoint, tombstones []store.Tombstone) int64 {
	var n int64
	for _, t := range tombstones {
		if t.DeletedAt.After(cp.VerifiedAt) && t.FromSeq <= cp.Seq {
			n += min(t.ToSeq, cp.Seq) - t.FromSeq + 1
		}
	}
	return n
}

// sealCheckpoint signs cp for correlationID with the export signing key.
func (s *Service) sealCheckpoint(correlationID string, cp store.Checkpoint) string {
	return base64.StdEncoding.EncodeToString(ed25519.Sign(s.signer.key, checkpointMessage(correlationID, cp)))
}

// checkpointSealed reports whether cp carries this server's seal: a
// checkpoint written around the service, or sealed with another key (an
// ephemeral one before a restart), is not trusted.
func (s *Service) checkpointSealed(correlationID string, cp store.Checkpoint) bool {
	sig, err := base64.StdEncoding.DecodeString(cp.Seal)
	return err == nil && ed25519.Verify(s.signer.PublicKey(), checkpointMessage(correlationID, cp), sig)
}

// checkpointMessage is what a checkpoint's seal signs: every column but
// the seal, in a fixed text form.
func checkpointMessage(correlationID string, cp store.Checkpoint) []byte {
	return fmt.Appendf(nil, "datastorage chain checkpoint v1\n%q\n%d\n%s\n%s\n%d\n%s\n",
		correlationID, cp.Seq, cp.EventID, cp.Hash, cp.Events, cp.VerifiedAt.UTC().Format(time.RFC3339Nano))
}

// checkHead compares the recorded chain head with last, the last stored
// link, after the whole chain was checked.
func (c *linkChecker) checkHead(head *store.ChainHead, last *audit.Event) (problem, expected string) {
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
// store.ErrNotFound when it has no events.
func (s *Service) PlaceHold(ctx context.Context, correlationID, reason, placedBy string) (store.Hold, error) {
	return s.store.PlaceHold(ctx, correlationID, reason, placedBy, s.now())
}

// ReleaseHold releases the hold on correlationID on behalf of releasedBy.
// store.ErrNotFound when it is not held.
func (s *Service) ReleaseHold(ctx context.Context, correlationID, reason, releasedBy string) (store.HoldRelease, error) {
	return s.store.ReleaseHold(ctx, correlationID, reason, releasedBy, s.now())
}

// ListHolds returns the active holds.
func (s *Service) ListHolds(ctx context.Context) ([]store.Hold, error) {
	return s.store.ListHolds(ctx)
}
