// Package apitest checks real HTTP exchanges against api/openapi.yaml, the
// machine-readable form of CONTRACT.md. It is meant for _test.go files only.
//
// Libraries, and why:
//   - github.com/getkin/kin-openapi loads the document, validates it as an
//     OpenAPI 3.1 document, routes requests to operations (gorillamux), and
//     checks status codes, response headers and request parameters. Its
//     current releases understand 3.1 (type arrays, const, if/then/else,
//     `$ref` siblings). The other candidate, pb33f/libopenapi-validator, could
//     not be used: the module proxy refuses some of its dependencies
//     (pb33f/jsonschema, pb33f/go-yaml).
//   - Bodies are validated with github.com/santhosh-tekuri/jsonschema/v6, the
//     JSON Schema 2020-12 engine kin-openapi itself uses for 3.1 documents,
//     called directly on the document. kin-openapi falls back to its older
//     OpenAPI 3.0 validator for schemas that use no 2020-only keyword; calling
//     the engine ourselves means every body gets genuine 2020-12 semantics
//     (nullable type arrays included) and errors that name the failing key.
//     Formats (uuid, date, date-time, ipv4, ipv6, uri) are asserted.
package apitest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/oasdiff/yaml"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"kubernaut.ai/datastorage/api"
)

// byNameExtension maps a path parameter `name` to the component schema its
// 200 body must match (used by the aggregations operation).
const byNameExtension = "x-response-schema-by-name"

// docURL is the name under which the document is given to the JSON Schema
// compiler; schema locations are JSON pointers into it.
const docURL = "file:///api/openapi.yaml"

// Validator checks real HTTP exchanges against api/openapi.yaml.
// It is safe for concurrent use.
type Validator struct {
	*spec
}

// spec is the loaded document, shared by every Validator of a test binary.
type spec struct {
	doc    *openapi3.T
	router routers.Router

	mu       sync.Mutex // guards compiler and compiled
	compiler *jsonschema.Compiler
	compiled map[string]*jsonschema.Schema
}

var (
	loadOnce   sync.Once
	loaded     *spec
	errLoading error
)

func load() (*spec, error) {
	loadOnce.Do(func() { loaded, errLoading = loadSpec(api.Spec()) })
	return loaded, errLoading
}

