package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/failure"
	"kubernaut.ai/datastorage/internal/spool"
)

// NotificationSpool durably queues notification audit records that
// PostgreSQL cannot take; the replay worker stores them later.
type NotificationSpool interface {
	// AppendNotification returns only once n is durable, or an error when it
	// could not be queued (then nothing was).
	AppendNotification(ctx context.Context, n audit.Notification) error
}

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
	case errors.Is(err, audit.ErrNotificationExists):
		writeProblem(w, r, kindConflict, "a notification with notification_id "+n.NotificationID+" is already recorded", nil)
	case failure.ClassOf(err) == failure.Unavailable:
		a.spoolNotification(w, r, *n, err)
	case failure.ClassOf(err) == failure.Data:
		a.metrics.validationFailure("body")
		a.log.Warn("the database refused a validated notification", "request_id", RequestID(r.Context()), "error", err)
		writeProblem(w, r, kindValidation, "the database refused the notification; nothing was written",
			map[string]string{"body": "refused by the database: " + refusal(err)})
	default:
		a.internalError(w, r, err)
	}
}

// spoolNotification answers a notification PostgreSQL could not take: 202
// once the spool holds it, 503 when the spool cannot take it either.
// A repeated notification_id is not detected while queued: the replay finds
// it taken and keeps the first record, as a 409 would have.
func (a *API) spoolNotification(w http.ResponseWriter, r *http.Request, n audit.Notification, dbErr error) {
	if a.notifSpool == nil {
		writeUnavailable(w, r, retryAfter, "the database is unavailable; nothing was accepted, retry later")
		return
	}
	if err := a.notifSpool.AppendNotification(r.Context(), n); err != nil {
		a.log.Error("database and spool both unavailable for a notification", "request_id", RequestID(r.Context()),
			"db_error", dbErr, "spool_error", err)
		writeUnavailable(w, r, 5*time.Second, spoolRefusal(err))
		return
	}
	writeJSON(w, http.StatusAccepted, accepted{Status: "accepted", Message: "notification audit queued for async processing"})
}

// spoolRefusal is the detail of a 503 for a write that PostgreSQL could not
// take and the spool refused too, naming the spool's reason when it is one a
// client or an operator can act on.
func spoolRefusal(err error) string {
	var nre *spool.NotReplicatedError
	switch {
	case errors.As(err, &nre):
		return fmt.Sprintf("the database is unavailable and the spool's Redis replicas did not confirm the write in time "+
			"(redis.minReplicas %d, %d confirmed within %s); nothing was accepted, retry later (a retry under the same id is stored once)",
			nre.Want, nre.Got, nre.Timeout)
	case errors.Is(err, spool.ErrFull):
		return "the database is unavailable and the spool is full (redis.dlqMaxLen); nothing was accepted, retry later"
	default:
		return "the database and the spool are both unavailable; nothing was accepted, retry later"
	}
}
