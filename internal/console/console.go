package console

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"kubernaut.ai/datastorage/internal/auth"
)

// Prefix is where the console is served.
const Prefix = "/console/"

// SessionTTL is how long a sign-in lasts; a person signs in again after it.
const SessionTTL = 8 * time.Hour

// Cookie names. The session cookie holds the bearer token the person signed
// in with; the CSRF cookie holds the random value every form must echo.
const (
	sessionCookie = "ds_session"
	csrfCookie    = "ds_csrf"
	csrfField     = "csrf_token"
)

// contentSecurityPolicy allows the console's own stylesheet and nothing
// else: no script, no frames, no foreign images, forms only to itself.
const contentSecurityPolicy = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; " +
	"frame-ancestors 'none'; base-uri 'none'"

// Authorizer checks a bearer token for a verb; it is the API's own
// (*auth.Static or *auth.Kubernetes).
type Authorizer interface {
	Authorize(ctx context.Context, token string, verb auth.Verb) (auth.Identity, error)
}

// Config is what the console needs besides the API.
type Config struct {
	// Auth checks the tokens people sign in with; nil means auth.mode none:
	// no sign-in, every verb allowed.
	Auth Authorizer
	// Secure marks the cookies Secure; set it when the API port serves TLS.
	Secure bool
	// Log receives the console's own errors; nil discards them.
	Log *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Console serves the pages. It is an http.Handler for the paths under
// Prefix.
type Console struct {
	api   http.Handler
	cfg   Config
	mux   *http.ServeMux
	pages map[string]*template.Template
}

//go:embed templates/*.tmpl
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// New returns the console over api, the API's complete handler (with its
// authentication, limits and metrics).
func New(api http.Handler, cfg Config) *Console {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c := &Console{api: api, cfg: cfg, mux: http.NewServeMux(), pages: parsePages()}
	c.routes()
	return c
}

// ServeHTTP serves a console page with the console's security headers.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	// same-origin, not no-referrer: no address of the console ever goes to
	// another site, and the browser still sends its true Origin with the
	// console's own forms (under no-referrer it sends "null"), which the
	// CSRF check needs.
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	c.mux.ServeHTTP(w, r)
}

// session is what a page knows of its caller.
type session struct {
	token string
	// remote is the browser's address: the API's rate limit and logs see
	// the person, not the console.
	remote string
	// Identity is who signed in (empty with auth.mode none).
	Identity string
	// CanCreate and CanUpdate say which actions to offer; the API decides
	// anyway.
	CanCreate, CanUpdate bool
	// AuthOn says whether there is a sign-in at all.
	AuthOn bool
	// CSRF is the token this page's forms carry.
	CSRF string
}

// signedIn returns the caller's session, or sends them to the sign-in page
// and returns false.
func (c *Console) signedIn(w http.ResponseWriter, r *http.Request) (*session, bool) {
	s := &session{CSRF: c.csrfToken(w, r), remote: r.RemoteAddr}
	if c.cfg.Auth == nil {
		s.CanCreate, s.CanUpdate = true, true
		return s, true
	}
	s.AuthOn = true
	ck, err := r.Cookie(sessionCookie)
	if err == nil && ck.Value != "" {
		id, err := c.cfg.Auth.Authorize(r.Context(), ck.Value, auth.VerbGet)
		if err == nil {
			s.token, s.Identity = ck.Value, id.Name
			_, err = c.cfg.Auth.Authorize(r.Context(), ck.Value, auth.VerbCreate)
			s.CanCreate = err == nil
			_, err = c.cfg.Auth.Authorize(r.Context(), ck.Value, auth.VerbUpdate)
			s.CanUpdate = err == nil
			return s, true
		}
		if errors.Is(err, auth.ErrUnavailable) {
			c.fail(w, r, s, http.StatusServiceUnavailable, "Your sign-in cannot be checked right now: the authority that verifies tokens is unreachable. Try again in a moment.")
			return nil, false
		}
	}
	if r.Method == http.MethodGet {
		http.Redirect(w, r, Prefix+"signin?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
	} else {
		c.fail(w, r, s, http.StatusUnauthorized, "Sign in first.")
	}
	return nil, false
}

// csrfToken returns the CSRF value of this browser, setting a new one when
// it has none.
func (c *Console) csrfToken(w http.ResponseWriter, r *http.Request) string {
	if ck, err := r.Cookie(csrfCookie); err == nil && len(ck.Value) == 64 {
		return ck.Value
	}
	var b [32]byte
	_, _ = rand.Read(b[:])
	v := hex.EncodeToString(b[:])
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: v, Path: Prefix, HttpOnly: true, Secure: c.cfg.Secure,
		SameSite: http.SameSiteStrictMode})
	// The request carries it from now on, so a page that renders a form in
	// this same response uses the value just set.
	r.AddCookie(&http.Cookie{Name: csrfCookie, Value: v})
	return v
}

