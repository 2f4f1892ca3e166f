package audit

import (
	"strings"
	"testing"
	"time"
)

// benchEvent is a realistic AuditEventRequest of about 700 bytes: every
// required member, two optional ones, and an event_data of about 460 bytes
// with strings, numbers, a small array and a nested object, as the
// controllers send them.
const benchEvent = `{"version":"1.0","event_type":"workflow.step.done",` +
	`"event_timestamp":"2026-11-22T09:30:00.123Z","event_category":"workflow",` +
	`"event_action":"done","event_outcome":"success","correlation_id":"rr-2f9c1d7e",` +
	`"severity":"info","duration_ms":1532,` +
	`"event_data":{"workflow_id":"restart-pod-v2","step":3,"step_name":"drain-node",` +
	`"target":{"kind":"Pod","name":"payments-api-7d9f8c6b5-x2k4j","namespace":"payments",` +
	`"labels":{"app":"payments-api","tier":"backend"}},"attempts":[1,2,3],` +
	`"confidence":0.875,"cpu_millicores":1250,"memory_bytes":536870912,` +
	`"message":"step completed after 3 attempts","dry_run":false,"approved_by":null,` +
	`"cost":1.50e1,"parameters":{"grace_period_seconds":30,"force":false,"selector":"app=payments"}}}`

func benchValidator() *Validator {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	return &Validator{MaxAge: 7 * 24 * time.Hour, MaxSkew: time.Hour, Now: func() time.Time { return now }}
}

func BenchmarkDecodeOne(b *testing.B) {
	v, body := benchValidator(), []byte(benchEvent)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, fe, err := v.DecodeOne(body); err != nil || fe != nil {
			b.Fatal(fe, err)
		}
	}
}

func BenchmarkDecodeBatch500(b *testing.B) {
	v := benchValidator()
	body := []byte("[" + benchEvent + strings.Repeat(","+benchEvent, 499) + "]")
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if evs, fe, err := v.DecodeBatch(body, 1000); err != nil || fe != nil || len(evs) != 500 {
			b.Fatal(fe, err)
		}
	}
}

// BenchmarkCanonical measures an event read back from storage, whose
// canonical event_data is not cached yet: the verification path.
func BenchmarkCanonical(b *testing.B) {
	ev, fe, err := benchValidator().DecodeOne([]byte(benchEvent))
	if err != nil || fe != nil {
		b.Fatal(fe, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		ev.canonData = nil
		if _, err := ev.Canonical(); err != nil {
			b.Fatal(err)
		}
	}
}
