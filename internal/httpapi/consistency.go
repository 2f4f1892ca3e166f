package httpapi

import (
	"net/http"
	"strconv"
	"strings"

	"kubernaut.ai/datastorage/internal/readroute"
)

// consistencyHeader and consistencyParam let a client that must see its own
// writes ask for the primary on a read (CONTRACT §13, database.replicaUrl).
const (
	consistencyHeader = "X-Consistency"
	consistencyParam  = "consistency"
)

// withConsistency marks the context of each read under /api/ with the
// consistency the client asked for, in the X-Consistency header or the
// consistency query parameter (strong if either says strong). Anything but
// strong or eventual is refused with a 400 naming the header or parameter:
// a typo must not silently read stale data. Where a read goes is decided by
// the store's router, not here.
func withConsistency(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if (r.Method != http.MethodGet && r.Method != http.MethodHead) || !strings.HasPrefix(r.URL.Path, "/api/") {
			next.ServeHTTP(w, r)
			return
		}
		c := readroute.Eventual
		fields := map[string]string{}
		for _, src := range []struct {
			name   string
			values []string
		}{
			{consistencyHeader, r.Header.Values(consistencyHeader)},
			{consistencyParam, r.URL.Query()[consistencyParam]},
		} {
			if len(src.values) > 1 {
				fields[src.name] = "must be given once"
				continue
			}
			for _, v := range src.values {
				got, ok := readroute.ParseConsistency(v)
				if !ok {
					fields[src.name] = "must be strong or eventual, got " + quoteClip(v)
					continue
				}
				c = max(c, got)
			}
		}
		if len(fields) > 0 {
			writeProblem(w, r, kindValidation, "invalid read consistency", fields)
			return
		}
		if c == readroute.Strong {
			r = r.WithContext(readroute.WithConsistency(r.Context(), c))
		}
		next.ServeHTTP(w, r)
	})
}

// quoteClip quotes a client's value for a problem, bounded in size.
func quoteClip(v string) string {
	return strconv.Quote(clip(v, 64))
}