// checkPost refuses a state-changing request that did not come from one of
// the console's own forms: the Origin (or Referer) must be this host, and
// the form must echo the CSRF cookie.
func (c *Console) checkPost(w http.ResponseWriter, r *http.Request, s *session) bool {
	if err := r.ParseForm(); err != nil {
		c.fail(w, r, s, http.StatusBadRequest, "The form could not be read.")
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		origin = r.Header.Get("Referer")
	}
	u, err := url.Parse(origin)
	if origin == "" || err != nil || u.Host != r.Host {
		c.fail(w, r, s, http.StatusForbidden, "Refused: this form was not sent from the console's own page.")
		return false
	}
	ck, err := r.Cookie(csrfCookie)
	sent := r.PostForm.Get(csrfField)
	if err != nil || sent == "" || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(sent)) != 1 {
		c.fail(w, r, s, http.StatusForbidden, "Refused: the form's security token is missing or stale. Reload the page and try again.")
		return false
	}
	return true
}

// apiResult is the answer of an in-process API call.
type apiResult struct {
	Status int
	Body   []byte
	Header http.Header
}

// problem returns the detail (or title) of an RFC 7807 answer.
func (a apiResult) problem() string {
	var p struct {
		Title       string            `json:"title"`
		Detail      string            `json:"detail"`
		FieldErrors map[string]string `json:"field_errors"`
	}
	if json.Unmarshal(a.Body, &p) != nil {
		return http.StatusText(a.Status)
	}
	msg := p.Title
	if p.Detail != "" {
		msg = p.Detail
	}
	for k, v := range p.FieldErrors {
		msg += "; " + k + ": " + v
	}
	return msg
}

// call sends one request to the API in process, as the signed-in caller.
func (c *Console) call(ctx context.Context, s *session, method, path string, body any) apiResult {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return apiResult{Status: http.StatusInternalServerError}
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, path, rd)
	if err != nil {
		return apiResult{Status: http.StatusBadRequest, Body: []byte(`{"title":"bad request"}`)}
	}
	req.RemoteAddr = s.remote
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	rec := &recorder{header: http.Header{}}
	c.api.ServeHTTP(rec, req)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return apiResult{Status: rec.status, Body: rec.body.Bytes(), Header: rec.header}
}

// get calls the API and decodes a 200 answer into out; other answers come
// back as an error whose text is the problem's detail.
func (c *Console) get(ctx context.Context, s *session, path string, out any) (int, error) {
	return c.call(ctx, s, http.MethodGet, path, nil).decode(path, out)
}

// decode reads a 200 answer into out; another answer is an error whose text
// is the problem's detail.
func (a apiResult) decode(path string, out any) (int, error) {
	if a.Status != http.StatusOK {
		return a.Status, errors.New(a.problem())
	}
	if err := json.Unmarshal(a.Body, out); err != nil {
		return http.StatusInternalServerError, fmt.Errorf("console: decode %s: %w", path, err)
	}
	return a.Status, nil
}

// getAll sends GET requests for paths concurrently and returns a function
// that decodes the answer of one of them as get would.
func (c *Console) getAll(ctx context.Context, s *session, paths ...string) func(path string, out any) (int, error) {
	results := make(map[string]apiResult, len(paths))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, p := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := c.call(ctx, s, http.MethodGet, p, nil)
			mu.Lock()
			results[p] = res
			mu.Unlock()
		}()
	}
	wg.Wait()
	return func(path string, out any) (int, error) {
		res, ok := results[path]
		if !ok {
			res = c.call(ctx, s, http.MethodGet, path, nil)
		}
		return res.decode(path, out)
	}
}

// recorder keeps an in-process API answer.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}

