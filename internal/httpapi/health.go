package httpapi

import (
	"context"
	"net/http"
	"time"
)

// healthCheckTimeout bounds readiness checks: a probe that hangs is worse
// than one that says "down".
const healthCheckTimeout = 2 * time.Second

type readiness struct {
	Status   string `json:"status"`
	Reason   string `json:"reason,omitempty"`
	Database string `json:"database,omitempty"`
	Spool    string `json:"spool,omitempty"`
}

func (a *API) live(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "healthy"})
}

// ready follows CONTRACT §10: ready while writes can be accepted somewhere,
// that is while PostgreSQL or the spool is up.
func (a *API) ready(w http.ResponseWriter, r *http.Request) {
	if a.health.ShuttingDown() {
		writeJSON(w, http.StatusServiceUnavailable, readiness{Status: "not_ready", Reason: "shutting_down"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), healthCheckTimeout)
	defer cancel()
	dbUp, spoolUp := a.health.Check(ctx)
	res := readiness{Status: "ready", Database: upDown(dbUp), Spool: upDown(spoolUp)}
	if !dbUp && !spoolUp {
		res.Status, res.Reason = "not_ready", "database_unreachable"
		writeJSON(w, http.StatusServiceUnavailable, res)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func upDown(up bool) string {
	if up {
		return "up"
	}
	return "down"
}
