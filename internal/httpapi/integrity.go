package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/auth"
	"kubernaut.ai/datastorage/internal/integrity"
	"kubernaut.ai/datastorage/internal/query"
	"kubernaut.ai/datastorage/internal/store"
)

// Integrity serves chain verification, legal holds and signed exports
// (CONTRACT §8); *integrity.Service is the implementation.
type Integrity interface {
	VerifyChain(ctx context.Context, correlationID string, full bool) (integrity.ChainReport, error)
	PlaceHold(ctx context.Context, correlationID, reason, placedBy string) (store.Hold, error)
	ReleaseHold(ctx context.Context, correlationID, reason, releasedBy string) (store.HoldRelease, error)
	ListHolds(ctx context.Context) ([]store.Hold, error)
	OpenExport(ctx context.Context, req integrity.ExportRequest) (*integrity.Export, error)
}

var kindMissingCorrelationID = kind{"missing-correlation-id", http.StatusBadRequest, "Missing Correlation ID"}

// Export limits (api/openapi.yaml, ExportLimit): a JSON export is one
// document, so it is bounded; an NDJSON export streams, so it is not.
const (
	defaultJSONExportLimit = 1000
	maxJSONExportLimit     = 10000
	// exportWriteWindow is how long writing one batch of an export may
	// take; the deadline moves on after every batch, so a long export runs
	// as long as the client keeps reading.
	exportWriteWindow = 2 * time.Minute
	// verifyRetryAfter is the Retry-After of a verify-chain refused for
	// concurrency: about the time a verification of a long chain's links
	// since its checkpoint takes.
	verifyRetryAfter = 5 * time.Second
)

// registerIntegrity adds the integrity routes when svc is set.
func (a *API) registerIntegrity(mux *http.ServeMux, svc Integrity) {
	if svc == nil {
		return
	}
	h := integrityHandlers{a: a, svc: svc}
	mux.HandleFunc("POST /api/v1/audit/verify-chain", h.verifyChain)
	mux.HandleFunc("POST /api/v1/audit/legal-hold", h.placeHold)
	mux.HandleFunc("GET /api/v1/audit/legal-hold", h.listHolds)
	mux.HandleFunc("DELETE /api/v1/audit/legal-hold/{correlation_id}", h.releaseHold)
	mux.HandleFunc("GET /api/v1/audit/export", h.export)
}

type integrityHandlers struct {
	a   *API
	svc Integrity
}

// caller names the authenticated caller, "anonymous" without
// authentication (auth.mode none).
func caller(r *http.Request) string {
	if id, ok := auth.FromContext(r.Context()); ok && id.Name != "" {
		return id.Name
	}
	return "anonymous"
}

