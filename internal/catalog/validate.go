package catalog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ValidationError is returned by Register, ChangeStatus, Search and
// ValidateSelection when the request breaks rules of CONTRACT §15: Fields
// names every failing key (labels.signal_type, parameters[2].default …),
// all of them at once. Test with errors.As; the API answers 400.
type ValidationError struct {
	Fields map[string]string
}

func (e *ValidationError) Error() string {
	keys := make([]string, 0, len(e.Fields))
	for k := range e.Fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return "catalog: invalid request: " + strings.Join(keys, ", ")
}

// Limits of CONTRACT §15.1.
const (
	maxTitle        = 200
	maxDescription  = 4000
	maxActionType   = 100
	maxLabelValues  = 20
	maxLabelValue   = 63
	maxCustomLabels = 20
	maxParameters   = 50
	maxContent      = 256 << 10
)

var (
	dns1123Label     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	dns1123Subdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	customLabelKey   = regexp.MustCompile(`^[a-z0-9]([a-z0-9._/-]*[a-z0-9])?$`)
	parameterName    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// pinnedBundle is an OCI reference (registry[:port]/path[:tag]) pinned
	// by a sha256 digest; a tag alone is refused because it can move.
	pinnedBundle = regexp.MustCompile(`^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?@sha256:[0-9a-f]{64}$`)
)

var (
	engines        = []string{"tekton", "job", "ansible"}
	parameterTypes = []string{"string", "integer", "number", "boolean"}
	gitopsTools    = []string{"argocd", "flux"}
	serviceMeshes  = []string{"istio", "linkerd"}
)

// fieldErrors collects the failing keys of one request.
type fieldErrors map[string]string

func (fe fieldErrors) add(key, format string, args ...any) {
	if _, ok := fe[key]; !ok {
		fe[key] = fmt.Sprintf(format, args...)
	}
}

func (fe fieldErrors) err() error {
	if len(fe) == 0 {
		return nil
	}
	return &ValidationError{Fields: fe}
}

// object decodes body as a JSON object into its members. A body that is
// not an object is one field error on "body".
func object(body []byte) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil || m == nil {
		return nil, &ValidationError{Fields: map[string]string{"body": "must be a JSON object"}}
	}
	return m, nil
}

func present(raw json.RawMessage) bool { return raw != nil && !bytes.Equal(raw, []byte("null")) }

// str reads a required string member of 1..max characters.
func str(fe fieldErrors, m map[string]json.RawMessage, member, key string, max int, required bool) string {
	raw := m[member]
	if !present(raw) {
		if required {
			fe.add(key, "is required")
		}
		return ""
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		fe.add(key, "must be a string")
		return ""
	}
	n := utf8.RuneCountInString(s)
	switch {
	case required && n == 0:
		fe.add(key, "must not be empty")
	case n > max:
		fe.add(key, "must be at most %d characters", max)
	}
	return s
}

// DecodeRegistration reads the create keys of a workflow version
// (CONTRACT §15.1) and checks every rule, returning a *ValidationError that
// names each failing key. The server keys (id, hash, status, times) are
// filled in by Register.
func DecodeRegistration(body []byte) (Workflow, error) {
	var w Workflow
	m, err := object(body)
	if err != nil {
		return w, err
	}
	fe := fieldErrors{}
	w.Name = str(fe, m, "workflow_name", "workflow_name", 63, true)
	if w.Name != "" && !dns1123Label.MatchString(w.Name) {
		fe.add("workflow_name", "must be a DNS-1123 label: [a-z0-9]([-a-z0-9]*[a-z0-9])?")
	}
	w.Version = str(fe, m, "version", "version", 100, true)
	if _, ok := fe["version"]; !ok {
		if _, err := ParseVersion(w.Version); err != nil {
			fe.add("version", "must be a semantic version MAJOR.MINOR.PATCH[-PRERELEASE]: %v", err)
		}
	}
	w.Title = str(fe, m, "title", "title", maxTitle, true)
	w.Description = decodeDescription(fe, m["description"])
	w.ActionType = str(fe, m, "action_type", "action_type", maxActionType, true)
	w.Labels = decodeLabels(fe, m["labels"])
	w.DetectedLabels = decodeDetected(fe, m["detected_labels"], "detected_labels", true)
	w.CustomLabels = decodeCustom(fe, m["custom_labels"], "custom_labels")
	w.Execution = decodeExecution(fe, m["execution"])
	w.Parameters = decodeParameters(fe, m["parameters"])
	w.Content = str(fe, m, "content", "content", maxContent, true)
	if len(w.Content) > maxContent {
		fe.add("content", "must be at most %d bytes", maxContent)
	}
	return w, fe.err()
}

