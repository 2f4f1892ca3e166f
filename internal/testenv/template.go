package testenv

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// templateDB is one template database on the shared server, built at most once per test
// process. ready is closed when the build has finished, successfully (err nil) or not.
type templateDB struct {
	ready chan struct{}
	name  string // the database; empty until the build has created it
	err   error
}

// NewTemplatedDatabase is [NewDatabase] for tests that all start from the same prepared
// schema: it returns the URL of a fresh database (dropped by t.Cleanup) that is a copy of the
// template database named by key, which build prepares once per test process on the shared
// server, on the first call for that key.
//
// Copying a database (CREATE DATABASE … TEMPLATE) takes a few milliseconds whatever the
// template holds, where running dozens of migration statements per test takes far longer
// and makes parallel tests contend for the catalog. Concurrent first calls wait for the one
// build; the rest clone at once.
//
// build gets the URL of an empty database and must close every connection it opened before
// it returns: a database with sessions cannot be copied. Afterwards the template refuses
// connections, so no test can change what the next one copies. If build fails, every test
// asking for that key fails with its error.
//
// Under go test -short the test is skipped. On a server named by DATASTORAGE_TEST_POSTGRES_URL
// [Main] drops the templates at the end; a test binary that dies first leaves its templates
// behind (named tmpl_<key>_<random>), which is harmless.
func NewTemplatedDatabase(t testing.TB, key string, build func(ctx context.Context, url string) error) string {
	t.Helper()
	skipIfShort(t, "PostgreSQL")
	adminURL := sharedPostgresAdminURL(t)
	tmpl, err := templateFor(adminURL, key, build)
	if err != nil {
		t.Fatalf("testenv: template database %q: %v", key, err)
	}
	name := uniqueName(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := createDatabaseFrom(ctx, adminURL, name, tmpl); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := dropDatabase(ctx, adminURL, name); err != nil {
			t.Error(err)
		}
	})
	u, err := databaseURL(adminURL, name)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// templateFor returns the name of the template database for key, building it on first use.
// Only the lookup holds sharedMu; callers for the same key wait for the one build, callers
// for other keys do not.
func templateFor(adminURL, key string, build func(ctx context.Context, url string) error) (string, error) {
	sharedMu.Lock()
	tmpl, ok := sharedPG.templates[key]
	if !ok {
		if sharedPG.templates == nil {
			sharedPG.templates = make(map[string]*templateDB)
		}
		tmpl = &templateDB{ready: make(chan struct{})}
		sharedPG.templates[key] = tmpl
	}
	sharedMu.Unlock()
	if ok {
		<-tmpl.ready
		return tmpl.name, tmpl.err
	}
	defer close(tmpl.ready)
	name, err := buildTemplate(adminURL, key, build)
	sharedMu.Lock()
	tmpl.name, tmpl.err = name, err
	sharedMu.Unlock()
	return name, err
}

// buildTemplate creates the template database, runs build on it, then closes it to
// connections and ends any session build left open.
func buildTemplate(adminURL, key string, build func(ctx context.Context, url string) error) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	name := templateName(key)
	if err := createDatabase(ctx, adminURL, name); err != nil {
		return "", err
	}
	u, err := databaseURL(adminURL, name)
	if err != nil {
		return name, err
	}
	if err := build(ctx, u); err != nil {
		return name, fmt.Errorf("build: %w", err)
	}
	conn, err := pgconn.Connect(ctx, adminURL)
	if err != nil {
		return name, fmt.Errorf("connect to seal template %s: %w", name, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH ALLOW_CONNECTIONS false").ReadAll(); err != nil {
		return name, fmt.Errorf("seal template %s: %w", name, err)
	}
	terminate := "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1"
	if _, err := conn.ExecParams(ctx, terminate, [][]byte{[]byte(name)}, nil, nil, nil).Close(); err != nil {
		return name, fmt.Errorf("seal template %s: %w", name, err)
	}
	return name, nil
}

// templateName is tmpl_, the key reduced to [a-z0-9_], and random hex (unique across test
// processes sharing a server). The key is cut so that the name fits PostgreSQL's 63 bytes.
func templateName(key string) string {
	var b []byte
	for _, r := range key {
		if len(b) >= 32 {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b = append(b, byte(r))
		case r >= 'A' && r <= 'Z':
			b = append(b, byte(r-'A'+'a'))
		default:
			b = append(b, '_')
		}
	}
	return "tmpl_" + string(b) + "_" + randomHex(6)
}
