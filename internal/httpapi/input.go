package httpapi

import (
	"mime"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"unicode/utf8"
)

// The checks of this file run once for every request to a route under
// /api/, after authentication and before the handler: what they refuse never
// reaches a handler, a domain package or the database, so no handler has to
// remember them.

// checkInput refuses a request whose text cannot be what the API stores or
// filters by (400, naming the parameter), or whose body is not plain JSON
// (415). It reports whether the request may go on.
func (a *API) checkInput(w http.ResponseWriter, r *http.Request, patternPath string) bool {
	var fe map[string]string
	if strings.Contains(patternPath, "{") || r.URL.RawQuery != "" {
		// Only then is there anything to check: a write has neither, and
		// the map would be made for nothing on every request.
		fe = map[string]string{}
		checkPathValues(r.URL.EscapedPath(), patternPath, fe)
		checkQuery(r.URL.RawQuery, fe)
	}
	if len(fe) > 0 {
		for k := range fe {
			a.metrics.validationFailure(k)
		}
		writeProblem(w, r, kindValidation, "invalid request parameters", fe)
		return false
	}
	if detail := unsupportedBody(r); detail != "" {
		writeProblem(w, r, kindUnsupportedMediaType, detail, nil)
		return false
	}
	return true
}

// badText says what is wrong with a parameter value, or "" when nothing
// is. PostgreSQL's text cannot hold NUL, and refuses bytes that are not
// UTF-8: reaching the database, either was a 500 and an ERROR log line that
// any reader could provoke at will.
func badText(s string) string {
	switch {
	case !utf8.ValidString(s):
		return "must be valid UTF-8"
	case strings.IndexByte(s, 0) >= 0:
		return "must not contain the NUL character"
	}
	return ""
}

// checkPathValues checks the wildcard segments ({name}) of the route's
// pattern path in the request's escaped path, recording faults under the
// wildcard's name.
func checkPathValues(escapedPath, patternPath string, fe map[string]string) {
	if !strings.Contains(patternPath, "{") {
		return
	}
	segs, pats := strings.Split(escapedPath, "/"), strings.Split(patternPath, "/")
	for i, p := range pats {
		if i >= len(segs) || !strings.HasPrefix(p, "{") {
			continue
		}
		name := strings.TrimSuffix(strings.Trim(p, "{}"), "...")
		v, err := url.PathUnescape(segs[i])
		if err != nil {
			fe[name] = "is not a valid URL path segment"
			continue
		}
		if msg := badText(v); msg != "" {
			fe[name] = msg
		}
	}
}

// checkQuery checks every query parameter, known or not: a value nobody
// reads is harmless, but a query string that cannot be text is not a
// request anyone meant to send. A parameter whose very name is bad is
// reported as "query".
func checkQuery(rawQuery string, fe map[string]string) {
	if rawQuery == "" {
		return
	}
	v, _ := url.ParseQuery(rawQuery) // the handlers read r.URL.Query(), which drops the same unparsable pairs
	names := make([]string, 0, len(v))
	for name := range v {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if msg := badText(name); msg != "" {
			fe["query"] = "parameter names " + msg
			continue
		}
		for _, val := range v[name] {
			if msg := badText(val); msg != "" {
				fe[name] = msg
				break
			}
		}
	}
}

// unsupportedBody says why a request's body is not one the API reads, or
// "" when it is fine. A request with a body must say it is JSON: with
// auth.mode none a web page could otherwise make any browser write events
// or place legal holds, as browsers send text/plain, form and multipart
// bodies cross-site without asking (CORS preflights only what is not one of
// those). Only application/json itself is accepted, not application/*+json:
// no client sends another, and each one accepted is one more type a filter
// in front must know. Compressed bodies are refused rather than decoded: no
// client of ours compresses, and a decoder would need its own bomb limit.
func unsupportedBody(r *http.Request) string {
	switch {
	case r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions:
		return "" // a body, if any, is never read
	case r.ContentLength == 0 && len(r.TransferEncoding) == 0:
		return "" // no body: the handler says what is missing
	}
	if ce := r.Header.Values("Content-Encoding"); len(ce) > 0 && !(len(ce) == 1 && strings.EqualFold(strings.TrimSpace(ce[0]), "identity")) {
		return "Content-Encoding " + strings.Join(ce, ", ") + " is not supported; send the body uncompressed"
	}
	ct := r.Header.Get("Content-Type")
	switch ct {
	case "":
		return "the request body needs Content-Type: application/json"
	case "application/json":
		return "" // what every client sends: no parse (it allocates a map) needed
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return "Content-Type " + clip(ct, 100) + " is not supported; send application/json"
	}
	for k, v := range params {
		if k != "charset" || !strings.EqualFold(v, "utf-8") {
			return "Content-Type parameter " + clip(k+"="+v, 100) + " is not supported; JSON is UTF-8"
		}
	}
	return ""
}

// clip bounds what a problem echoes of the client's input, so that a
// 100 KB URL or header is not sent back (twice) in an error.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
