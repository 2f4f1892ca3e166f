package httpapi

import (
	"context"
	"errors"
	"net/http"
	"time"

	"kubernaut.ai/datastorage/internal/remediation"
)

// Remediations answers the remediation read models (CONTRACT §16);
// *remediation.Service is the one.
type Remediations interface {
	HistoryContext(ctx context.Context, p remediation.ContextParams, now time.Time) (*remediation.HistoryContext, error)
	// Effectiveness returns an error wrapping remediation.ErrNoAssessment
	// when the correlation has no effectiveness event.
	Effectiveness(ctx context.Context, correlationID string, now time.Time) (*remediation.Effectiveness, error)
}

// registerRemediation adds the routes of §16; a nil rm leaves them out.
func (a *API) registerRemediation(mux *http.ServeMux, rm Remediations) {
	if rm == nil {
		return
	}
	mux.HandleFunc("GET /api/v1/remediation-history/context", func(w http.ResponseWriter, r *http.Request) {
		p, fe := remediation.ParseContext(r.URL.Query())
		if fe != nil {
			for k := range fe {
				a.metrics.validationFailure(k)
			}
			writeProblem(w, r, kindValidation, "invalid query parameters", fe)
			return
		}
		hc, err := rm.HistoryContext(r.Context(), p, a.now())
		if err != nil {
			a.readFailed(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, hc)
	})
	mux.HandleFunc("GET /api/v1/effectiveness/{correlation_id}", func(w http.ResponseWriter, r *http.Request) {
		corr := r.PathValue("correlation_id")
		eff, err := rm.Effectiveness(r.Context(), corr, a.now())
		if errors.Is(err, remediation.ErrNoAssessment) {
			writeProblem(w, r, kindNotFound, "correlation "+corr+" has no effectiveness events", nil)
			return
		}
		if err != nil {
			a.readFailed(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, eff)
	})
}