func decodeDescription(fe fieldErrors, raw json.RawMessage) Description {
	var d Description
	if !present(raw) {
		fe.add("description", "is required")
		return d
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		fe.add("description", "must be an object with what, when_to_use, when_not_to_use, preconditions")
		return d
	}
	d.What = str(fe, m, "what", "description.what", maxDescription, true)
	d.WhenToUse = str(fe, m, "when_to_use", "description.when_to_use", maxDescription, false)
	d.WhenNotToUse = str(fe, m, "when_not_to_use", "description.when_not_to_use", maxDescription, false)
	d.Preconditions = str(fe, m, "preconditions", "description.preconditions", maxDescription, false)
	return d
}

// labelValues reads a non-empty array of 1..63-character strings.
func labelValues(fe fieldErrors, raw json.RawMessage, key string) []string {
	var vs []string
	if err := json.Unmarshal(raw, &vs); err != nil || vs == nil {
		fe.add(key, "must be a non-empty array of strings")
		return nil
	}
	switch {
	case len(vs) == 0:
		fe.add(key, "must not be empty; use [\"*\"] for any value")
	case len(vs) > maxLabelValues:
		fe.add(key, "must have at most %d values", maxLabelValues)
	}
	for _, v := range vs {
		if v == "" || utf8.RuneCountInString(v) > maxLabelValue {
			fe.add(key, "every value must be 1-%d characters", maxLabelValue)
		}
	}
	return vs
}

func decodeLabels(fe fieldErrors, raw json.RawMessage) map[string][]string {
	out := map[string][]string{}
	if !present(raw) {
		fe.add("labels", "is required: %s", strings.Join(MandatoryLabels, ", "))
		return out
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		fe.add("labels", "must be an object of the seven mandatory labels")
		return out
	}
	for k := range m {
		if !slices.Contains(MandatoryLabels, k) {
			fe.add("labels."+k, "is not a mandatory label (%s); put it in custom_labels", strings.Join(MandatoryLabels, ", "))
		}
	}
	for _, k := range MandatoryLabels {
		key := "labels." + k
		if !present(m[k]) {
			fe.add(key, "is required (use [\"*\"] for any value)")
			continue
		}
		vs := labelValues(fe, m[k], key)
		if k == "signal_type" && slices.Contains(vs, "*") {
			fe.add(key, "must name signal types; * is not allowed here")
		}
		out[k] = vs
	}
	return out
}

// decodeDetected reads detected labels. On a workflow (wildcard true) the
// named tool and mesh may be "*"; in a search request they describe a real
// target and may not.
func decodeDetected(fe fieldErrors, raw json.RawMessage, prefix string, wildcard bool) DetectedLabels {
	var d DetectedLabels
	if !present(raw) {
		return d
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		fe.add(prefix, "must be an object")
		return d
	}
	bools := d.boolKeys()
	for k, v := range m {
		key := prefix + "." + k
		i := slices.IndexFunc(bools, func(b struct {
			key string
			v   **bool
		}) bool {
			return b.key == k
		})
		switch {
		case i >= 0:
			var b bool
			if err := json.Unmarshal(v, &b); err != nil {
				fe.add(key, "must be a boolean")
				continue
			}
			*bools[i].v = &b
		case k == "gitops_tool" || k == "service_mesh":
			allowed := gitopsTools
			if k == "service_mesh" {
				allowed = serviceMeshes
			}
			if wildcard {
				allowed = append(slices.Clone(allowed), "*")
			}
			var s string
			if err := json.Unmarshal(v, &s); err != nil || !slices.Contains(allowed, s) {
				fe.add(key, "must be one of %s", strings.Join(allowed, ", "))
				continue
			}
			if k == "gitops_tool" {
				d.GitopsTool = s
			} else {
				d.ServiceMesh = s
			}
		default:
			fe.add(key, "is not a detected label (gitops_managed, pdb_protected, network_isolated, helm_managed, stateful, hpa_enabled, gitops_tool, service_mesh)")
		}
	}
	return d
}

func decodeCustom(fe fieldErrors, raw json.RawMessage, prefix string) map[string][]string {
	out := map[string][]string{}
	if !present(raw) {
		return out
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		fe.add(prefix, "must be an object of label key to array of values")
		return out
	}
	if len(m) > maxCustomLabels {
		fe.add(prefix, "must have at most %d keys", maxCustomLabels)
	}
	for k, v := range m {
		key := prefix + "." + k
		if len(k) > maxLabelValue || !customLabelKey.MatchString(k) {
			fe.add(key, "key must match [a-z0-9]([a-z0-9._/-]*[a-z0-9])? and have at most %d characters", maxLabelValue)
			continue
		}
		out[k] = labelValues(fe, v, key)
	}
	return out
}

