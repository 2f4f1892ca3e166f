package httpapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// problemBase is the prefix of every problem type URI (CONTRACT §12).
const problemBase = "https://kubernaut.ai/problems/"

// Problem is an RFC 7807 problem document, the only error body this service
// writes.
type Problem struct {
	Type        string            `json:"type"`
	Title       string            `json:"title"`
	Status      int               `json:"status"`
	Detail      string            `json:"detail,omitempty"`
	Instance    string            `json:"instance,omitempty"`
	FieldErrors map[string]string `json:"field_errors,omitempty"`
}

// kind is one row of CONTRACT §12.
type kind struct {
	slug   string
	status int
	title  string
}

var (
	kindValidation       = kind{"validation-error", http.StatusBadRequest, "Validation Error"}
	kindBatchSize        = kind{"batch-size-exceeded", http.StatusBadRequest, "Batch Size Exceeded"}
	kindNotFound         = kind{"not-found", http.StatusNotFound, "Not Found"}
	kindMethodNotAllowed = kind{"method-not-allowed", http.StatusMethodNotAllowed, "Method Not Allowed"}
	kindConflict         = kind{"conflict", http.StatusConflict, "Resource Conflict"}
	kindTooLarge         = kind{"request-too-large", http.StatusRequestEntityTooLarge, "Request Entity Too Large"}
	kindInternal         = kind{"internal-error", http.StatusInternalServerError, "Internal Server Error"}
	kindUnavailable      = kind{"service-unavailable", http.StatusServiceUnavailable, "Service Unavailable"}
)

// Ours (issue 18), beyond CONTRACT §12's list: a body that did not arrive in
// time (nothing was written; send it again), and a body that is not plain
// JSON.
var (
	kindRequestTimeout       = kind{"request-timeout", http.StatusRequestTimeout, "Request Timeout"}
	kindUnsupportedMediaType = kind{"unsupported-media-type", http.StatusUnsupportedMediaType, "Unsupported Media Type"}
)

// writeProblem sends a problem of kind k. fields may be nil.
func writeProblem(w http.ResponseWriter, r *http.Request, k kind, detail string, fields map[string]string) {
	p := Problem{
		Type:        problemBase + k.slug,
		Title:       k.title,
		Status:      k.status,
		Detail:      detail,
		Instance:    instance(r),
		FieldErrors: fields,
	}
	h := w.Header()
	h.Del("Content-Length")
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(k.status)
	_ = json.NewEncoder(w).Encode(p)
}

// maxEcho bounds what a problem echoes of the request path, in bytes.
const maxEcho = 256

// instance is a problem's instance: the request path, cut to maxEcho
// bytes (at a character boundary) so that a 100 KB path is not echoed.
func instance(r *http.Request) string {
	p := r.URL.Path
	if len(p) > maxEcho {
		p = strings.ToValidUTF8(p[:maxEcho], "")
	}
	return p
}

// writeUnavailable sends a 503 that tells the client when to come back.
func writeUnavailable(w http.ResponseWriter, r *http.Request, retryAfter time.Duration, detail string) {
	secs := max(1, int(retryAfter.Round(time.Second)/time.Second))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeProblem(w, r, kindUnavailable, detail, nil)
}

// writeJSON sends a success body.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Our own response types always marshal; reaching this is a bug.
		http.Error(w, `{"error":"response encoding failed"}`, http.StatusInternalServerError)
		return
	}
	writeBody(w, status, append(b, '\n'))
}

// writeBody sends a success body already encoded as JSON (newline included).
func writeBody(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
