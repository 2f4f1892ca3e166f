package store

import (
	"sync"
	"time"

	"github.com/google/uuid"

	"kubernaut.ai/datastorage/internal/audit"
)

// recentEvents remembers the event_date of the events this store committed
// lately, so that a new event's parent, nearly always an event its service
// wrote seconds before, is resolved without a query. At single-event load
// the lookup before queueing cost PostgreSQL 0.2 ms a call, mostly
// planning across partitions (bench/results/latest.md). A parent it does
// not know (written by another replica, or long ago) is looked up as before;
// nothing depends on the cache but speed.
//
// What it holds is committed: entries are added after COMMIT. An event is
// only remembered if retention cannot delete it while it is remembered (its
// expiry is more than a day past recentTTL), so a child resolved from here
// always finds its parent stored.
type recentEvents struct {
	mu    sync.Mutex
	dates map[uuid.UUID]recentEntry
	ring  []uuid.UUID // insertion order; the oldest is overwritten first
	next  int
}

// recentEntry is kept small: 65,536 of them live in every replica.
type recentEntry struct {
	day int32 // event_date, in days since 1970-01-01
	at  int64 // when it was remembered, Unix seconds
}

const secondsPerDay = 24 * 60 * 60

const (
	// recentCapacity bounds the cache: some 5 MB, several seconds of
	// writes at full speed, minutes at ordinary load.
	recentCapacity = 1 << 16
	// recentTTL bounds how long an entry is trusted.
	recentTTL = time.Hour
)

func newRecentEvents() *recentEvents {
	return &recentEvents{dates: make(map[uuid.UUID]recentEntry, recentCapacity), ring: make([]uuid.UUID, 0, recentCapacity)}
}

// add remembers committed events.
func (r *recentEvents) add(events []*audit.Event, now time.Time) {
	keepUntil := now.Add(recentTTL).AddDate(0, 0, 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range events {
		if e.Date.Std().AddDate(0, 0, int(e.RetentionDays)).Before(keepUntil) {
			continue // retention may take it while it is remembered
		}
		if len(r.ring) < recentCapacity {
			r.ring = append(r.ring, e.ID)
		} else {
			delete(r.dates, r.ring[r.next])
			r.ring[r.next] = e.ID
			r.next = (r.next + 1) % recentCapacity
		}
		r.dates[e.ID] = recentEntry{day: int32(e.Date.Std().Unix() / secondsPerDay), at: now.Unix()}
	}
}

// resolve sets ParentDate on the events whose parent it remembers.
func (r *recentEvents) resolve(events []*audit.Event, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range events {
		if e.ParentResolved() {
			continue
		}
		if ent, ok := r.dates[*e.ParentID]; ok && now.Unix()-ent.at < int64(recentTTL/time.Second) {
			e.ResolveParent(audit.Date(time.Unix(int64(ent.day)*secondsPerDay, 0).UTC()))
		}
	}
}