func loadSpec(data []byte) (*spec, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(data)
	if err != nil {
		return nil, fmt.Errorf("apitest: loading api/openapi.yaml: %w", err)
	}
	if err := doc.Validate(loader.Context,
		openapi3.EnableSchemaPatternValidation(),
		openapi3.EnableSchemaDefaultsValidation(),
		openapi3.EnableExamplesValidation(),
	); err != nil {
		return nil, fmt.Errorf("apitest: api/openapi.yaml is not a valid OpenAPI document: %w", err)
	}
	rtr, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("apitest: routing api/openapi.yaml: %w", err)
	}

	// The same document as plain JSON values, for the JSON Schema compiler.
	asJSON, err := yamlToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("apitest: api/openapi.yaml: %w", err)
	}
	raw, err := jsonschema.UnmarshalJSON(bytes.NewReader(asJSON))
	if err != nil {
		return nil, fmt.Errorf("apitest: api/openapi.yaml: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	c.RegisterFormat(&jsonschema.Format{Name: "date-time", Validate: validDateTime})
	c.RegisterFormat(&jsonschema.Format{Name: "ipv4", Validate: func(v any) error { return validIP(v, true) }})
	c.RegisterFormat(&jsonschema.Format{Name: "ipv6", Validate: func(v any) error { return validIP(v, false) }})
	if err := c.AddResource(docURL, raw); err != nil {
		return nil, fmt.Errorf("apitest: api/openapi.yaml: %w", err)
	}
	return &spec{doc: doc, router: rtr, compiler: c, compiled: map[string]*jsonschema.Schema{}}, nil
}

// NewValidator loads api/openapi.yaml (once per test binary) and fails the
// test if the document does not load or is not a valid OpenAPI 3.1 document.
func NewValidator(t testing.TB) *Validator {
	t.Helper()
	s, err := load()
	if err != nil {
		t.Fatal(err)
	}
	return &Validator{s}
}

// CheckResponse validates that resp (with its body bytes) is a documented
// response of req's operation: status code documented, content type, body
// schema (including formats: uuid, date-time, date), required headers. A
// request to an undocumented path must have been answered with the 404
// problem, a documented path with an undocumented method with the 405 problem.
// It fails the test (t.Errorf) with a precise message. It does not read
// resp.Body: pass the body bytes the caller already read.
func (v *Validator) CheckResponse(t testing.TB, req *http.Request, resp *http.Response, body []byte) {
	t.Helper()
	if err := v.ResponseError(req, resp, body); err != nil {
		t.Errorf("%v", err)
	}
}

// CheckRequest validates a request the test is about to send (path, query,
// headers and the given body) against its documented operation. The request's
// own Body is not read. It fails the test (t.Errorf) with a precise message.
func (v *Validator) CheckRequest(t testing.TB, req *http.Request, body []byte) {
	t.Helper()
	if err := v.RequestError(req, body); err != nil {
		t.Errorf("%v", err)
	}
}

// ResponseError is CheckResponse returning the problem instead of failing a
// test; nil when the exchange matches the document.
func (v *Validator) ResponseError(req *http.Request, resp *http.Response, body []byte) error {
	where := fmt.Sprintf("%s %s → %d", req.Method, req.URL.RequestURI(), resp.StatusCode)
	fail := func(format string, a ...any) error {
		return fmt.Errorf("apitest: %s does not match api/openapi.yaml:\n%s\n%s",
			where, indent(fmt.Sprintf(format, a...)), excerpt(resp.Header, body))
	}

	// kin-openapi skips HEAD exchanges entirely, so it is shown them as GET.
	checked := req
	if req.Method == http.MethodHead {
		checked = req.Clone(context.Background())
		checked.Method = http.MethodGet
	}
	route, params, err := v.router.FindRoute(req)
	if errors.Is(err, routers.ErrMethodNotAllowed) && req.Method == http.MethodHead {
		// HEAD is answered wherever GET is: GET's statuses and headers, no body.
		route, params, err = v.router.FindRoute(checked)
	}
	switch {
	case errors.Is(err, routers.ErrPathNotFound):
		route, err = v.unrouted(req, http.StatusNotFound, "NotFound")
		where += " (undocumented path: must be the 404 problem)"
	case errors.Is(err, routers.ErrMethodNotAllowed):
		route, err = v.unrouted(req, http.StatusMethodNotAllowed, "MethodNotAllowed")
		where += " (undocumented method: must be the 405 problem)"
	}
	if err != nil {
		return fmt.Errorf("apitest: %s: finding the operation: %v", where, err)
	}
	where += " [" + route.Operation.OperationID + "]"

	// Status code and headers, by kin-openapi.
	input := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request: checked, PathParams: params, Route: route,
		},
		Status: resp.StatusCode,
		Header: resp.Header,
		Options: &openapi3filter.Options{
			IncludeResponseStatus:   true,
			MultiError:              true,
			ExcludeResponseBody:     true,
			SchemaValidationOptions: []openapi3.SchemaValidationOption{openapi3.WithStringFormatValidators(paramFormats)},
		},
	}
	input.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), input); err != nil {
		return fail("%s", describe(err))
	}
	if req.Method == http.MethodHead {
		if len(body) > 0 {
			return fail("a HEAD response has no body, got %d bytes", len(body))
		}
		return nil
	}

	// Content type and body, by the JSON Schema engine.
	ref := route.Operation.Responses.Status(resp.StatusCode)
	base := ref.Ref
	if base == "" {
		base = pointer("paths", route.Path, strings.ToLower(route.Method), "responses", fmt.Sprint(resp.StatusCode))
	}
	if err := v.checkBody(base, ref.Value.Content, resp.Header.Get("Content-Type"), body); err != nil {
		return fail("%s", err)
	}
	if err := v.checkByName(route, params, resp, body); err != nil {
		return fail("%s", err)
	}
	return nil
}

