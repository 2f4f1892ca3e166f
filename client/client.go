package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Client calls the Data Storage API. It is safe for concurrent use. Its
// methods do not retry: a failure is returned at once, as a *[Problem] when
// the server answered 4xx or 5xx.
type Client struct {
	base      *url.URL
	hc        *http.Client
	tokens    TokenSource
	userAgent string
	now       func() time.Time
}

// Option configures a [Client].
type Option func(*Client)

// WithHTTPClient sets the *http.Client (default: one with a 30 s timeout).
// Set its Transport for TLS (a private CA) or proxies.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithToken sends a fixed bearer token.
func WithToken(token string) Option {
	return func(c *Client) { c.tokens = StaticToken(token) }
}

// WithTokenFile sends the token held in a file, read again when the file
// changes (see [FileToken]). For a Kubernetes service account use the
// projected token, e.g. /var/run/secrets/kubernetes.io/serviceaccount/token.
func WithTokenFile(path string) Option {
	return func(c *Client) { c.tokens = NewFileToken(path) }
}

// WithTokenSource sends the tokens of ts.
func WithTokenSource(ts TokenSource) Option { return func(c *Client) { c.tokens = ts } }

// WithUserAgent sets the User-Agent header, e.g. "gateway/1.4".
func WithUserAgent(ua string) Option { return func(c *Client) { c.userAgent = ua } }

// New returns a client of the server at baseURL, the API port's root, e.g.
// "http://data-storage.platform.svc:8080" (a path prefix is kept).
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("datastorage: base URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("datastorage: base URL %q: want http(s)://host[:port][/prefix]", baseURL)
	}
	u.RawQuery, u.Fragment = "", ""
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = strings.TrimSuffix(u.RawPath, "/")
	c := &Client{
		base:      u,
		hc:        &http.Client{Timeout: 30 * time.Second},
		userAgent: "datastorage-go-client",
		now:       time.Now,
	}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

type requestIDKey struct{}

// WithRequestID returns a context whose requests carry the X-Request-ID id,
// so that the server's log lines of the call can be found by it.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// endpoint builds the URL of path segments below the base; segments are
// escaped, so an id containing "/" stays one segment.
func (c *Client) endpoint(query url.Values, segments ...string) *url.URL {
	u := *c.base
	raw := u.EscapedPath()
	for _, s := range segments {
		raw += "/" + url.PathEscape(s)
	}
	u.Path, _ = url.PathUnescape(raw)
	u.RawPath = raw
	u.RawQuery = ""
	if len(query) > 0 {
		u.RawQuery = query.Encode()
	}
	return &u
}

// apiPath is the segments of /api/v1/audit.
var apiPath = []string{"api", "v1", "audit"}

func auditEndpoint(c *Client, query url.Values, segments ...string) *url.URL {
	return c.endpoint(query, append(append([]string{}, apiPath...), segments...)...)
}

