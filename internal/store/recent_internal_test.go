package store

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"

	"kubernaut.ai/datastorage/internal/audit"
)

func recentEvent(ts time.Time, retentionDays int32) *audit.Event {
	return &audit.Event{ID: uuid.New(), Timestamp: audit.NewTime(ts), Date: audit.DateOf(ts), RetentionDays: retentionDays}
}

func childOf(parent *audit.Event) *audit.Event {
	c := recentEvent(time.Now(), 30)
	id := parent.ID
	c.ParentID = &id
	return c
}

func TestRecentEventsResolveParentsTheyRememberAndNoOthers(t *testing.T) {
	t.Parallel()
	r := newRecentEvents()
	now := time.Now()
	parent := recentEvent(now.Add(-48*time.Hour), 30)
	soonExpired := recentEvent(now.AddDate(0, 0, -6), 7) // expires tomorrow: retention may take it
	r.add([]*audit.Event{parent, soonExpired}, now)

	known, unknown, expiring := childOf(parent), childOf(recentEvent(now, 30)), childOf(soonExpired)
	r.resolve([]*audit.Event{known, unknown, expiring}, now.Add(time.Minute))
	if assert.NotNil(t, known.ParentDate) {
		assert.Equal(t, parent.Date.Std(), known.ParentDate.Std())
	}
	assert.Nil(t, unknown.ParentDate, "never committed here")
	assert.Nil(t, expiring.ParentDate, "not remembered: retention could delete it meanwhile")

	late := childOf(parent)
	r.resolve([]*audit.Event{late}, now.Add(recentTTL))
	assert.Nil(t, late.ParentDate, "entries are trusted for recentTTL only")
}

func TestRecentEventsForgetTheOldestBeyondCapacity(t *testing.T) {
	t.Parallel()
	r := newRecentEvents()
	now := time.Now()
	first := recentEvent(now, 30)
	r.add([]*audit.Event{first}, now)
	batch := make([]*audit.Event, recentCapacity)
	for i := range batch {
		batch[i] = recentEvent(now, 30)
	}
	r.add(batch, now)
	assert.Len(t, r.dates, recentCapacity)
	c1, c2 := childOf(first), childOf(batch[len(batch)-1])
	r.resolve([]*audit.Event{c1, c2}, now)
	assert.Nil(t, c1.ParentDate, "the oldest entry made room")
	assert.NotNil(t, c2.ParentDate)
}