// RequestError is CheckRequest returning the problem instead of failing a
// test; nil when the request matches the document.
func (v *Validator) RequestError(req *http.Request, body []byte) error {
	where := fmt.Sprintf("%s %s", req.Method, req.URL.RequestURI())
	route, params, err := v.router.FindRoute(req)
	if err != nil {
		return fmt.Errorf("apitest: request %s: no documented operation: %v", where, err)
	}
	where += " [" + route.Operation.OperationID + "]"
	fail := func(format string, a ...any) error {
		return fmt.Errorf("apitest: request %s does not match api/openapi.yaml:\n%s\n%s",
			where, indent(fmt.Sprintf(format, a...)), excerpt(req.Header, body))
	}

	// Path, query and headers, by kin-openapi, on a copy of the request.
	clone := req.Clone(context.Background())
	clone.Body, clone.ContentLength = http.NoBody, 0
	input := &openapi3filter.RequestValidationInput{
		Request: clone, PathParams: params, Route: route,
		Options: &openapi3filter.Options{
			MultiError:              true,
			ExcludeRequestBody:      true,
			SkipSettingDefaults:     true,
			AuthenticationFunc:      openapi3filter.NoopAuthenticationFunc,
			SchemaValidationOptions: []openapi3.SchemaValidationOption{openapi3.WithStringFormatValidators(paramFormats)},
		},
	}
	if err := openapi3filter.ValidateRequest(context.Background(), input); err != nil {
		return fail("%s", describe(err))
	}

	// Body, by the JSON Schema engine.
	rb := route.Operation.RequestBody
	switch {
	case rb == nil && len(body) > 0:
		return fail("the operation takes no request body")
	case rb == nil:
		return nil
	case len(body) == 0 && rb.Value.Required:
		return fail("the request body is required")
	case len(body) == 0:
		return nil
	}
	base := rb.Ref
	if base == "" {
		base = pointer("paths", route.Path, strings.ToLower(route.Method), "requestBody")
	}
	if err := v.checkBody(base, rb.Value.Content, req.Header.Get("Content-Type"), body); err != nil {
		return fail("%s", err)
	}
	return nil
}

// unrouted is a stand-in operation for requests the document has no
// operation for: its only response is the named component response.
func (v *Validator) unrouted(req *http.Request, status int, component string) (*routers.Route, error) {
	ref := v.doc.Components.Responses[component]
	if ref == nil {
		return nil, fmt.Errorf("components/responses/%s is missing", component)
	}
	responses := openapi3.NewResponses()
	responses.Delete("default")
	responses.Set(fmt.Sprint(status), &openapi3.ResponseRef{Ref: pointer("components", "responses", component), Value: ref.Value})
	op := openapi3.NewOperation()
	op.OperationID = "unrouted"
	op.Responses = responses
	return &routers.Route{Spec: v.doc, Path: req.URL.Path, Method: req.Method, Operation: op}, nil
}

// checkBody checks the content type against the documented media types of
// the response or request body at base, and the body against its schema.
func (v *Validator) checkBody(base string, content openapi3.Content, contentType string, body []byte) error {
	if len(content) == 0 {
		if len(body) > 0 {
			return fmt.Errorf("a body is not documented here, got %d bytes", len(body))
		}
		return nil
	}
	documented := slices.Sorted(func(yield func(string) bool) {
		for k := range content {
			if !yield(k) {
				return
			}
		}
	})
	if contentType == "" {
		return fmt.Errorf("no Content-Type header; documented: %s", strings.Join(documented, ", "))
	}
	mediaType, _, err := mime.ParseMediaType(contentType)
	if err != nil || content[mediaType] == nil {
		return fmt.Errorf("Content-Type %q is not documented here; documented: %s", contentType, strings.Join(documented, ", "))
	}
	if content[mediaType].Schema == nil {
		return nil
	}
	value, err := decode(mediaType, body)
	if err != nil {
		return fmt.Errorf("body is not valid %s: %v", mediaType, err)
	}
	name := "the documented " + mediaType + " schema"
	if ref := content[mediaType].Schema.Ref; ref != "" {
		name = schemaName(ref)
	}
	return v.validate(base+"/content/"+escape(mediaType)+"/schema", name, value)
}