func (h integrityHandlers) verifyChain(w http.ResponseWriter, r *http.Request) {
	obj, ok := h.object(w, r)
	if !ok {
		return
	}
	corr, ok := h.correlationID(w, r, obj)
	if !ok {
		return
	}
	var full bool
	if raw, ok := obj["full"]; ok && string(raw) != "null" {
		if json.Unmarshal(raw, &full) != nil {
			h.invalid(w, r, map[string]string{"full": "must be a boolean"})
			return
		}
	}
	rep, err := h.svc.VerifyChain(r.Context(), corr, full)
	if errors.Is(err, store.ErrNotFound) {
		writeProblem(w, r, kindNotFound, "no audit events for correlation_id "+strconv.Quote(corr), nil)
		return
	}
	if errors.Is(err, integrity.ErrBusy) {
		writeUnavailable(w, r, verifyRetryAfter, fmt.Sprintf(
			"%d chain verifications are already running on this replica; retry later", integrity.MaxConcurrentVerifications))
		return
	}
	if err != nil {
		h.a.readFailed(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

type holdResponse struct {
	CorrelationID  string     `json:"correlation_id"`
	EventsAffected int64      `json:"events_affected"`
	PlacedBy       string     `json:"placed_by"`
	PlacedAt       audit.Time `json:"placed_at"`
	Reason         string     `json:"reason"`
}

func newHoldResponse(hold store.Hold) holdResponse {
	return holdResponse{CorrelationID: hold.CorrelationID, EventsAffected: hold.EventsAffected,
		PlacedBy: hold.PlacedBy, PlacedAt: audit.NewTime(hold.PlacedAt), Reason: hold.Reason}
}

func (h integrityHandlers) placeHold(w http.ResponseWriter, r *http.Request) {
	obj, ok := h.object(w, r)
	if !ok {
		return
	}
	fe := map[string]string{}
	corr, _ := h.stringField(obj, "correlation_id", 255, fe)
	reason, _ := h.stringField(obj, "reason", 1000, fe)
	if len(fe) > 0 {
		h.invalid(w, r, fe)
		return
	}
	hold, err := h.svc.PlaceHold(r.Context(), corr, reason, caller(r))
	if errors.Is(err, store.ErrNotFound) {
		writeProblem(w, r, kindNotFound, "no audit events for correlation_id "+strconv.Quote(corr), nil)
		return
	}
	if err != nil {
		h.a.readFailed(w, r, err)
		return
	}
	h.a.log.Info("legal hold placed", "request_id", RequestID(r.Context()), "correlation_id", corr,
		"placed_by", hold.PlacedBy, "events", hold.EventsAffected)
	writeJSON(w, http.StatusOK, newHoldResponse(hold))
}

func (h integrityHandlers) listHolds(w http.ResponseWriter, r *http.Request) {
	holds, err := h.svc.ListHolds(r.Context())
	if err != nil {
		h.a.readFailed(w, r, err)
		return
	}
	out := struct {
		Holds []holdResponse `json:"holds"`
		Total int            `json:"total"`
	}{Holds: make([]holdResponse, 0, len(holds)), Total: len(holds)}
	for _, hold := range holds {
		out.Holds = append(out.Holds, newHoldResponse(hold))
	}
	writeJSON(w, http.StatusOK, out)
}

func (h integrityHandlers) releaseHold(w http.ResponseWriter, r *http.Request) {
	corr := r.PathValue("correlation_id")
	obj, ok := h.object(w, r)
	if !ok {
		return
	}
	fe := map[string]string{}
	if corr == "" || len(corr) > 255 {
		fe["correlation_id"] = "must be 1 to 255 characters"
	}
	reason, _ := h.stringField(obj, "release_reason", 1000, fe)
	if len(fe) > 0 {
		h.invalid(w, r, fe)
		return
	}
	rel, err := h.svc.ReleaseHold(r.Context(), corr, reason, caller(r))
	if errors.Is(err, store.ErrNotFound) {
		writeProblem(w, r, kindNotFound, "correlation_id "+strconv.Quote(corr)+" is not under legal hold", nil)
		return
	}
	if err != nil {
		h.a.readFailed(w, r, err)
		return
	}
	h.a.log.Info("legal hold released", "request_id", RequestID(r.Context()), "correlation_id", corr,
		"released_by", rel.ReleasedBy, "events", rel.EventsReleased)
	writeJSON(w, http.StatusOK, struct {
		CorrelationID  string     `json:"correlation_id"`
		EventsReleased int64      `json:"events_released"`
		ReleasedBy     string     `json:"released_by"`
		ReleasedAt     audit.Time `json:"released_at"`
	}{rel.CorrelationID, rel.EventsReleased, rel.ReleasedBy, audit.NewTime(rel.ReleasedAt)})
}

func (h integrityHandlers) export(w http.ResponseWriter, r *http.Request) {
	req, fe := h.exportRequest(r)
	if len(fe) > 0 {
		h.invalid(w, r, fe)
		return
	}
	// The request deadline is for ordinary requests; an export lasts as
	// long as it takes to stream, and stops when the client goes away (a
	// failed write) or the server shuts down (Shutdown closes idle
	// connections only, so a long export may outlive the grace period).
	ctx := context.WithoutCancel(r.Context())
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(r.Context(), func() {
		if !errors.Is(r.Context().Err(), context.DeadlineExceeded) {
			cancel() // the client is gone
		}
	})
	defer stop()

	x, err := h.svc.OpenExport(ctx, req)
	if err != nil {
		h.a.readFailed(w, r, err)
		return
	}
	defer x.Close(ctx)
	w.Header().Set("Content-Type", x.ContentType())
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="audit-export-%s.%s"`,
		time.Now().UTC().Format("20060102T150405Z"), req.Format))
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Now().Add(exportWriteWindow))
	w.WriteHeader(http.StatusOK)
	err = x.Stream(ctx, w, func() error {
		_ = rc.SetWriteDeadline(time.Now().Add(exportWriteWindow))
		if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
		return nil
	})
	if err != nil {
		// Too late for a problem: the body ends without its signature,
		// which any verification reports.
		h.a.log.Warn("export ended early", "request_id", RequestID(r.Context()), "error", err)
		panic(http.ErrAbortHandler)
	}
}

// exportRequest reads the export's query parameters.
func (h integrityHandlers) exportRequest(r *http.Request) (integrity.ExportRequest, map[string]string) {
	q := r.URL.Query()
	fe := map[string]string{}
	req := integrity.ExportRequest{Format: integrity.FormatJSON, ExportedBy: caller(r), QueryFilters: map[string]any{}}
	if v := q.Get("format"); v != "" {
		if v != integrity.FormatJSON && v != integrity.FormatNDJSON {
			fe["format"] = "must be json or ndjson"
		}
		req.Format = v
	}
	req.QueryFilters["format"] = req.Format
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"start_time", &req.Filter.Since}, {"end_time", &req.Filter.Until}} {
		v := q.Get(p.name)
		if v == "" {
			continue
		}
		t, err := query.ParseTime(v, h.a.now())
		if err != nil {
			fe[p.name] = "must be an RFC 3339 timestamp, YYYY-MM-DD, or a relative time such as 24h or 7d"
			continue
		}
		*p.dst = t
		req.QueryFilters[p.name] = v
	}
	if !req.Filter.Since.IsZero() && !req.Filter.Until.IsZero() && req.Filter.Until.Before(req.Filter.Since) {
		fe["end_time"] = "must not be before start_time"
	}
	if v := q.Get("correlation_id"); v != "" {
		if len(v) > 255 {
			fe["correlation_id"] = "must be at most 255 characters"
		}
		req.Filter.CorrelationID = v
		req.QueryFilters["correlation_id"] = v
	}
	if v := q.Get("event_category"); v != "" {
		valid := false
		for _, c := range audit.Categories {
			valid = valid || c == v
		}
		if !valid {
			fe["event_category"] = "must be one of the event categories"
		}
		req.Filter.EventCategory = v
		req.QueryFilters["event_category"] = v
	}
	if req.Format == integrity.FormatJSON {
		req.Filter.Limit = defaultJSONExportLimit
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		switch {
		case err != nil || n < 1:
			fe["limit"] = "must be a positive integer"
		case req.Format == integrity.FormatJSON && n > maxJSONExportLimit:
			fe["limit"] = fmt.Sprintf("must be at most %d for format json (use format=ndjson for more)", maxJSONExportLimit)
		default:
			req.Filter.Limit = n
		}
	}
	if req.Filter.Limit > 0 {
		req.QueryFilters["limit"] = req.Filter.Limit
	}
	if v := q.Get("offset"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			fe["offset"] = "must be a non-negative integer"
		}
		req.Filter.Offset = n
	}
	req.QueryFilters["offset"] = req.Filter.Offset
	return req, fe
}

// object reads the body as a JSON object (audit.DecodeObject): member
// names are exact, unknown ones ignored, repeated ones refused.
func (h integrityHandlers) object(w http.ResponseWriter, r *http.Request) (map[string]json.RawMessage, bool) {
	body, ok := h.a.readBody(w, r)
	if !ok {
		return nil, false
	}
	obj, fe, err := audit.DecodeObject(body)
	if err != nil {
		msg := "the body must be a JSON object"
		if !errors.Is(err, audit.ErrNotObject) {
			msg += ": " + err.Error()
		}
		h.a.metrics.validationFailure("body")
		writeProblem(w, r, kindValidation, msg, map[string]string{"body": msg})
		return nil, false
	}
	if fe != nil {
		h.invalid(w, r, fe)
		return nil, false
	}
	return obj, true
}

// correlationID reads verify-chain's correlation_id: absent or empty is
// the contract's own problem, missing-correlation-id.
func (h integrityHandlers) correlationID(w http.ResponseWriter, r *http.Request, obj map[string]json.RawMessage) (string, bool) {
	raw, present := obj["correlation_id"]
	var s string
	if !present || string(raw) == "null" || json.Unmarshal(raw, &s) == nil && s == "" {
		h.a.metrics.validationFailure("correlation_id")
		writeProblem(w, r, kindMissingCorrelationID, "correlation_id is required", nil)
		return "", false
	}
	fe := map[string]string{}
	s, _ = h.stringField(obj, "correlation_id", 255, fe)
	if len(fe) > 0 {
		h.invalid(w, r, fe)
		return "", false
	}
	return s, true
}

// stringField reads a required string member of 1 to max characters,
// recording a failure in fe. Its value is held to the rules of every
// stored string (audit.DecodeString): UTF-8, no lone surrogate, no NUL.
func (h integrityHandlers) stringField(obj map[string]json.RawMessage, key string, max int, fe map[string]string) (string, bool) {
	s, msg := audit.DecodeString(obj[key], 1, max)
	if msg != "" {
		if msg == "must not be empty" || strings.HasPrefix(msg, "must be at most") {
			msg = fmt.Sprintf("must be 1 to %d characters", max)
		}
		fe[key] = msg
		return "", false
	}
	return s, true
}

func (h integrityHandlers) invalid(w http.ResponseWriter, r *http.Request, fe map[string]string) {
	for k := range fe {
		h.a.metrics.validationFailure(k)
	}
	writeProblem(w, r, kindValidation, fmt.Sprintf("the request failed validation in %d field(s)", len(fe)), fe)
}
