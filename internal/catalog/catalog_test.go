package catalog_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/catalog"
	"kubernaut.ai/datastorage/internal/store"
	"kubernaut.ai/datastorage/internal/store/storetest"
	"kubernaut.ai/datastorage/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var anyone = catalog.Actor{Name: "tester"}

func newService(t *testing.T, st *store.Store) *catalog.Service {
	t.Helper()
	return catalog.New(catalog.Options{
		Store: st,
		Sink: catalog.EventSinkFunc(func(ctx context.Context, events []*audit.Event) error {
			_, err := st.InsertEvents(ctx, events)
			return err
		}),
		Validator: &audit.Validator{MaxAge: time.Hour, MaxSkew: time.Hour, DefaultRetentionDays: 2555},
		Weights:   catalog.DefaultWeights,
	})
}

func body(name, version string) []byte {
	b, _ := json.Marshal(map[string]any{
		"workflow_name": name, "version": version, "title": "Workflow " + name,
		"description": map[string]any{"what": "does " + name}, "action_type": "RestartPod",
		"labels": map[string]any{"signal_type": []string{"OOMKilled"}, "severity": []string{"*"}, "component": []string{"*"},
			"environment": []string{"*"}, "priority": []string{"*"}, "risk_tolerance": []string{"*"}, "business_category": []string{"*"}},
		"execution": map[string]any{"engine": "job", "bundle": "registry.local/w@sha256:" + fmt.Sprintf("%064x", 7)},
		"content":   "steps: [" + name + "@" + version + "]",
	})
	return b
}

// latestInvariant reads, in one snapshot, how many versions of name are
// latest and how many are active.
func latestInvariant(ctx context.Context, st *store.Store, name string) (latest, active int, err error) {
	err = st.Pool().QueryRow(ctx, `SELECT count(*) FILTER (WHERE is_latest), count(*) FILTER (WHERE status = 'active')
		FROM workflow_versions WHERE workflow_name = $1`, name).Scan(&latest, &active)
	return latest, active, err
}