// response is a finished exchange with a 1xx–3xx status (errors are Problems).
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends one request. body, when not nil, is sent as JSON. A 401 with a
// token source that can be invalidated (a token file) is retried once with
// a freshly read token.
func (c *Client) do(ctx context.Context, method string, u *url.URL, body []byte, accept string) (response, error) {
	resp, err := c.send(ctx, method, u, body, accept)
	if err == nil && resp.StatusCode == http.StatusUnauthorized {
		if inv, ok := c.tokens.(invalidator); ok {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
			resp.Body.Close()
			inv.Invalidate()
			resp, err = c.send(ctx, method, u, body, accept)
		}
	}
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return response{}, newProblem(resp, b)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, fmt.Errorf("datastorage: %s %s: reading the response: %w", method, u.Path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// send sends one request and returns the unread response.
func (c *Client) send(ctx context.Context, method string, u *url.URL, body []byte, accept string) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, fmt.Errorf("datastorage: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if accept == "" {
		accept = "application/json"
	}
	req.Header.Set("Accept", accept)
	if c.userAgent != "" {
		req.Header.Set("User-Agent", c.userAgent)
	}
	if id, ok := ctx.Value(requestIDKey{}).(string); ok && id != "" {
		req.Header.Set("X-Request-ID", id)
	}
	if c.tokens != nil {
		tok, err := c.tokens.Token(ctx)
		if err != nil {
			return nil, err
		}
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("datastorage: %s %s: %w", method, u.Path, err)
	}
	return resp, nil
}

// getJSON sends a GET and decodes a 200 body into out.
func (c *Client) getJSON(ctx context.Context, u *url.URL, out any) error {
	r, err := c.do(ctx, http.MethodGet, u, nil, "")
	if err != nil {
		return err
	}
	return decode(r, out)
}

// sendJSON sends in as the JSON body and decodes a 2xx body into out.
func (c *Client) sendJSON(ctx context.Context, method string, u *url.URL, in, out any) (response, error) {
	b, err := json.Marshal(in)
	if err != nil {
		return response{}, fmt.Errorf("datastorage: encoding the request: %w", err)
	}
	r, err := c.do(ctx, method, u, b, "")
	if err != nil {
		return r, err
	}
	return r, decode(r, out)
}

func decode(r response, out any) error {
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(r.body, out); err != nil {
		return fmt.Errorf("datastorage: decoding the %d response: %w", r.status, err)
	}
	return nil
}

// errUnexpected reports a success status the API does not document here.
func errUnexpected(r response) error {
	return fmt.Errorf("datastorage: unexpected status %d", r.status)
}

// --- writes ---

// WriteEvent writes one event. It fills ID (a new UUIDv7: the write is
// idempotent, sending the same event again stores it once), Timestamp
// and Data when they are zero. Queued in the result means the server
// spooled it (202).
func (c *Client) WriteEvent(ctx context.Context, ev Event) (WriteResult, error) {
	req, err := ev.prepare(c.now())
	if err != nil {
		return WriteResult{}, err
	}
	var out struct {
		EventID        string    `json:"event_id"`
		EventTimestamp time.Time `json:"event_timestamp"`
		Message        string    `json:"message"`
	}
	r, err := c.sendJSON(ctx, http.MethodPost, auditEndpoint(c, nil, "events"), req, &out)
	if err != nil {
		return WriteResult{}, err
	}
	switch r.status {
	case http.StatusCreated:
		return WriteResult{ID: req.ID, Timestamp: out.EventTimestamp, Message: out.Message}, nil
	case http.StatusAccepted:
		return WriteResult{ID: req.ID, Timestamp: req.Timestamp.UTC().Truncate(time.Microsecond), Queued: true, Message: out.Message}, nil
	}
	return WriteResult{}, errUnexpected(r)
}

// WriteEvents writes a batch atomically: when any event is invalid nothing
// is written and the *Problem's FieldErrors name "[i].field" for each. Zero
// IDs, Timestamps and Data are filled as in WriteEvent. The
// batch may hold up to the server's server.maxBatchSize (default 10000).
func (c *Client) WriteEvents(ctx context.Context, events []Event) (BatchResult, error) {
	if len(events) == 0 {
		return BatchResult{}, errors.New("datastorage: WriteEvents needs at least one event")
	}
	now := c.now()
	prepared := make([]eventRequest, len(events))
	for i, ev := range events {
		p, err := ev.prepare(now)
		if err != nil {
			return BatchResult{}, err
		}
		prepared[i] = p
	}
	var out BatchResult
	r, err := c.sendJSON(ctx, http.MethodPost, auditEndpoint(c, nil, "events", "batch"), prepared, &out)
	if err != nil {
		return BatchResult{}, err
	}
	if r.status != http.StatusCreated {
		return BatchResult{}, errUnexpected(r)
	}
	return out, nil
}

// WriteNotification records a legacy notification audit. A repeated
// NotificationID is a *Problem matching [ErrConflict]. A zero SentAt is now.
func (c *Client) WriteNotification(ctx context.Context, n Notification) (NotificationResult, error) {
	if n.SentAt.IsZero() {
		n.SentAt = c.now()
	}
	var rec NotificationRecord
	r, err := c.sendJSON(ctx, http.MethodPost, auditEndpoint(c, nil, "notifications"), n, nil)
	if err != nil {
		return NotificationResult{}, err
	}
	switch r.status {
	case http.StatusCreated:
		if err := decode(r, &rec); err != nil {
			return NotificationResult{}, err
		}
		return NotificationResult{Record: &rec}, nil
	case http.StatusAccepted:
		return NotificationResult{Queued: true}, nil
	}
	return NotificationResult{}, errUnexpected(r)
}

// --- reads ---

func (q Query) values() url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	set("correlation_id", q.CorrelationID)
	set("event_type", q.Type)
	set("event_category", string(q.Category))
	set("event_outcome", string(q.Outcome))
	set("severity", q.Severity)
	set("namespace", q.Namespace)
	set("cluster_id", q.ClusterID)
	set("actor_id", q.ActorID)
	set("resource_type", q.ResourceType)
	set("resource_id", q.ResourceID)
	set("since", q.Since)
	set("until", q.Until)
	if q.DetailKey != "" || q.DetailValue != "" {
		v.Set("detail_key", q.DetailKey)
		v.Set("detail_value", q.DetailValue)
	}
	if q.Limit > 0 {
		v.Set("limit", fmt.Sprint(q.Limit))
	}
	if q.Offset > 0 {
		v.Set("offset", fmt.Sprint(q.Offset))
	}
	set("cursor", q.Cursor)
	set("order", string(q.Order))
	return v
}