// render writes a page.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, page string, s *session, data any) {
	var b bytes.Buffer
	t, ok := c.pages[page]
	if !ok {
		panic("console: no page " + page)
	}
	if err := t.ExecuteTemplate(&b, "layout", pageData{Session: s, Page: page, Data: data, Path: r.URL.Path}); err != nil {
		c.cfg.Log.ErrorContext(r.Context(), "console page failed", "page", page, "error", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// fail shows an error page.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, s *session, status int, msg string) {
	c.render(w, r, status, "error", s, errorPage{Status: status, Title: http.StatusText(status), Message: msg})
}

// failAPI shows the API's answer as an error page.
func (c *Console) failAPI(w http.ResponseWriter, r *http.Request, s *session, status int, err error) {
	if status == http.StatusOK {
		status = http.StatusInternalServerError
	}
	c.fail(w, r, s, status, err.Error())
}

// pageData is what every template gets.
type pageData struct {
	Session *session
	Page    string
	Path    string
	Data    any
}

type errorPage struct {
	Status         int
	Title, Message string
}

func (c *Console) routes() {
	m := c.mux
	m.Handle("GET "+Prefix+"assets/", http.StripPrefix(Prefix, http.FileServerFS(assetFS)))
	m.HandleFunc("GET "+Prefix+"{$}", c.index)
	m.HandleFunc("GET "+Prefix+"go", c.jump)
	m.HandleFunc("GET "+Prefix+"events", c.events)
	m.HandleFunc("GET "+Prefix+"events/{event_id}", c.event)
	m.HandleFunc("GET "+Prefix+"timeline/{correlation_id}", c.timeline)
	m.HandleFunc("GET "+Prefix+"dashboards", c.dashboards)
	m.HandleFunc("GET "+Prefix+"integrity", c.integrity)
	m.HandleFunc("POST "+Prefix+"integrity/verify", c.verify)
	m.HandleFunc("POST "+Prefix+"integrity/holds", c.placeHold)
	m.HandleFunc("POST "+Prefix+"integrity/holds/release", c.releaseHold)
	m.HandleFunc("GET "+Prefix+"export", c.export)
	m.HandleFunc("GET "+Prefix+"workflows", c.workflows)
	m.HandleFunc("GET "+Prefix+"workflows/search", c.workflowSearch)
	m.HandleFunc("GET "+Prefix+"workflows/{workflow_id}", c.workflowVersion)
	m.HandleFunc("POST "+Prefix+"workflows/{workflow_id}/status", c.workflowStatus)
	m.HandleFunc("GET "+Prefix+"history", c.history)
	m.HandleFunc("GET "+Prefix+"signin", c.signinForm)
	m.HandleFunc("POST "+Prefix+"signin", c.signin)
	m.HandleFunc("POST "+Prefix+"signout", c.signout)
	m.HandleFunc(Prefix, func(w http.ResponseWriter, r *http.Request) {
		c.fail(w, r, &session{CSRF: c.csrfToken(w, r)}, http.StatusNotFound, "There is no console page at this address.")
	})
}

// signinForm asks for a token; with auth.mode none there is nothing to sign
// in to.
func (c *Console) signinForm(w http.ResponseWriter, r *http.Request) {
	s := &session{CSRF: c.csrfToken(w, r), AuthOn: c.cfg.Auth != nil}
	if c.cfg.Auth == nil {
		http.Redirect(w, r, Prefix, http.StatusSeeOther)
		return
	}
	c.render(w, r, http.StatusOK, "signin", s, signinPage{Next: safeNext(r.URL.Query().Get("next"))})
}

type signinPage struct {
	Next, Error string
}

// signin checks the pasted token like any API request would and keeps it in
// the session cookie.
func (c *Console) signin(w http.ResponseWriter, r *http.Request) {
	s := &session{CSRF: c.csrfToken(w, r), AuthOn: c.cfg.Auth != nil}
	if c.cfg.Auth == nil {
		http.Redirect(w, r, Prefix, http.StatusSeeOther)
		return
	}
	if !c.checkPost(w, r, s) {
		return
	}
	token := strings.TrimSpace(r.PostForm.Get("token"))
	next := safeNext(r.PostForm.Get("next"))
	_, err := c.cfg.Auth.Authorize(r.Context(), token, auth.VerbGet)
	switch {
	case err == nil:
	case errors.Is(err, auth.ErrUnavailable):
		c.render(w, r, http.StatusServiceUnavailable, "signin", s, signinPage{Next: next, Error: "The token cannot be checked right now; try again in a moment."})
		return
	default:
		c.render(w, r, http.StatusUnauthorized, "signin", s, signinPage{Next: next, Error: "This token is not valid, or it may not read the audit trail."})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: token, Path: Prefix, HttpOnly: true, Secure: c.cfg.Secure,
		SameSite: http.SameSiteStrictMode, Expires: c.cfg.Now().Add(SessionTTL), MaxAge: int(SessionTTL.Seconds())})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// signout forgets the session.
func (c *Console) signout(w http.ResponseWriter, r *http.Request) {
	s := &session{CSRF: c.csrfToken(w, r), AuthOn: c.cfg.Auth != nil}
	if !c.checkPost(w, r, s) {
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: Prefix, HttpOnly: true, Secure: c.cfg.Secure,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.Redirect(w, r, Prefix+"signin", http.StatusSeeOther)
}

// safeNext keeps a post-sign-in redirect inside the console.
func safeNext(next string) string {
	if !strings.HasPrefix(next, Prefix) || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return Prefix
	}
	return next
}
