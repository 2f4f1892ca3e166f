// Package storetest gives integration tests a migrated store on a database
// of their own, the setup nearly every test above the store starts with.
// The calling package must run its tests through testenv.Main.
package storetest

import (
	"context"
	"testing"
	"time"

	"kubernaut.ai/datastorage/internal/store"
	"kubernaut.ai/datastorage/internal/testenv"
)

// New opens a store with opts on a fresh database (dropped after the test),
// migrates it and creates the partitions of the previous month through
// ahead months after the current one. It returns the store, closed after
// the test, and the database URL.
func New(t testing.TB, opts store.Options, ahead int) (*store.Store, string) {
	t.Helper()
	ctx := context.Background()
	url := testenv.NewDatabase(t)
	st, err := store.Open(ctx, url, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if _, err := st.Migrate(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := st.EnsurePartitions(ctx, time.Now().AddDate(0, -1, 0), ahead+1); err != nil {
		t.Fatal(err)
	}
	return st, url
}
