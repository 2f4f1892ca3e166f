package audit_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
)

func notificationBody(t *testing.T, overrides map[string]any) string {
	t.Helper()
	r := map[string]any{
		"remediation_id":  "rr-1",
		"notification_id": "n-1",
		"recipient":       "ops@example.com",
		"channel":         "slack",
		"message_summary": "pod restarted",
		"status":          "sent",
		"sent_at":         "2026-11-22T09:59:00Z",
	}
	for k, v := range overrides {
		if v == absent {
			delete(r, k)
			continue
		}
		r[k] = v
	}
	b, err := json.Marshal(r)
	require.NoError(t, err)
	return string(b)
}

func TestDecodeNotificationKeepsTheRecord(t *testing.T) {
	t.Parallel()
	n, fe, err := validator().DecodeNotification([]byte(notificationBody(t, map[string]any{
		"sent_at":          "2026-11-22T11:00:00.1234567+02:00",
		"delivery_status":  "delivered",
		"error_message":    "none",
		"escalation_level": 3,
	})))
	require.NoError(t, err)
	require.Empty(t, fe)
	assert.Equal(t, "rr-1", n.RemediationID)
	assert.Equal(t, "n-1", n.NotificationID)
	assert.Equal(t, "ops@example.com", n.Recipient)
	assert.Equal(t, "slack", n.Channel)
	assert.Equal(t, "pod restarted", n.MessageSummary)
	assert.Equal(t, "sent", n.Status)
	assert.Equal(t, time.Date(2026, 11, 22, 9, 0, 0, 123456000, time.UTC), n.SentAt.Std())
	assert.Equal(t, "delivered", n.DeliveryStatus)
	assert.Equal(t, "none", n.ErrorMessage)
	require.NotNil(t, n.EscalationLevel)
	assert.Equal(t, int32(3), *n.EscalationLevel)

	n, fe, err = validator().DecodeNotification([]byte(notificationBody(t, nil)))
	require.NoError(t, err)
	require.Empty(t, fe)
	assert.Nil(t, n.EscalationLevel, "absent stays absent")
	assert.Empty(t, n.DeliveryStatus)
}

func TestDecodeNotificationNamesEveryFaultyField(t *testing.T) {
	t.Parallel()
	type fe = audit.FieldErrors
	tests := []struct {
		name      string
		overrides map[string]any
		want      fe
	}{
		{"remediation_id absent", map[string]any{"remediation_id": absent}, fe{"remediation_id": "is required"}},
		{"remediation_id 256 characters", map[string]any{"remediation_id": strings.Repeat("r", 256)}, fe{"remediation_id": "must be at most 255 characters, got 256"}},
		{"notification_id empty", map[string]any{"notification_id": ""}, fe{"notification_id": "must not be empty"}},
		{"notification_id a number", map[string]any{"notification_id": 1}, fe{"notification_id": "must be a string"}},
		{"recipient null", map[string]any{"recipient": nil}, fe{"recipient": "is required"}},
		{"channel unknown", map[string]any{"channel": "pigeon"}, fe{"channel": "must be one of email, slack, pagerduty, teams, webhook, sms, console, file, log"}},
		{"status unknown", map[string]any{"status": "lost"}, fe{"status": "must be one of sent, failed, pending, acknowledged, escalated"}},
		{"message_summary 1000 characters", map[string]any{"message_summary": strings.Repeat("m", 1000)}, nil},
		{"message_summary 1001 characters", map[string]any{"message_summary": strings.Repeat("m", 1001)}, fe{"message_summary": "must be at most 1000 characters, got 1001"}},
		{"sent_at absent", map[string]any{"sent_at": absent}, fe{"sent_at": "is required"}},
		{"sent_at without zone", map[string]any{"sent_at": "2026-11-22T09:59:00"}, fe{"sent_at": "must be an RFC 3339 timestamp with a time zone, e.g. 2026-11-22T10:00:00Z"}},
		{"sent_at exactly five minutes ahead", map[string]any{"sent_at": "2026-11-22T10:05:00Z"}, nil},
		{"sent_at more than five minutes ahead", map[string]any{"sent_at": "2026-11-22T10:05:00.000001Z"}, fe{"sent_at": "must not be more than 5m0s in the future"}},
		{"sent_at long ago", map[string]any{"sent_at": "2000-01-01T00:00:00Z"}, nil},
		{"delivery_status 256 characters", map[string]any{"delivery_status": strings.Repeat("d", 256)}, fe{"delivery_status": "must be at most 255 characters, got 256"}},
		{"error_message a boolean", map[string]any{"error_message": false}, fe{"error_message": "must be a string"}},
		{"escalation_level 0", map[string]any{"escalation_level": 0}, nil},
		{"escalation_level 100", map[string]any{"escalation_level": 100}, nil},
		{"escalation_level 101", map[string]any{"escalation_level": 101}, fe{"escalation_level": "must be between 0 and 100"}},
		{"escalation_level negative", map[string]any{"escalation_level": -1}, fe{"escalation_level": "must be between 0 and 100"}},
		{"escalation_level a string", map[string]any{"escalation_level": "1"}, fe{"escalation_level": "must be an integer"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			n, got, err := validator().DecodeNotification([]byte(notificationBody(t, tt.overrides)))
			require.NoError(t, err)
			if tt.want == nil {
				assert.Empty(t, got)
				assert.NotNil(t, n)
				return
			}
			assert.Equal(t, tt.want, got)
			assert.Nil(t, n)
		})
	}
	for _, c := range audit.NotificationChannels {
		_, got, err := validator().DecodeNotification([]byte(notificationBody(t, map[string]any{"channel": c})))
		require.NoError(t, err)
		assert.Empty(t, got, c)
	}
	for _, s := range audit.NotificationStatuses {
		_, got, err := validator().DecodeNotification([]byte(notificationBody(t, map[string]any{"status": s})))
		require.NoError(t, err)
		assert.Empty(t, got, s)
	}
}

func TestDecodeNotificationReportsAllFieldErrorsAtOnce(t *testing.T) {
	t.Parallel()
	n, fe, err := validator().DecodeNotification([]byte(`{"channel":"fax","escalation_level":500}`))
	require.NoError(t, err)
	assert.Nil(t, n)
	assert.Equal(t, audit.FieldErrors{
		"remediation_id":   "is required",
		"notification_id":  "is required",
		"recipient":        "is required",
		"channel":          "must be one of " + strings.Join(audit.NotificationChannels, ", "),
		"message_summary":  "is required",
		"status":           "is required",
		"sent_at":          "is required",
		"escalation_level": "must be between 0 and 100",
	}, fe)
}

func TestDecodeNotificationRefusesBodiesThatAreNotOneJSONObject(t *testing.T) {
	t.Parallel()
	_, _, err := validator().DecodeNotification([]byte(`[]`))
	assert.ErrorIs(t, err, audit.ErrNotObject)
	_, _, err = validator().DecodeNotification([]byte(`null`))
	assert.ErrorIs(t, err, audit.ErrNotObject)

	var se *audit.SyntaxError
	_, _, err = validator().DecodeNotification([]byte("\n {\"a\":"))
	require.ErrorAs(t, err, &se)
	assert.Equal(t, int64(7), se.Offset)
	_, _, err = validator().DecodeNotification([]byte(""))
	require.ErrorAs(t, err, &se)
}
