package audit

import (
	"encoding/json"
	"time"
)

// NotificationChannels lists the accepted notification channels (CONTRACT §9).
var NotificationChannels = []string{"email", "slack", "pagerduty", "teams", "webhook", "sms", "console", "file", "log"}

// NotificationStatuses lists the accepted notification statuses.
var NotificationStatuses = []string{"sent", "failed", "pending", "acknowledged", "escalated"}

// maxSentAtSkew is how far in the future sent_at may lie; fixed by the contract.
const maxSentAtSkew = 5 * time.Minute

// Notification is the legacy typed notification audit record (CONTRACT §9).
type Notification struct {
	ID              int64  `json:"id"`
	RemediationID   string `json:"remediation_id"`
	NotificationID  string `json:"notification_id"`
	Recipient       string `json:"recipient"`
	Channel         string `json:"channel"`
	MessageSummary  string `json:"message_summary"`
	Status          string `json:"status"`
	SentAt          Time   `json:"sent_at"`
	DeliveryStatus  string `json:"delivery_status,omitempty"`
	ErrorMessage    string `json:"error_message,omitempty"`
	EscalationLevel *int32 `json:"escalation_level,omitempty"`
	CreatedAt       Time   `json:"created_at"`
	UpdatedAt       Time   `json:"updated_at"`
}

type notificationRequest struct {
	RemediationID   jstr `json:"remediation_id"`
	NotificationID  jstr `json:"notification_id"`
	Recipient       jstr `json:"recipient"`
	Channel         jstr `json:"channel"`
	MessageSummary  jstr `json:"message_summary"`
	Status          jstr `json:"status"`
	SentAt          jstr `json:"sent_at"`
	DeliveryStatus  jstr `json:"delivery_status"`
	ErrorMessage    jstr `json:"error_message"`
	EscalationLevel jint `json:"escalation_level"`
}

// DecodeNotification decodes and validates a notification audit request,
// returning every failing field at once. Member names are exact and unique,
// as for events (see DecodeObject).
func (v *Validator) DecodeNotification(body []byte) (*Notification, FieldErrors, error) {
	obj, fe, err := DecodeObject(body)
	if err != nil {
		return nil, nil, err
	}
	if fe == nil {
		fe = FieldErrors{}
	}
	var r notificationRequest
	for name, dst := range map[string]json.Unmarshaler{
		"remediation_id": &r.RemediationID, "notification_id": &r.NotificationID, "recipient": &r.Recipient,
		"channel": &r.Channel, "message_summary": &r.MessageSummary, "status": &r.Status, "sent_at": &r.SentAt,
		"delivery_status": &r.DeliveryStatus, "error_message": &r.ErrorMessage, "escalation_level": &r.EscalationLevel,
	} {
		if raw, ok := obj[name]; ok {
			_ = dst.UnmarshalJSON(raw) // never fails: every fault is a flag
		}
	}
	c := checker{fe: fe}
	n := &Notification{
		RemediationID:  c.str("remediation_id", &r.RemediationID, 1, 255),
		NotificationID: c.str("notification_id", &r.NotificationID, 1, 255),
		Recipient:      c.str("recipient", &r.Recipient, 1, 255),
		Channel:        c.enum("channel", &r.Channel, NotificationChannels),
		MessageSummary: c.str("message_summary", &r.MessageSummary, 1, 1000),
		Status:         c.enum("status", &r.Status, NotificationStatuses),
		DeliveryStatus: c.str("delivery_status", &r.DeliveryStatus, 0, 255),
		ErrorMessage:   c.str("error_message", &r.ErrorMessage, 0, MaxErrorMessage),
	}
	if lvl, ok := c.integer("escalation_level", &r.EscalationLevel, 0, 100); ok {
		l := int32(lvl)
		n.EscalationLevel = &l
	}
	if ts, ok := c.timestamp("sent_at", &r.SentAt); ok {
		if ts.After(v.now().Add(maxSentAtSkew)) {
			c.fail("sent_at", "must not be more than 5m0s in the future")
		}
		n.SentAt = NewTime(ts)
	}
	if len(fe) > 0 {
		return nil, fe, nil
	}
	return n, nil, nil
}
