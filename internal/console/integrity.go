package console

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// integrityPage is chain verification, the legal holds and the export form.
type integrityPage struct {
	CorrelationID string
	Report        *chainReport
	Holds         []hold
	Message       string
	Error         string
}

type chainReport struct {
	CorrelationID  string `json:"correlation_id"`
	IsValid        bool   `json:"is_valid"`
	TotalEvents    int64  `json:"total_events"`
	VerifiedEvents int64  `json:"verified_events"`
	Message        string `json:"message"`
	Tampered       []struct {
		EventID      string `json:"event_id"`
		Timestamp    string `json:"event_timestamp"`
		ExpectedHash string `json:"expected_hash"`
		ActualHash   string `json:"actual_hash"`
		PreviousHash string `json:"previous_hash"`
		Message      string `json:"message"`
	} `json:"tampered_events"`
}

type hold struct {
	CorrelationID  string `json:"correlation_id"`
	EventsAffected int64  `json:"events_affected"`
	PlacedBy       string `json:"placed_by"`
	PlacedAt       string `json:"placed_at"`
	Reason         string `json:"reason"`
}

// integrity shows the holds, the verify form, and a report when one was
// asked for.
func (c *Console) integrity(w http.ResponseWriter, r *http.Request) {
	s, ok := c.signedIn(w, r)
	if !ok {
		return
	}
	page := integrityPage{CorrelationID: r.URL.Query().Get("correlation_id"), Message: r.URL.Query().Get("done")}
	c.integrityPage(w, r, s, http.StatusOK, page)
}

func (c *Console) integrityPage(w http.ResponseWriter, r *http.Request, s *session, status int, page integrityPage) {
	var holds struct {
		Holds []hold `json:"holds"`
	}
	if st, err := c.get(r.Context(), s, "/api/v1/audit/legal-hold", &holds); err != nil {
		c.failAPI(w, r, s, st, err)
		return
	}
	page.Holds = holds.Holds
	c.render(w, r, status, "integrity", s, page)
}

// verify recomputes a correlation's chain (verb create, as the API's POST
// verify-chain).
func (c *Console) verify(w http.ResponseWriter, r *http.Request) {
	s, ok := c.signedIn(w, r)
	if !ok || !c.checkPost(w, r, s) {
		return
	}
	corr := strings.TrimSpace(r.PostForm.Get("correlation_id"))
	page := integrityPage{CorrelationID: corr}
	// Full: a person who asks gets every link re-checked, not only those
	// after the last sealed checkpoint (docs/integrity.md); the API's
	// concurrency bound still applies.
	res := c.call(r.Context(), s, http.MethodPost, "/api/v1/audit/verify-chain", map[string]any{"correlation_id": corr, "full": true})
	switch {
	case res.Status == http.StatusOK:
		var rep chainReport
		if err := decodeInto(res.Body, &rep); err != nil {
			c.failAPI(w, r, s, http.StatusInternalServerError, err)
			return
		}
		page.Report = &rep
	case res.Status < 500:
		page.Error = res.problem()
	default:
		c.fail(w, r, s, res.Status, res.problem())
		return
	}
	c.integrityPage(w, r, s, okOr(res.Status), page)
}

// placeHold places a legal hold (verb update).
func (c *Console) placeHold(w http.ResponseWriter, r *http.Request) {
	s, ok := c.signedIn(w, r)
	if !ok || !c.checkPost(w, r, s) {
		return
	}
	corr := strings.TrimSpace(r.PostForm.Get("correlation_id"))
	res := c.call(r.Context(), s, http.MethodPost, "/api/v1/audit/legal-hold",
		map[string]string{"correlation_id": corr, "reason": r.PostForm.Get("reason")})
	c.afterHoldChange(w, r, s, corr, res, "Hold placed on "+corr+".")
}

// releaseHold releases one (verb update); the API records the reason.
func (c *Console) releaseHold(w http.ResponseWriter, r *http.Request) {
	s, ok := c.signedIn(w, r)
	if !ok || !c.checkPost(w, r, s) {
		return
	}
	corr := strings.TrimSpace(r.PostForm.Get("correlation_id"))
	res := c.call(r.Context(), s, http.MethodDelete, "/api/v1/audit/legal-hold/"+url.PathEscape(corr),
		map[string]string{"release_reason": r.PostForm.Get("reason")})
	c.afterHoldChange(w, r, s, corr, res, "Hold on "+corr+" released.")
}

// afterHoldChange redirects after a change (so a reload does not repeat
// it), or shows why the API refused it with the API's own status.
func (c *Console) afterHoldChange(w http.ResponseWriter, r *http.Request, s *session, corr string, res apiResult, done string) {
	if res.Status == http.StatusOK {
		http.Redirect(w, r, Prefix+"integrity?"+url.Values{"done": {done}}.Encode(), http.StatusSeeOther)
		return
	}
	if res.Status >= 500 {
		c.fail(w, r, s, res.Status, res.problem())
		return
	}
	c.integrityPage(w, r, s, res.Status, integrityPage{CorrelationID: corr, Error: res.problem()})
}

// export downloads a signed export for a filter, streamed from the API.
func (c *Console) export(w http.ResponseWriter, r *http.Request) {
	s, ok := c.signedIn(w, r)
	if !ok {
		return
	}
	q := url.Values{}
	for _, k := range []string{"correlation_id", "event_category", "start_time", "end_time", "format", "limit"} {
		if v := r.URL.Query().Get(k); v != "" {
			q.Set(k, v)
		}
	}
	format := q.Get("format")
	if format == "" {
		format = "json"
		q.Set("format", format)
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, "/api/v1/audit/export?"+q.Encode(), nil)
	if err != nil {
		c.fail(w, r, s, http.StatusBadRequest, "The export filter could not be read.")
		return
	}
	req.RemoteAddr = r.RemoteAddr
	req.Header.Set("Accept", "application/json")
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	// The export streams straight through; the console only names the file.
	name := fmt.Sprintf("audit-export-%s.%s", c.cfg.Now().UTC().Format("20060102T150405Z"), format)
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	c.api.ServeHTTP(w, req)
}

func okOr(status int) int {
	if status >= 400 {
		return status
	}
	return http.StatusOK
}

func decodeInto(b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("console: decode the API's answer: %w", err)
	}
	return nil
}
