package loadgen

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// Generator makes realistic audit events: the shapes the platform's services
// send (about 500 bytes of JSON each, event_data with a discriminator, a
// nested target and a few scalars), spread over a fixed set of correlation
// ids so the hash chains are as long and as contended as in production.
type Generator struct {
	rng   *rand.Rand
	corrs []string
	now   time.Time
}

// NewGenerator returns a generator of events over the given number of
// correlation ids, stamped within the hour before now; the same seed gives
// the same events.
func NewGenerator(seed uint64, correlations int, now time.Time) *Generator {
	g := &Generator{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), now: now}
	for i := range correlations {
		g.corrs = append(g.corrs, fmt.Sprintf("rr-%08x-%04d", seed*7919+uint64(i)*104729, i))
	}
	return g
}

// kinds are (category, event_type, action) triples as the platform emits them.
var kinds = []struct{ category, typ, action string }{
	{"gateway", "gateway.signal.received", "received"},
	{"signalprocessing", "signalprocessing.enrichment.completed", "enriched"},
	{"analysis", "analysis.investigation.completed", "analyzed"},
	{"aiagent", "aiagent.recommendation.created", "recommended"},
	{"workflow", "workflow.selection.completed", "selected"},
	{"workflowexecution", "workflowexecution.step.completed", "executed"},
	{"orchestration", "orchestration.phase.transitioned", "transitioned"},
	{"approval", "approval.request.decided", "decided"},
	{"notification", "notification.message.sent", "sent"},
	{"effectiveness", "effectiveness.assessment.completed", "assessed"},
}

var (
	namespaces = []string{"payments", "checkout", "inventory", "search", "auth", "ledger", "edge", "batch"}
	clusters   = []string{"prod-eu-1", "prod-us-1", "prod-us-2", "staging-1"}
	severities = []string{"info", "info", "info", "warning", "high", "critical"}
	workloads  = []string{"Deployment", "StatefulSet", "DaemonSet", "CronJob"}
	reasons    = []string{"OOMKilled", "CrashLoopBackOff", "HighLatency", "DiskPressure", "NodeNotReady", "ImagePullBackOff"}
)

// requestJSON is one AuditEventRequest as the load generator sends it.
type requestJSON struct {
	Version        string         `json:"version"`
	EventType      string         `json:"event_type"`
	EventTimestamp string         `json:"event_timestamp"`
	EventCategory  string         `json:"event_category"`
	EventAction    string         `json:"event_action"`
	EventOutcome   string         `json:"event_outcome"`
	CorrelationID  string         `json:"correlation_id"`
	Namespace      string         `json:"namespace"`
	ClusterID      string         `json:"cluster_id"`
	Severity       string         `json:"severity"`
	DurationMS     int            `json:"duration_ms"`
	EventData      map[string]any `json:"event_data"`
}

// Body returns one event as a JSON object, without event_id (the platform's
// clients let the server assign it).
func (g *Generator) Body() []byte {
	r := g.rng
	k := kinds[r.IntN(len(kinds))]
	corr := g.corrs[r.IntN(len(g.corrs))]
	ns := namespaces[r.IntN(len(namespaces))]
	outcome := "success"
	switch n := r.IntN(20); {
	case n == 0:
		outcome = "failure"
	case n < 3:
		outcome = "pending"
	}
	// Within the last hour: always inside the accepted window, in the
	// current month's partition (or the previous one just after midnight
	// on the first).
	ts := g.now.Add(-time.Duration(r.IntN(3600_000)) * time.Millisecond).UTC()
	req := requestJSON{
		Version:        "1.0",
		EventType:      k.typ,
		EventTimestamp: ts.Format(time.RFC3339Nano),
		EventCategory:  k.category,
		EventAction:    k.action,
		EventOutcome:   outcome,
		CorrelationID:  corr,
		Namespace:      ns,
		ClusterID:      clusters[r.IntN(len(clusters))],
		Severity:       severities[r.IntN(len(severities))],
		DurationMS:     r.IntN(30_000),
		EventData: map[string]any{
			"event_type":     k.typ,
			"remediation_id": corr,
			"workflow_id":    fmt.Sprintf("wf-%s-%03d", strings.ToLower(reasons[r.IntN(len(reasons))]), r.IntN(40)),
			"step":           r.IntN(12),
			"attempt":        1 + r.IntN(3),
			"reason":         reasons[r.IntN(len(reasons))],
			"target_resource": map[string]any{
				"kind":      workloads[r.IntN(len(workloads))],
				"name":      fmt.Sprintf("%s-api-%x", ns, r.IntN(1<<20)),
				"namespace": ns,
			},
			"message":    fmt.Sprintf("phase %d of %s finished after %d probes; replicas %d/%d ready", r.IntN(9), k.action, r.IntN(50), r.IntN(6), 6),
			"confidence": float64(r.IntN(1000)) / 1000,
		},
	}
	b, err := json.Marshal(req)
	if err != nil {
		panic(err) // a map of strings and numbers always encodes
	}
	return b
}

// withParent appends parent_event_id to an event body.
func withParent(dst, body []byte, parent string) []byte {
	dst = append(dst[:0], body[:len(body)-1]...)
	dst = append(dst, `,"parent_event_id":"`...)
	dst = append(dst, parent...)
	return append(dst, `"}`...)
}

// BatchBody joins n fresh event bodies into a JSON array.
func (g *Generator) BatchBody(n int) []byte {
	var b []byte
	b = append(b, '[')
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, g.Body()...)
	}
	return append(b, ']')
}
