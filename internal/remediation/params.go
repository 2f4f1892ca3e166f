package remediation

import (
	"net/url"
	"time"

	"kubernaut.ai/datastorage/internal/audit"
)

// Window defaults of the history context (CONTRACT §16.1).
const (
	DefaultTier1Window = 24 * time.Hour
	DefaultTier2Window = 2160 * time.Hour
)

// ContextParams is a parsed history context request.
type ContextParams struct {
	TargetNamespace string
	TargetKind      string
	TargetName      string
	CurrentSpecHash string
	ClusterID       string
	Tier1Window     time.Duration
	Tier2Window     time.Duration
}

// Target is the target_resource the remediation events name:
// "namespace/kind/name", "/kind/name" for a cluster-scoped target.
func (p ContextParams) Target() string {
	return p.TargetNamespace + "/" + p.TargetKind + "/" + p.TargetName
}

// ParseContext reads the history context parameters, naming every bad one
// in the returned field errors (nil when there is none). An empty optional
// parameter counts as absent.
func ParseContext(v url.Values) (ContextParams, audit.FieldErrors) {
	fe := audit.FieldErrors{}
	p := ContextParams{
		TargetNamespace: v.Get("targetNamespace"),
		TargetKind:      v.Get("targetKind"),
		TargetName:      v.Get("targetName"),
		CurrentSpecHash: v.Get("currentSpecHash"),
		ClusterID:       v.Get("clusterId"),
	}
	for name, val := range map[string]string{"targetKind": p.TargetKind, "targetName": p.TargetName, "currentSpecHash": p.CurrentSpecHash} {
		if val == "" {
			fe[name] = "is required and must not be empty"
		}
	}
	var ok1, ok2 bool
	p.Tier1Window, ok1 = window(v, "tier1Window", DefaultTier1Window, fe)
	p.Tier2Window, ok2 = window(v, "tier2Window", DefaultTier2Window, fe)
	if ok1 && ok2 && p.Tier2Window <= p.Tier1Window {
		fe["tier2Window"] = "must be longer than tier1Window (" + p.Tier1Window.String() + ")"
	}
	if len(fe) > 0 {
		return p, fe
	}
	return p, nil
}

// window parses a Go duration parameter; ok is false when it was invalid
// (and fe names it).
func window(v url.Values, name string, def time.Duration, fe audit.FieldErrors) (time.Duration, bool) {
	s := v.Get(name)
	if s == "" {
		return def, true
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		fe[name] = "must be a Go duration such as 24h or 90m"
		return 0, false
	case d <= 0:
		fe[name] = "must be greater than zero"
		return 0, false
	}
	return d, true
}
