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
	rng    *rand.Rand
	corrs  []string
	now    time.Time
	spread Spread
}

// Spread is how a Generator spreads the events of a correlation over
// namespaces, clusters and time.
type Spread int

const (
	// SpreadRemediation keeps each correlation in one namespace and one
	// cluster, as a remediation acts on one workload, and stamps events
	// within the 2 s before the generator's now, as the platform's clients
	// send them (buffered, flushed every second).
	SpreadRemediation Spread = iota
	// SpreadScattered puts every event in a random one of 8 namespaces and
	// 4 clusters, stamped anywhere in the hour before now: the generator
	// before 2026-12-07, and the worst case for the chain heads' open cells
	// (store/cells.go), which it closes at nearly every commit.
	SpreadScattered
)

// ParseSpread reads a Spread by its name: remediation or scattered.
func ParseSpread(name string) (Spread, error) {
	switch name {
	case "remediation":
		return SpreadRemediation, nil
	case "scattered":
		return SpreadScattered, nil
	}
	return 0, fmt.Errorf("spread %q: want remediation or scattered", name)
}

// String is the Spread's name, as ParseSpread reads it.
func (s Spread) String() string {
	if s == SpreadScattered {
		return "scattered"
	}
	return "remediation"
}

// NewGenerator returns a generator of events over the given number of
// correlation ids, spread as spread says around now; the same seed gives
// the same events.
func NewGenerator(seed uint64, correlations int, now time.Time, spread Spread) *Generator {
	g := &Generator{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), now: now, spread: spread}
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
	ci := r.IntN(len(g.corrs))
	corr := g.corrs[ci]
	ns, cluster := namespaces[r.IntN(len(namespaces))], clusters[r.IntN(len(clusters))]
	if g.spread == SpreadRemediation {
		ns, cluster = namespaces[ci%len(namespaces)], clusters[ci/len(namespaces)%len(clusters)]
	}
	outcome := "success"
	switch n := r.IntN(20); {
	case n == 0:
		outcome = "failure"
	case n < 3:
		outcome = "pending"
	}
	// Within the last hour (scattered) or 2 s: always inside the accepted
	// window, in the current month's partition (or the previous one just
	// after midnight on the first).
	window := 2_000
	if g.spread == SpreadScattered {
		window = 3600_000
	}
	ts := g.now.Add(-time.Duration(r.IntN(window)) * time.Millisecond).UTC()
	req := requestJSON{
		Version:        "1.0",
		EventType:      k.typ,
		EventTimestamp: ts.Format(time.RFC3339Nano),
		EventCategory:  k.category,
		EventAction:    k.action,
		EventOutcome:   outcome,
		CorrelationID:  corr,
		Namespace:      ns,
		ClusterID:      cluster,
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
