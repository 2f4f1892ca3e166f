package config

import (
	"encoding"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"gopkg.in/yaml.v3"
)

// The YAML file and the environment are both applied by walking Config with
// reflection over its yaml tags, and both end in setScalar. That keeps one
// notion of "key" and one parser per type, so a value that is valid in the
// file is valid in a variable and the messages read the same.

// decodeYAML applies the YAML document in data to cfg. Problems with
// individual keys are returned as a list so they can be reported together
// with the rest; a document that is not YAML at all is the error.
func decodeYAML(data []byte, cfg *Config) ([]error, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if len(doc.Content) == 0 {
		return nil, nil // an empty file means "all defaults"
	}
	return decodeNode(doc.Content[0], reflect.ValueOf(cfg).Elem(), ""), nil
}

// decodeNode applies node to v, where path is v's dotted key ("" for the
// root).
func decodeNode(node *yaml.Node, v reflect.Value, path string) []error {
	if node.Kind == yaml.AliasNode {
		node = node.Alias
	}
	// An explicit null (or a key with nothing after it) keeps the default,
	// which is what an operator blanking a line out means.
	if node.Kind == yaml.ScalarNode && node.Tag == "!!null" {
		return nil
	}
	if isLeaf(v.Type()) {
		if l, ok := v.Addr().Interface().(listSetter); ok && node.Kind == yaml.SequenceNode {
			return setSequence(l, node, path)
		}
		if node.Kind != yaml.ScalarNode {
			return []error{fmt.Errorf("config: %s: %s (line %d)", path, kindWanted(v), node.Line)}
		}
		if err := setScalar(v, node.Value); err != nil {
			return []error{fmt.Errorf("config: %s: %w (line %d)", path, err, node.Line)}
		}
		return nil
	}
	if node.Kind != yaml.MappingNode {
		name := path
		if name == "" {
			name = "top level"
		}
		return []error{fmt.Errorf("config: %s: must be a mapping of keys (line %d)", name, node.Line)}
	}
	fields := fieldsByKey(v)
	seen := make(map[string]bool, len(node.Content)/2)
	var errs []error
	for i := 0; i+1 < len(node.Content); i += 2 {
		keyNode, valNode := node.Content[i], node.Content[i+1]
		key := joinPath(path, keyNode.Value)
		f, ok := fields[keyNode.Value]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("config: %s: unknown key (line %d)", key, keyNode.Line))
		case seen[keyNode.Value]:
			errs = append(errs, fmt.Errorf("config: %s: duplicate key (line %d)", key, keyNode.Line))
		default:
			seen[keyNode.Value] = true
			errs = append(errs, decodeNode(valNode, f, key)...)
		}
	}
	return errs
}

// listSetter is implemented by leaves that take a YAML sequence (AddrList);
// in a variable they take a comma-separated list through UnmarshalText.
type listSetter interface {
	setList(items []string) error
}

func setSequence(l listSetter, node *yaml.Node, path string) []error {
	items := make([]string, 0, len(node.Content))
	for _, item := range node.Content {
		if item.Kind != yaml.ScalarNode {
			return []error{fmt.Errorf("config: %s: must be a list of strings (line %d)", path, item.Line)}
		}
		items = append(items, item.Value)
	}
	if err := l.setList(items); err != nil {
		return []error{fmt.Errorf("config: %s: %w (line %d)", path, err, node.Line)}
	}
	return nil
}