// checkByName applies the per-name schema of an operation that answers a
// different shape for each value of its `name` path parameter.
func (v *Validator) checkByName(route *routers.Route, params map[string]string, resp *http.Response, body []byte) error {
	raw, ok := route.Operation.Extensions[byNameExtension]
	if !ok || resp.StatusCode != http.StatusOK {
		return nil
	}
	byName, _ := raw.(map[string]any)
	schemaName, _ := byName[params["name"]].(string)
	if v.doc.Components.Schemas[schemaName] == nil {
		return fmt.Errorf("%s has no schema for name %q", byNameExtension, params["name"])
	}
	value, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("body is not JSON: %v", err)
	}
	if err := v.validate(pointer("components", "schemas", schemaName), schemaName, value); err != nil {
		return fmt.Errorf("aggregation %q: %v", params["name"], err)
	}
	return nil
}

// validate checks value against the schema at the JSON pointer loc of the
// document; name names that schema in messages.
func (v *Validator) validate(loc, name string, value any) error {
	v.mu.Lock()
	sch, ok := v.compiled[loc]
	if !ok {
		var err error
		if sch, err = v.compiler.Compile(docURL + loc); err != nil {
			v.mu.Unlock()
			return fmt.Errorf("compiling the schema at %s: %v", loc, err)
		}
		v.compiled[loc] = sch
	}
	v.mu.Unlock()

	err := sch.Validate(value)
	var ve *jsonschema.ValidationError
	if errors.As(err, &ve) {
		// The first line only names the schema; the causes say what is wrong.
		msg := ve.Error()
		if _, rest, ok := strings.Cut(msg, "\n"); ok {
			msg = rest
		}
		return fmt.Errorf("body doesn't match %s:\n%s", name, msg)
	}
	return err
}

// schemaName shortens a "#/components/schemas/X" reference to X.
func schemaName(ref string) string {
	_, name, ok := strings.Cut(ref, "#/components/schemas/")
	if !ok {
		return ref
	}
	return name
}

// pointer builds a "#/a/b" JSON pointer, escaping each token.
func pointer(tokens ...string) string {
	var sb strings.Builder
	sb.WriteString("#")
	for _, t := range tokens {
		sb.WriteString("/")
		sb.WriteString(escape(t))
	}
	return sb.String()
}

// escape escapes a JSON pointer token for use in a URL fragment.
func escape(token string) string {
	token = strings.NewReplacer("~", "~0", "/", "~1").Replace(token)
	return url.PathEscape(token)
}

// decode turns a body into the JSON value its schema describes.
func decode(mediaType string, body []byte) (any, error) {
	switch {
	case mediaType == "application/json" || strings.HasSuffix(mediaType, "+json"):
		return jsonschema.UnmarshalJSON(bytes.NewReader(body))
	case mediaType == "application/x-ndjson":
		lines := []any{}
		sc := bufio.NewScanner(bytes.NewReader(body))
		sc.Buffer(make([]byte, 0, 64*1024), len(body)+1)
		for n := 1; sc.Scan(); n++ {
			line := bytes.TrimSpace(sc.Bytes())
			if len(line) == 0 {
				continue
			}
			v, err := jsonschema.UnmarshalJSON(bytes.NewReader(line))
			if err != nil {
				return nil, fmt.Errorf("line %d: %v", n, err)
			}
			lines = append(lines, v)
		}
		return lines, sc.Err()
	case strings.HasPrefix(mediaType, "text/"):
		return string(body), nil
	}
	return nil, fmt.Errorf("apitest cannot decode %s", mediaType)
}