func decodeExecution(fe fieldErrors, raw json.RawMessage) Execution {
	var e Execution
	if !present(raw) {
		fe.add("execution", "is required")
		return e
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		fe.add("execution", "must be an object with engine, bundle and service_account")
		return e
	}
	e.Engine = str(fe, m, "engine", "execution.engine", 20, true)
	if e.Engine != "" && !slices.Contains(engines, e.Engine) {
		fe.add("execution.engine", "must be one of %s", strings.Join(engines, ", "))
	}
	e.Bundle = str(fe, m, "bundle", "execution.bundle", 1024, true)
	if e.Bundle != "" && !pinnedBundle.MatchString(e.Bundle) {
		fe.add("execution.bundle", "must be an OCI reference pinned by digest (…@sha256:<64 hex>); a tag alone can move")
	}
	e.ServiceAccount = str(fe, m, "service_account", "execution.service_account", 253, false)
	if e.ServiceAccount != "" && !dns1123Subdomain.MatchString(e.ServiceAccount) {
		fe.add("execution.service_account", "must be a DNS-1123 subdomain")
	}
	return e
}

func decodeParameters(fe fieldErrors, raw json.RawMessage) []Parameter {
	out := []Parameter{}
	if !present(raw) {
		return out
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		fe.add("parameters", "must be an array of parameters")
		return out
	}
	if len(items) > maxParameters {
		fe.add("parameters", "must have at most %d parameters", maxParameters)
	}
	seen := map[string]int{}
	for i, item := range items {
		prefix := "parameters[" + strconv.Itoa(i) + "]"
		var m map[string]json.RawMessage
		if err := json.Unmarshal(item, &m); err != nil || m == nil {
			fe.add(prefix, "must be an object")
			continue
		}
		var p Parameter
		p.Name = str(fe, m, "name", prefix+".name", 256, true)
		if p.Name != "" {
			if !parameterName.MatchString(p.Name) {
				fe.add(prefix+".name", "must match [A-Za-z_][A-Za-z0-9_]*")
			} else if j, dup := seen[p.Name]; dup {
				fe.add(prefix+".name", "repeats the name of parameters[%d]", j)
			} else {
				seen[p.Name] = i
			}
		}
		p.Type = str(fe, m, "type", prefix+".type", 20, true)
		typeOK := slices.Contains(parameterTypes, p.Type)
		if p.Type != "" && !typeOK {
			fe.add(prefix+".type", "must be one of %s", strings.Join(parameterTypes, ", "))
		}
		if present(m["required"]) {
			if err := json.Unmarshal(m["required"], &p.Required); err != nil {
				fe.add(prefix+".required", "must be a boolean")
			}
		}
		p.Description = str(fe, m, "description", prefix+".description", maxDescription, false)
		if present(m["default"]) {
			p.Default = compact(m["default"])
			if typeOK && !hasType(p.Default, p.Type) {
				fe.add(prefix+".default", "must be a %s, the parameter's type", p.Type)
			}
		}
		if present(m["enum"]) {
			var vals []json.RawMessage
			if err := json.Unmarshal(m["enum"], &vals); err != nil || len(vals) == 0 {
				fe.add(prefix+".enum", "must be a non-empty array")
			}
			for j, v := range vals {
				c := compact(v)
				if typeOK && !hasType(c, p.Type) {
					fe.add(prefix+".enum", "value %d must be a %s, the parameter's type", j, p.Type)
				}
				p.Enum = append(p.Enum, c)
			}
		}
		out = append(out, p)
	}
	return out
}

func compact(raw json.RawMessage) RawValue {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return RawValue(raw)
	}
	return b.Bytes()
}

// hasType reports whether the JSON value v is of the parameter type t.
func hasType(v RawValue, t string) bool {
	switch t {
	case "string":
		var s string
		return json.Unmarshal(v, &s) == nil
	case "boolean":
		var b bool
		return json.Unmarshal(v, &b) == nil
	case "integer":
		var n json.Number
		if v[0] == '"' || json.Unmarshal(v, &n) != nil {
			return false
		}
		_, err := strconv.ParseInt(n.String(), 10, 64)
		return err == nil
	case "number":
		var f float64
		return v[0] != '"' && json.Unmarshal(v, &f) == nil
	}
	return false
}