// applyEnv applies the DATASTORAGE_ variables in environ to cfg.
func applyEnv(cfg *Config, environ []string) []error {
	type target struct {
		path  string
		value reflect.Value
	}
	targets := map[string]target{}
	walkLeaves(reflect.ValueOf(cfg).Elem(), "", func(path string, v reflect.Value) {
		for _, name := range envNames(path) {
			targets[name] = target{path, v}
		}
	})

	values := map[string]string{}
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		// DATASTORAGE_TEST_* belongs to the test harness (internal/testenv),
		// which shares the prefix; it is never a config key.
		if ok && strings.HasPrefix(name, envPrefix) && !strings.HasPrefix(name, envPrefix+"TEST_") {
			values[name] = value
		}
	}

	var errs []error
	setBy := map[string]string{} // key path -> variable that set it
	// Sorted so that errors, and the choice between two spellings of one
	// key, do not depend on the order of the environment.
	for _, name := range slices.Sorted(maps.Keys(values)) {
		t, ok := targets[name]
		if !ok {
			errs = append(errs, fmt.Errorf("config: %s: environment variable matches no config key", name))
			continue
		}
		if other, dup := setBy[t.path]; dup {
			errs = append(errs, fmt.Errorf("config: %s and %s both set %s; keep one", other, name, t.path))
			continue
		}
		setBy[t.path] = name
		if err := setScalar(t.value, values[name]); err != nil {
			errs = append(errs, fmt.Errorf("config: %s (%s): %w", name, t.path, err))
		}
	}
	return errs
}

// envNames returns the variable names for a dotted key: the plain upper-case
// form and, when different, the snake-case form.
func envNames(path string) []string {
	plain := envPrefix + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
	parts := strings.Split(path, ".")
	for i, p := range parts {
		parts[i] = snakeUpper(p)
	}
	snake := envPrefix + strings.Join(parts, "_")
	if snake == plain {
		return []string{plain}
	}
	return []string{plain, snake}
}

// snakeUpper turns "maxBatchSize" into "MAX_BATCH_SIZE".
func snakeUpper(s string) string {
	var b strings.Builder
	for i, r := range s {
		if i > 0 && unicode.IsUpper(r) {
			prev := rune(s[i-1])
			if unicode.IsLower(prev) || unicode.IsDigit(prev) {
				b.WriteByte('_')
			}
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}

// setScalar parses s into v according to v's type.
func setScalar(v reflect.Value, s string) error {
	if u, ok := v.Addr().Interface().(encoding.TextUnmarshaler); ok {
		return u.UnmarshalText([]byte(s))
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil || v.OverflowInt(n) {
			return fmt.Errorf("must be an integer, got %q", s)
		}
		v.SetInt(n)
	case reflect.Float64:
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return fmt.Errorf("must be a number, got %q", s)
		}
		v.SetFloat(f)
	case reflect.Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("must be true or false, got %q", s)
		}
		v.SetBool(b)
	default:
		// Only reachable if a field of a new type is added to Config.
		panic(fmt.Sprintf("config: no parser for %s", v.Type()))
	}
	return nil
}

// kindWanted describes what a leaf of v's type must look like, for errors
// about YAML lists or maps where a single value was expected.
func kindWanted(v reflect.Value) string {
	switch v.Addr().Interface().(type) {
	case *Duration:
		return "must be a duration"
	case *ByteSize:
		return "must be a size"
	case *AddrList:
		return "must be a list of host:port"
	}
	switch v.Kind() {
	case reflect.Int, reflect.Int64:
		return "must be an integer"
	case reflect.Float64:
		return "must be a number"
	case reflect.Bool:
		return "must be true or false"
	default:
		return "must be a string"
	}
}

// isLeaf reports whether a field of type t holds one value rather than a
// section of further keys.
func isLeaf(t reflect.Type) bool {
	return t.Kind() != reflect.Struct || reflect.PointerTo(t).Implements(reflect.TypeFor[encoding.TextUnmarshaler]())
}

// yamlKey returns the key of a struct field, or "" when it is not
// configurable (tagged "-").
func yamlKey(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" || !f.IsExported() {
		return ""
	}
	return name
}

// fieldsByKey maps the keys of the struct v to its settable fields.
func fieldsByKey(v reflect.Value) map[string]reflect.Value {
	out := make(map[string]reflect.Value, v.NumField())
	for i := range v.NumField() {
		if key := yamlKey(v.Type().Field(i)); key != "" {
			out[key] = v.Field(i)
		}
	}
	return out
}

// walkLeaves calls fn for every single-value key under v.
func walkLeaves(v reflect.Value, path string, fn func(path string, v reflect.Value)) {
	if isLeaf(v.Type()) {
		fn(path, v)
		return
	}
	for key, f := range fieldsByKey(v) {
		walkLeaves(f, joinPath(path, key), fn)
	}
}

func joinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}
