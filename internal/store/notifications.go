package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"kubernaut.ai/datastorage/internal/audit"
)

// notificationIDKey is the unique constraint on notification_id; a unique
// violation of any other constraint is not "already recorded".
const notificationIDKey = "notification_audit_notification_id_key"

// InsertNotification stores a notification audit record and returns it with
// its id and timestamps. A repeated notification_id returns ErrConflict.
func (s *Store) InsertNotification(ctx context.Context, n audit.Notification) (_ audit.Notification, err error) {
	defer classifyErr(&err)
	var lvl pgtype.Int4
	if n.EscalationLevel != nil {
		lvl = pgtype.Int4{Int32: *n.EscalationLevel, Valid: true}
	}
	var created, updated time.Time
	err = s.pool.QueryRow(ctx, `
		INSERT INTO notification_audit (remediation_id, notification_id, recipient, channel,
			message_summary, status, sent_at, delivery_status, error_message, escalation_level)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		RETURNING id, created_at, updated_at`,
		n.RemediationID, n.NotificationID, n.Recipient, n.Channel, n.MessageSummary, n.Status,
		n.SentAt.Std(), optText(n.DeliveryStatus), optText(n.ErrorMessage), lvl,
	).Scan(&n.ID, &created, &updated)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == notificationIDKey {
			return n, ErrConflict
		}
		return n, fmt.Errorf("store: insert notification: %w", err)
	}
	n.CreatedAt, n.UpdatedAt = audit.NewTime(created), audit.NewTime(updated)
	return n, nil
}