// QueryEvents returns one page of the events matching q, newest first
// (oldest first with Order OrderAsc). Pass the page's
// Pagination.NextCursor as q.Cursor for the next one, or use [Client.Events].
func (c *Client) QueryEvents(ctx context.Context, q Query) (*EventPage, error) {
	r, err := c.do(ctx, http.MethodGet, auditEndpoint(c, q.values(), "events"), nil, "")
	if err != nil {
		return nil, err
	}
	var page EventPage
	if err := decode(r, &page); err != nil {
		return nil, err
	}
	page.Raw = r.body
	return &page, nil
}

// Events iterates over every event matching q, fetching page after page by
// cursor (q.Limit events per request). It stops at the first error, which
// it yields with a zero event:
//
//	for ev, err := range c.Events(ctx, q) {
//		if err != nil { return err }
//		...
//	}
func (c *Client) Events(ctx context.Context, q Query) func(yield func(Event, error) bool) {
	return func(yield func(Event, error) bool) {
		q := q
		q.Offset = 0
		for {
			page, err := c.QueryEvents(ctx, q)
			if err != nil {
				yield(Event{}, err)
				return
			}
			for _, ev := range page.Data {
				if !yield(ev, nil) {
					return
				}
			}
			if !page.Pagination.HasMore || page.Pagination.NextCursor == "" {
				return
			}
			q.Cursor = page.Pagination.NextCursor
		}
	}
}

// GetEvent returns one event; a *Problem matching [ErrNotFound] when there
// is none.
func (c *Client) GetEvent(ctx context.Context, id uuid.UUID) (*Event, error) {
	var ev Event
	if err := c.getJSON(ctx, auditEndpoint(c, nil, "events", id.String()), &ev); err != nil {
		return nil, err
	}
	return &ev, nil
}

// Timeline returns one remediation's events as a causal tree; [ErrNotFound]
// when the correlation has no events.
func (c *Client) Timeline(ctx context.Context, correlationID string) (*Timeline, error) {
	r, err := c.do(ctx, http.MethodGet, auditEndpoint(c, nil, "timeline", correlationID), nil, "")
	if err != nil {
		return nil, err
	}
	var tl Timeline
	if err := decode(r, &tl); err != nil {
		return nil, err
	}
	tl.Raw = r.body
	return &tl, nil
}