// yamlToJSON converts the document to JSON with the YAML reader kin-openapi
// itself uses, so both see the same document.
func yamlToJSON(data []byte) ([]byte, error) {
	return yaml.YAMLToJSON(data)
}

// paramFormats are strict validators for the formats of parameters and
// headers, which kin-openapi checks; the library's defaults only match
// shapes (a 2026-02-31 date would pass them).
var paramFormats = map[string]openapi3.StringFormatValidator{
	"uuid":      openapi3.NewRegexpFormatValidator(openapi3.FormatOfStringForUUIDOfRFC9562),
	"date":      openapi3.NewCallbackValidator(func(s string) error { return validDate(s) }),
	"date-time": openapi3.NewCallbackValidator(func(s string) error { return validDateTime(s) }),
}

var dateTimeShape = regexp.MustCompile(openapi3.FormatOfStringDateTime)

func validDate(v any) error {
	s, ok := v.(string)
	if !ok {
		return nil
	}
	if _, err := time.Parse(time.DateOnly, s); err != nil {
		return fmt.Errorf("not a YYYY-MM-DD date")
	}
	return nil
}

// validDateTime accepts RFC 3339 date-times as Go's time package reads them
// (upper-case T and Z, a real calendar date).
func validDateTime(v any) error {
	s, ok := v.(string)
	if !ok {
		return nil
	}
	if !dateTimeShape.MatchString(s) {
		return fmt.Errorf("not an RFC 3339 date-time")
	}
	if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
		return fmt.Errorf("not an RFC 3339 date-time: %v", err)
	}
	return nil
}

func validIP(v any, v4 bool) error {
	s, ok := v.(string)
	if !ok {
		return nil
	}
	addr, err := netip.ParseAddr(s)
	if err != nil || addr.Zone() != "" || addr.Is4() != v4 {
		if v4 {
			return fmt.Errorf("not an IPv4 address")
		}
		return fmt.Errorf("not an IPv6 address")
	}
	return nil
}

// describe flattens kin-openapi's (multi-)errors into one line each. It
// looks at each level's own type (not errors.As, which would jump past the
// parameter that gives the failure its context).
func describe(err error) string {
	switch e := err.(type) {
	case openapi3.MultiError:
		parts := make([]string, 0, len(e))
		for _, inner := range e {
			parts = append(parts, describe(inner))
		}
		return strings.Join(parts, "\n")
	case *openapi3filter.ResponseError:
		if e.Err == nil {
			return e.Reason
		}
		return e.Reason + ": " + describe(e.Err)
	case *openapi3filter.RequestError:
		prefix := e.Reason
		if e.Parameter != nil {
			prefix = strings.TrimSuffix(fmt.Sprintf("parameter %q in %s: %s", e.Parameter.Name, e.Parameter.In, e.Reason), ": ")
		}
		if e.Err == nil {
			return prefix
		}
		if prefix == "" {
			return describe(e.Err)
		}
		return prefix + ": " + describe(e.Err)
	case *openapi3.SchemaError:
		reason := strings.ReplaceAll(e.Reason, "jsonschema validation failed with 'https://example.com/schema.json#'\n", "")
		if ptr := e.JSONPointer(); len(ptr) > 0 {
			return fmt.Sprintf("at /%s: %s", strings.Join(ptr, "/"), reason)
		}
		return reason
	}
	return err.Error()
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}

// excerpt shows the content type and the start of a body for a message.
func excerpt(h http.Header, body []byte) string {
	const max = 2048
	b := string(body)
	if len(b) > max {
		b = b[:max] + fmt.Sprintf("… (%d bytes)", len(body))
	}
	return fmt.Sprintf("  Content-Type: %q\n  body: %s", h.Get("Content-Type"), b)
}
