package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Sentinel errors that a *[Problem] matches with errors.Is, by status code:
//
//	errors.Is(err, client.ErrNotFound)
var (
	// ErrBadRequest matches every 400 (validation-error, batch-size-exceeded,
	// missing-correlation-id).
	ErrBadRequest = errors.New("datastorage: bad request")
	// ErrValidation matches a 400 validation-error; its FieldErrors say what
	// is wrong.
	ErrValidation = errors.New("datastorage: validation error")
	// ErrBatchTooLarge matches a 400 batch-size-exceeded.
	ErrBatchTooLarge = errors.New("datastorage: batch size exceeded")
	// ErrUnauthorized matches 401: a missing or invalid token.
	ErrUnauthorized = errors.New("datastorage: unauthorized")
	// ErrForbidden matches 403: the token may not use this verb.
	ErrForbidden = errors.New("datastorage: forbidden")
	// ErrNotFound matches 404.
	ErrNotFound = errors.New("datastorage: not found")
	// ErrConflict matches every 409 (a repeated notification_id, a workflow
	// version registered again with a different spec, an
	// invalid-transition).
	ErrConflict = errors.New("datastorage: conflict")
	// ErrInvalidTransition matches a 409 invalid-transition: a workflow
	// status change the lifecycle does not allow.
	ErrInvalidTransition = errors.New("datastorage: invalid status transition")
	// ErrTooLarge matches 413: the body is over the server's limit.
	ErrTooLarge = errors.New("datastorage: request too large")
	// ErrRateLimited matches 429; Problem.RetryAfter says when to retry.
	ErrRateLimited = errors.New("datastorage: rate limited")
	// ErrUnavailable matches 503; nothing was accepted, retry after
	// Problem.RetryAfter.
	ErrUnavailable = errors.New("datastorage: service unavailable")
	// ErrServer matches every 5xx.
	ErrServer = errors.New("datastorage: server error")
)

const problemBase = "https://kubernaut.ai/problems/"

// Problem is an error answer of the server: its RFC 7807 problem document
// (CONTRACT §0), with the HTTP details that matter to a caller. When a
// proxy in between answered with something that is not a problem document,
// Type is "about:blank", Title the status text and Detail the start of the
// body.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
	// FieldErrors maps each failing field (or query parameter; "[i].field"
	// for batch elements) to what is wrong with it.
	FieldErrors map[string]string `json:"field_errors,omitempty"`

	// RequestID is the X-Request-ID of the exchange, for the server's logs.
	RequestID string `json:"-"`
	// RetryAfter is the server's Retry-After (429, 503); 0 when absent.
	RetryAfter time.Duration `json:"-"`
}

// Slug is the last part of Type ("validation-error"), or "" for about:blank.
func (p *Problem) Slug() string {
	s, ok := strings.CutPrefix(p.Type, problemBase)
	if !ok {
		return ""
	}
	return s
}

// Error describes the problem in one line, field errors included.
func (p *Problem) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "datastorage: %d %s", p.Status, p.Title)
	if p.Detail != "" {
		b.WriteString(": ")
		b.WriteString(p.Detail)
	}
	if len(p.FieldErrors) > 0 {
		keys := make([]string, 0, len(p.FieldErrors))
		for k := range p.FieldErrors {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteString(" (")
		for i, k := range keys {
			if i > 0 {
				b.WriteString("; ")
			}
			fmt.Fprintf(&b, "%s: %s", k, p.FieldErrors[k])
		}
		b.WriteString(")")
	}
	if p.RequestID != "" {
		fmt.Fprintf(&b, " [request %s]", p.RequestID)
	}
	return b.String()
}

// Is matches the sentinel errors of this package.
func (p *Problem) Is(target error) bool {
	switch target {
	case ErrBadRequest:
		return p.Status == http.StatusBadRequest
	case ErrValidation:
		return p.Status == http.StatusBadRequest && p.Slug() == "validation-error"
	case ErrBatchTooLarge:
		return p.Status == http.StatusBadRequest && p.Slug() == "batch-size-exceeded"
	case ErrUnauthorized:
		return p.Status == http.StatusUnauthorized
	case ErrForbidden:
		return p.Status == http.StatusForbidden
	case ErrNotFound:
		return p.Status == http.StatusNotFound
	case ErrConflict:
		return p.Status == http.StatusConflict
	case ErrInvalidTransition:
		return p.Status == http.StatusConflict && p.Slug() == "invalid-transition"
	case ErrTooLarge:
		return p.Status == http.StatusRequestEntityTooLarge
	case ErrRateLimited:
		return p.Status == http.StatusTooManyRequests
	case ErrUnavailable:
		return p.Status == http.StatusServiceUnavailable
	case ErrServer:
		return p.Status >= 500
	}
	return false
}

// Retryable reports whether sending the same request again later may
// succeed: 408 (the body did not reach the server in time; nothing was
// written), 429 and every 5xx. (The emitter also retries transport errors.)
func (p *Problem) Retryable() bool {
	return p.Status == http.StatusRequestTimeout || p.Status == http.StatusTooManyRequests || p.Status >= 500
}

// maxErrorBody bounds how much of an error body is read.
const maxErrorBody = 1 << 20

// newProblem builds the Problem of a 4xx/5xx response from its body.
func newProblem(resp *http.Response, body []byte) *Problem {
	p := &Problem{}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	decoded := false
	if mt == "application/problem+json" || mt == "application/json" {
		decoded = json.Unmarshal(body, p) == nil && p.Status != 0 && p.Title != ""
	}
	if !decoded {
		excerpt := strings.TrimSpace(string(body))
		if len(excerpt) > 512 {
			excerpt = excerpt[:512] + "…"
		}
		*p = Problem{Type: "about:blank", Title: http.StatusText(resp.StatusCode), Detail: excerpt}
		if p.Title == "" {
			p.Title = "HTTP " + strconv.Itoa(resp.StatusCode)
		}
	}
	// The HTTP status is the truth; a problem body cannot overrule it.
	p.Status = resp.StatusCode
	p.RequestID = resp.Header.Get("X-Request-ID")
	p.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	return p
}

// parseRetryAfter reads delay-seconds or an HTTP date; 0 when absent or bad.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil {
		if n < 0 {
			return 0
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}
