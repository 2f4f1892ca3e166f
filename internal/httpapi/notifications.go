package httpapi

import (
	"errors"
	"net/http"

	"kubernaut.ai/datastorage/internal/store"
)

func (a *API) writeNotification(w http.ResponseWriter, r *http.Request) {
	body, ok := a.readBody(w, r)
	if !ok {
		return
	}
	n, fe, err := a.validator.DecodeNotification(body)
	if err != nil || fe != nil {
		a.invalidBody(w, r, err, fe, "notification")
		return
	}
	stored, err := a.notifications.InsertNotification(r.Context(), *n)
	switch {
	case err == nil:
		writeJSON(w, http.StatusCreated, stored)
	case errors.Is(err, store.ErrConflict):
		writeProblem(w, r, kindConflict, "a notification with notification_id "+n.NotificationID+" is already recorded", nil)
	case store.IsUnavailable(err):
		writeUnavailable(w, r, retryAfter, "the database is unavailable; nothing was accepted, retry later")
	default:
		a.internalError(w, r, err)
	}
}
