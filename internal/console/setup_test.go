package console_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/auth"
	"kubernaut.ai/datastorage/internal/catalog"
	"kubernaut.ai/datastorage/internal/console"
	"kubernaut.ai/datastorage/internal/httpapi"
	"kubernaut.ai/datastorage/internal/ingest"
	"kubernaut.ai/datastorage/internal/integrity"
	"kubernaut.ai/datastorage/internal/query"
	"kubernaut.ai/datastorage/internal/remediation"
	"kubernaut.ai/datastorage/internal/store"
	"kubernaut.ai/datastorage/internal/store/storetest"
	"kubernaut.ai/datastorage/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// Tokens of the static token file that setup writes when authentication is on.
const (
	readerToken  = "reader-token-0123456789"
	auditorToken = "auditor-token-0123456789"
)

// bundle is a real API with the console over a fresh, migrated database.
type bundle struct {
	t   *testing.T
	srv *httptest.Server
	st  *store.Store
}

// setup starts the server. With withAuth, auth.mode is static with a
// get-only token (readerToken) and a get/create/update one (auditorToken).
func setup(t *testing.T, withAuth bool) *bundle {
	t.Helper()
	st, _ := storetest.New(t, store.Options{MaxConns: 8}, 1)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pipe := ingest.New(st, nil, ingest.Options{Writers: 1}, nil, log)
	require.NoError(t, pipe.Start(context.Background()))
	t.Cleanup(func() { _ = pipe.Stop(context.Background()) })
	signer, err := integrity.GenerateSigner()
	require.NoError(t, err)
	var authz httpapi.Authorizer
	var consoleAuth console.Authorizer
	if withAuth {
		path := filepath.Join(t.TempDir(), "tokens.yaml")
		require.NoError(t, os.WriteFile(path, []byte("tokens:\n"+
			"  - {name: reader, token: "+readerToken+", verbs: [get], user: true}\n"+
			"  - {name: auditor, token: "+auditorToken+", verbs: [get, create, update], user: true}\n"), 0o600))
		s, err := auth.NewStatic(path, auth.ReloadOptions{Log: log})
		require.NoError(t, err)
		authz, consoleAuth = s, s
	}
	validator := &audit.Validator{MaxAge: 7 * 24 * time.Hour, MaxSkew: time.Hour, DefaultRetentionDays: 2555}
	api := httpapi.New(httpapi.Config{
		Validator:      validator,
		Ingest:         pipe,
		Reader:         query.New(st),
		Timelines:      query.NewTimelines(st),
		Aggregator:     query.NewAggregator(st),
		Notifications:  st,
		Health:         okHealth{},
		Log:            log,
		MaxBatchSize:   1000,
		MaxBodySize:    1 << 20,
		RequestTimeout: 10 * time.Second,
		Auth:           authz,
		Integrity:      integrity.NewService(st, audit.NewHasher(nil), signer),
		Catalog: catalog.New(catalog.Options{Store: st, Validator: validator, Weights: catalog.DefaultWeights, Log: log,
			Sink: catalog.EventSinkFunc(func(ctx context.Context, events []*audit.Event) error {
				_, err := pipe.Submit(ctx, events)
				return err
			})}),
		Remediations: remediation.New(st),
		Console: func(h http.Handler) http.Handler {
			return console.New(h, console.Config{Auth: consoleAuth, Log: log})
		},
	})
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return &bundle{t: t, srv: srv, st: st}
}

type okHealth struct{}

func (okHealth) Check(context.Context) (bool, bool) { return true, true }
func (okHealth) ShuttingDown() bool                 { return false }

// seed writes events through the store, as the write path would.
func (b *bundle) seed(events ...*audit.Event) {
	b.t.Helper()
	_, err := b.st.InsertEvents(context.Background(), events)
	require.NoError(b.t, err)
}

// event builds a valid event of corr at ts with data.
func event(corr string, ts time.Time, outcome, data string) *audit.Event {
	return &audit.Event{
		ID: uuid.New(), Version: "1.0", Type: "workflow.step.executed", Timestamp: audit.NewTime(ts), Date: audit.DateOf(ts),
		Category: "workflowexecution", Action: "executed", Outcome: outcome, CorrelationID: corr,
		Data: json.RawMessage(data), ActorType: "service", ActorID: "workflowexecution-service",
		ResourceType: "workflowexecution", ResourceID: corr, Severity: "info", RetentionDays: 30, Namespace: "prod",
	}
}

// browser is an HTTP client with cookies that sends what a browser sends
// with a form: the Origin of the page.
type browser struct {
	b *bundle
	c *http.Client
}

func (b *bundle) browser() *browser {
	jar, err := cookiejar.New(nil)
	require.NoError(b.t, err)
	return &browser{b: b, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

type page struct {
	status int
	header http.Header
	body   string
}

func (br *browser) get(path string) page {
	br.b.t.Helper()
	resp, err := br.c.Get(br.b.srv.URL + path)
	require.NoError(br.b.t, err)
	return read(br.b.t, resp)
}

// post sends a form; origin "" sends none, "self" sends the server's own.
func (br *browser) post(path string, form url.Values, origin string) page {
	br.b.t.Helper()
	req, err := http.NewRequest(http.MethodPost, br.b.srv.URL+path, strings.NewReader(form.Encode()))
	require.NoError(br.b.t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	switch origin {
	case "":
	case "self":
		req.Header.Set("Origin", br.b.srv.URL)
	default:
		req.Header.Set("Origin", origin)
	}
	resp, err := br.c.Do(req)
	require.NoError(br.b.t, err)
	return read(br.b.t, resp)
}

// csrf is the CSRF value the console gave this browser.
func (br *browser) csrf() string {
	u, _ := url.Parse(br.b.srv.URL + console.Prefix)
	for _, c := range br.c.Jar.Cookies(u) {
		if c.Name == "ds_csrf" {
			return c.Value
		}
	}
	br.b.t.Fatal("no CSRF cookie: load a console page first")
	return ""
}

// signIn signs the browser in with token.
func (br *browser) signIn(token string) page {
	br.b.t.Helper()
	br.get("/console/signin")
	return br.post("/console/signin", url.Values{"token": {token}, "csrf_token": {br.csrf()}, "next": {"/console/"}}, "self")
}

func read(t *testing.T, resp *http.Response) page {
	t.Helper()
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return page{status: resp.StatusCode, header: resp.Header, body: string(body)}
}
