package store_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/store"
	"kubernaut.ai/datastorage/internal/store/storetest"
)

// Two stores on one database (two replicas), each with concurrent
// requests, write lone events to the same few chains at once: every race
// for a head is lost by all but one writer, which must then relink, never
// fork, and every event must be stored once with the rollups exact.
func TestLoneEventsOfTwoReplicasOnTheSameChainsNeverForkThem(t *testing.T) {
	t.Parallel()
	a, url := storetest.New(t, store.Options{MaxConns: 4}, 1)
	ctx := context.Background()
	b, err := store.Open(ctx, url, store.Options{MaxConns: 4})
	require.NoError(t, err)
	t.Cleanup(b.Close)
	const corrs, writers, each = 3, 4, 40
	var wg sync.WaitGroup
	for _, st := range []*store.Store{a, b} {
		for w := range writers {
			wg.Go(func() {
				for i := range each {
					e := newEvent(fmt.Sprintf("rr-lone-race-%d", (w+i)%corrs), time.Now(), 30)
					n, err := st.InsertEvents(ctx, []*audit.Event{e})
					if !assert.NoError(t, err) {
						return
					}
					assert.EqualValues(t, 1, n)
				}
			})
		}
	}
	wg.Wait()
	var total int64
	for c := range corrs {
		total += verifyChain(t, a, fmt.Sprintf("rr-lone-race-%d", c))
	}
	assert.EqualValues(t, 2*writers*each, total)
	storetest.RequireRollupsMatchEvents(t, a)
}

// As above, with small commits: each of 2 to 5 events over several of the
// same few chains, so that a commit's chains are locked in one statement
// and a race lost on any of them must leave nothing of the commit.
func TestSmallCommitsOfTwoReplicasOnSharedChainsNeverForkThem(t *testing.T) {
	t.Parallel()
	a, url := storetest.New(t, store.Options{MaxConns: 4}, 1)
	ctx := context.Background()
	b, err := store.Open(ctx, url, store.Options{MaxConns: 4})
	require.NoError(t, err)
	t.Cleanup(b.Close)
	const corrs, writers, each = 4, 4, 25
	var wg sync.WaitGroup
	var want atomic.Int64
	for s, st := range []*store.Store{a, b} {
		for w := range writers {
			wg.Go(func() {
				for i := range each {
					size := 2 + (s+w+i)%4
					events := make([]*audit.Event, size)
					for j := range events {
						events[j] = newEvent(fmt.Sprintf("rr-small-race-%d", (w+i+j*(1+s))%corrs), time.Now(), 30)
					}
					n, err := st.InsertEvents(ctx, events)
					if !assert.NoError(t, err) {
						return
					}
					assert.EqualValues(t, size, n)
					want.Add(int64(size))
				}
			})
		}
	}
	wg.Wait()
	var total int64
	for c := range corrs {
		total += verifyChain(t, a, fmt.Sprintf("rr-small-race-%d", c))
	}
	assert.Equal(t, want.Load(), total)
	storetest.RequireRollupsMatchEvents(t, a)
}