func (w Window) values() url.Values {
	v := url.Values{}
	if w.Since != "" {
		v.Set("since", w.Since)
	}
	if w.Until != "" {
		v.Set("until", w.Until)
	}
	return v
}

func (c *Client) aggregation(ctx context.Context, name string, v url.Values, out any) error {
	return c.getJSON(ctx, auditEndpoint(c, v, "aggregations", name), out)
}

// SuccessRate returns the share of successful events among those selected
// by exactly one of q.Type, q.Category, q.WorkflowID.
func (c *Client) SuccessRate(ctx context.Context, q SuccessRateQuery) (*SuccessRate, error) {
	v := q.Window.values()
	if q.Type != "" {
		v.Set("event_type", q.Type)
	}
	if q.Category != "" {
		v.Set("event_category", string(q.Category))
	}
	if q.WorkflowID != "" {
		v.Set("workflow_id", q.WorkflowID)
	}
	if q.MinSamples > 0 {
		v.Set("min_samples", fmt.Sprint(q.MinSamples))
	}
	var out SuccessRate
	if err := c.aggregation(ctx, "success-rate", v, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ByNamespace counts remediations and events per namespace, most
// remediations first.
func (c *Client) ByNamespace(ctx context.Context, w Window) ([]NamespaceCount, error) {
	var out struct {
		Aggregations []NamespaceCount `json:"aggregations"`
	}
	if err := c.aggregation(ctx, "by-namespace", w.values(), &out); err != nil {
		return nil, err
	}
	return out.Aggregations, nil
}

// BySeverity counts events per severity, most severe first.
func (c *Client) BySeverity(ctx context.Context, w Window) ([]SeverityCount, error) {
	var out struct {
		Aggregations []SeverityCount `json:"aggregations"`
	}
	if err := c.aggregation(ctx, "by-severity", w.values(), &out); err != nil {
		return nil, err
	}
	return out.Aggregations, nil
}

// Trend counts events and failures per hour or day over a period.
func (c *Client) Trend(ctx context.Context, q TrendQuery) (*Trend, error) {
	v := url.Values{}
	if q.Until != "" {
		v.Set("until", q.Until)
	}
	if q.Period != "" {
		v.Set("period", q.Period)
	}
	if q.Interval != "" {
		v.Set("interval", q.Interval)
	}
	var out Trend
	if err := c.aggregation(ctx, "trend", v, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Counts counts events grouped by the keys of q.GroupBy.
func (c *Client) Counts(ctx context.Context, q CountsQuery) ([]CountGroup, error) {
	if len(q.GroupBy) == 0 {
		return nil, errors.New("datastorage: Counts needs at least one GroupBy key")
	}
	v := q.Window.values()
	v.Set("group_by", strings.Join(q.GroupBy, ","))
	var out struct {
		Groups []CountGroup `json:"groups"`
	}
	if err := c.aggregation(ctx, "counts", v, &out); err != nil {
		return nil, err
	}
	return out.Groups, nil
}

// --- integrity ---

// VerifyChain recomputes a correlation's hash chain. Tampering is reported
// in the result (IsValid false), not as an error.
func (c *Client) VerifyChain(ctx context.Context, correlationID string) (*ChainVerification, error) {
	var out ChainVerification
	in := map[string]string{"correlation_id": correlationID}
	if _, err := c.sendJSON(ctx, http.MethodPost, auditEndpoint(c, nil, "verify-chain"), in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// PlaceLegalHold puts a correlation's events under legal hold: they are never
// deleted, not even by retention. Placing it again is not an error.
func (c *Client) PlaceLegalHold(ctx context.Context, correlationID, reason string) (*LegalHold, error) {
	var out LegalHold
	in := map[string]string{"correlation_id": correlationID, "reason": reason}
	if _, err := c.sendJSON(ctx, http.MethodPost, auditEndpoint(c, nil, "legal-hold"), in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// LegalHolds lists the active holds.
func (c *Client) LegalHolds(ctx context.Context) (*LegalHoldList, error) {
	var out LegalHoldList
	if err := c.getJSON(ctx, auditEndpoint(c, nil, "legal-hold"), &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ReleaseLegalHold releases a hold; [ErrNotFound] when the correlation is
// not held.
func (c *Client) ReleaseLegalHold(ctx context.Context, correlationID, reason string) (*LegalHoldRelease, error) {
	var out LegalHoldRelease
	in := map[string]string{"release_reason": reason}
	if _, err := c.sendJSON(ctx, http.MethodDelete, auditEndpoint(c, nil, "legal-hold", correlationID), in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func (q ExportQuery) values(format string) url.Values {
	v := url.Values{}
	if !q.StartTime.IsZero() {
		v.Set("start_time", q.StartTime.UTC().Format(time.RFC3339Nano))
	}
	if !q.EndTime.IsZero() {
		v.Set("end_time", q.EndTime.UTC().Format(time.RFC3339Nano))
	}
	if q.CorrelationID != "" {
		v.Set("correlation_id", q.CorrelationID)
	}
	if q.Category != "" {
		v.Set("event_category", string(q.Category))
	}
	if format != "" {
		v.Set("format", format)
	}
	if q.Limit > 0 {
		v.Set("limit", fmt.Sprint(q.Limit))
	}
	if q.Offset > 0 {
		v.Set("offset", fmt.Sprint(q.Offset))
	}
	return v
}

// Export fetches a signed export in JSON. Export.Raw keeps the body as
// received: save it to verify the signature offline with
// `datastorage verify-export FILE`.
func (c *Client) Export(ctx context.Context, q ExportQuery) (*Export, error) {
	r, err := c.do(ctx, http.MethodGet, auditEndpoint(c, q.values("json"), "export"), nil, "application/json")
	if err != nil {
		return nil, err
	}
	var out Export
	if err := decode(r, &out); err != nil {
		return nil, err
	}
	out.Raw = r.body
	return &out, nil
}

// ExportTo writes a signed export in q.Format ("json" or "ndjson") to w,
// byte for byte as the server sent it, and returns the bytes written.
func (c *Client) ExportTo(ctx context.Context, q ExportQuery, w io.Writer) (int64, error) {
	accept := "application/json"
	if q.Format == "ndjson" {
		accept = "application/x-ndjson"
	}
	u := auditEndpoint(c, q.values(q.Format), "export")
	resp, err := c.send(ctx, http.MethodGet, u, nil, accept)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return 0, newProblem(resp, b)
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("datastorage: export: %w", err)
	}
	return n, nil
}

// --- health ---

// Live checks the liveness probe (/healthz).
func (c *Client) Live(ctx context.Context) error {
	_, err := c.do(ctx, http.MethodGet, c.endpoint(nil, "healthz"), nil, "")
	return err
}

// Ready reads the readiness probe (/readyz). A server that is not ready
// (503) is a Readiness with Ready false and a Reason, not an error.
func (c *Client) Ready(ctx context.Context) (Readiness, error) {
	u := c.endpoint(nil, "readyz")
	resp, err := c.send(ctx, http.MethodGet, u, nil, "")
	if err != nil {
		return Readiness{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var out Readiness
	switch resp.StatusCode {
	case http.StatusOK, http.StatusServiceUnavailable:
		if err := json.Unmarshal(b, &out); err != nil {
			return Readiness{}, fmt.Errorf("datastorage: decoding readiness: %w", err)
		}
		out.Ready = resp.StatusCode == http.StatusOK
		return out, nil
	}
	return Readiness{}, newProblem(resp, b)
}