func TestExactlyOneLatestUnderConcurrentRegistrationsAndStatusChanges(t *testing.T) {
	st, _ := storetest.New(t, store.Options{MaxConns: 12}, 1)
	svc := newService(t, st)
	ctx := context.Background()
	const name = "contended"

	// An observer checks the invariant in one snapshot after another while
	// 8 writers register versions and move them between statuses.
	stop := make(chan struct{})
	var violations []string
	var observed int
	observerDone := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				observerDone <- nil
				return
			default:
			}
			latest, active, err := latestInvariant(ctx, st, name)
			if err != nil {
				observerDone <- err
				return
			}
			observed++
			if (active > 0 && latest != 1) || (active == 0 && latest != 0) {
				violations = append(violations, fmt.Sprintf("%d latest with %d active", latest, active))
			}
		}
	}()

	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			var mine []string
			for i := range 6 {
				v := fmt.Sprintf("%d.%d.%d", r.IntN(3), g, i)
				if i%3 == 2 {
					v += "-rc.1"
				}
				w, created, err := svc.Register(ctx, body(name, v), anyone)
				if err != nil || !created {
					errs <- fmt.Errorf("register %s: created=%v %w", v, created, err)
					return
				}
				mine = append(mine, w.ID.String())
				id := mine[r.IntN(len(mine))]
				to := []string{"disabled", "deprecated", "active"}[r.IntN(3)]
				_, err = svc.ChangeStatus(ctx, id, []byte(`{"status":"`+to+`","reason":"churn"}`), anyone)
				if err != nil && !errors.Is(err, catalog.ErrInvalidTransition) {
					errs <- fmt.Errorf("change %s to %s: %w", id, to, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	require.NoError(t, <-observerDone)
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	assert.Empty(t, violations, "observed %d snapshots", observed)
	t.Logf("observed %d snapshots during the churn", observed)

	// The latest is the highest active version, stable before pre-release.
	vs, err := svc.Versions(ctx, name)
	require.NoError(t, err)
	require.Len(t, vs, 48)
	var want string
	for _, stable := range []bool{true, false} {
		for _, v := range vs { // precedence order
			pv, _ := catalog.ParseVersion(v.Version)
			if want == "" && v.Status == "active" && (len(pv.Prerelease) == 0) == stable {
				want = v.Version
			}
		}
	}
	var got []string
	for _, v := range vs {
		if v.IsLatest {
			got = append(got, v.Version)
		}
	}
	if want == "" {
		assert.Empty(t, got)
	} else {
		assert.Equal(t, []string{want}, got)
	}
	storetest.RequireRollupsMatchEvents(t, st)
}

func TestFailedRegistrationLeavesNeitherRowNorEvent(t *testing.T) {
	st, _ := storetest.New(t, store.Options{}, 1)
	svc := newService(t, st)
	ctx := context.Background()
	// Make the event insert fail after the version row is written: the
	// transaction must take the row back with it.
	_, err := st.Pool().Exec(ctx, `ALTER TABLE audit_events ADD CONSTRAINT no_catalog_events CHECK (event_action <> 'created') NOT VALID`)
	require.NoError(t, err)
	_, _, err = svc.Register(ctx, body("atomic", "1.0.0"), anyone)
	require.Error(t, err)
	var rows, events int
	require.NoError(t, st.Pool().QueryRow(ctx, `SELECT (SELECT count(*) FROM workflow_versions), (SELECT count(*) FROM audit_events)`).Scan(&rows, &events))
	assert.Zero(t, rows)
	assert.Zero(t, events)

	_, err = st.Pool().Exec(ctx, `ALTER TABLE audit_events DROP CONSTRAINT no_catalog_events`)
	require.NoError(t, err)
	_, created, err := svc.Register(ctx, body("atomic", "1.0.0"), anyone)
	require.NoError(t, err)
	assert.True(t, created)
}

func TestUnavailableDatabaseIsErrUnavailable(t *testing.T) {
	pg, err := testenv.StartPostgres()
	require.NoError(t, err)
	t.Cleanup(func() { _ = pg.Close() })
	ctx := context.Background()
	dbURL, err := pg.CreateDatabase(ctx, "catalog_down")
	require.NoError(t, err)
	st, err := store.Open(ctx, dbURL, store.Options{ConnectTimeout: 2 * time.Second})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	_, err = st.Migrate(ctx, nil)
	require.NoError(t, err)
	_, err = st.EnsurePartitions(ctx, time.Now().AddDate(0, -1, 0), 2)
	require.NoError(t, err)
	svc := newService(t, st)
	w, _, err := svc.Register(ctx, body("down", "1.0.0"), anyone)
	require.NoError(t, err)

	require.NoError(t, pg.Stop())
	_, _, err = svc.Register(ctx, body("down", "1.1.0"), anyone)
	assert.ErrorIs(t, err, catalog.ErrUnavailable)
	_, err = svc.Get(ctx, w.ID.String())
	assert.ErrorIs(t, err, catalog.ErrUnavailable)
	_, err = svc.ChangeStatus(ctx, w.ID.String(), []byte(`{"status":"disabled","reason":"x"}`), anyone)
	assert.ErrorIs(t, err, catalog.ErrUnavailable)
	_, err = svc.Search(ctx, []byte(`{"context":{"signal_type":"OOMKilled"}}`), anyone)
	assert.ErrorIs(t, err, catalog.ErrUnavailable)
	_, err = svc.List(ctx, url.Values{})
	assert.ErrorIs(t, err, catalog.ErrUnavailable)

	require.NoError(t, pg.Start())
	_, created, err := svc.Register(ctx, body("down", "1.1.0"), anyone)
	require.NoError(t, err)
	assert.True(t, created, "nothing was queued while it was down: the retry creates it")
}

func TestRestoreKeepsEveryWorkflowID(t *testing.T) {
	st, dbURL := storetest.New(t, store.Options{}, 1)
	svc := newService(t, st)
	ctx := context.Background()
	want := map[string]string{}
	for _, n := range []string{"alpha", "beta"} {
		for _, v := range []string{"1.0.0", "1.1.0-rc.1"} {
			w, _, err := svc.Register(ctx, body(n, v), anyone)
			require.NoError(t, err)
			want[n+"@"+v] = w.ID.String()
			assert.Equal(t, catalog.WorkflowID(n, v), w.ID)
		}
	}
	st.Close()

	bin := os.Getenv("TESTENV_PG_BINDIR")
	if bin == "" {
		bin = testenv.DefaultPostgresBinDir
	}
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	db := u.Path[1:]
	admin := *u
	admin.Path = "/postgres"
	dump := filepath.Join(t.TempDir(), "catalog.dump")
	run := func(name string, args ...string) {
		out, err := exec.Command(filepath.Join(bin, name), args...).CombinedOutput()
		require.NoError(t, err, "%s: %s", name, out)
	}
	run("pg_dump", "-Fc", "-f", dump, "-d", dbURL)
	run("psql", "-d", admin.String(), "-v", "ON_ERROR_STOP=1", "-c", `DROP DATABASE "`+db+`"`, "-c", `CREATE DATABASE "`+db+`"`)
	run("pg_restore", "--exit-on-error", "-d", dbURL, dump)

	st2, err := store.Open(ctx, dbURL, store.Options{})
	require.NoError(t, err)
	t.Cleanup(st2.Close)
	svc2 := newService(t, st2)
	page, err := svc2.List(ctx, url.Values{})
	require.NoError(t, err)
	got := map[string]string{}
	for _, w := range page.Workflows {
		got[w.Name+"@"+w.Version] = w.ID.String()
	}
	assert.Equal(t, want, got)
	// Re-registering after the restore is idempotent: same id, nothing new.
	w, created, err := svc2.Register(ctx, body("alpha", "1.0.0"), anyone)
	require.NoError(t, err)
	assert.False(t, created)
	assert.Equal(t, want["alpha@1.0.0"], w.ID.String())
	_, created, err = svc2.Register(ctx, body("alpha", "2.0.0"), anyone)
	require.NoError(t, err)
	assert.True(t, created, "the chain continues after the restore")
}
