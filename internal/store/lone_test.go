package store_test

import (
	"context"
	"fmt"
	"sync"
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
