package console

import (
	"bytes"
	"encoding/json"
	"html/template"
	"net/url"
	"strconv"
	"strings"
	"time"

	"kubernaut.ai/datastorage/internal/audit"
)

// pageNames are the pages; each is templates/<name>.tmpl on the layout.
var pageNames = []string{"index", "events", "event", "timeline", "dashboards", "integrity", "signin", "error",
	"workflows", "workflow", "search", "history"}

var funcs = template.FuncMap{
	"clock": func(t audit.Time) string { return t.Std().UTC().Format("2006-01-02 15:04:05.000") },
	"clockp": func(t *audit.Time) string {
		if t == nil {
			return ""
		}
		return t.Std().UTC().Format("2006-01-02 15:04:05.000")
	},
	"json": colourJSON,
	"score": func(f *float64) string {
		if f == nil {
			return "–"
		}
		return strconv.FormatFloat(*f, 'f', 2, 64)
	},
	"join": strings.Join,
	"dict": func(kv ...any) map[string]any {
		m := make(map[string]any, len(kv)/2)
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	},
	"pathesc": url.PathEscape,
	"duration": func(ms int64) string {
		return (time.Duration(ms) * time.Millisecond).String()
	},
	"deref": func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	},
	"derefi": func(p *int32) int32 {
		if p == nil {
			return 0
		}
		return *p
	},
}

func parsePages() map[string]*template.Template {
	out := make(map[string]*template.Template, len(pageNames))
	for _, name := range pageNames {
		out[name] = template.Must(template.New("layout").Funcs(funcs).ParseFS(templateFS,
			"templates/layout.tmpl", "templates/"+name+".tmpl"))
	}
	return out
}

// colourJSON indents raw JSON and wraps its tokens in spans (key, string,
// number, literal) for the stylesheet to colour. Every piece of text is
// escaped: event data is whatever a client sent.
func colourJSON(raw json.RawMessage) template.HTML {
	var ind bytes.Buffer
	if json.Indent(&ind, raw, "", "  ") != nil {
		return template.HTML(template.HTMLEscapeString(string(raw)))
	}
	src := ind.String()
	var b strings.Builder
	for i := 0; i < len(src); {
		ch := src[i]
		switch {
		case ch == '"':
			j := i + 1
			for j < len(src) && src[j] != '"' {
				if src[j] == '\\' {
					j++
				}
				j++
			}
			j = min(j+1, len(src))
			class := "s"
			if rest := strings.TrimLeft(src[j:], " "); strings.HasPrefix(rest, ":") {
				class = "k"
			}
			b.WriteString(`<span class="j` + class + `">` + template.HTMLEscapeString(readable(src[i:j])) + `</span>`)
			i = j
		case ch == '-' || (ch >= '0' && ch <= '9'):
			j := i + 1
			for j < len(src) && strings.IndexByte("0123456789.eE+-", src[j]) >= 0 {
				j++
			}
			b.WriteString(`<span class="jn">` + template.HTMLEscapeString(src[i:j]) + `</span>`)
			i = j
		case strings.HasPrefix(src[i:], "true"), strings.HasPrefix(src[i:], "null"):
			b.WriteString(`<span class="jl">` + src[i:i+4] + `</span>`)
			i += 4
		case strings.HasPrefix(src[i:], "false"):
			b.WriteString(`<span class="jl">false</span>`)
			i += 5
		default:
			b.WriteString(template.HTMLEscapeString(string(ch)))
			i++
		}
	}
	return template.HTML(b.String())
}

// readable re-encodes a JSON string token without the \u003c-style escapes
// of < > & that encoders add for HTML safety: the page escapes them itself,
// and a person should read <script> as <script>.
func readable(tok string) string {
	var v string
	if json.Unmarshal([]byte(tok), &v) != nil {
		return tok
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if enc.Encode(v) != nil {
		return tok
	}
	return strings.TrimSuffix(b.String(), "\n")
}
