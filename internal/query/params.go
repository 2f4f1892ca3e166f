package query

import (
	"math"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/store"
)

// Defaults and bounds of list parameters (CONTRACT §5).
const (
	DefaultLimit = 50
	MaxLimit     = 1000
)

// ListParams is a parsed GET /audit/events request.
type ListParams struct {
	Filter    store.EventFilter
	Limit     int
	Offset    int
	Cursor    *Cursor
	Ascending bool
}

var (
	detailKeyRe = regexp.MustCompile(`^[a-zA-Z0-9_]+$`)
	daysRe      = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)d$`)
)

// ParseList reads the list parameters, naming every bad one in the returned
// field errors. now anchors relative times such as since=24h.
func ParseList(v url.Values, now time.Time) (ListParams, audit.FieldErrors) {
	fe := audit.FieldErrors{}
	p := ListParams{Limit: DefaultLimit}
	f := &p.Filter
	for _, m := range []struct {
		name string
		dst  *string
	}{
		{"correlation_id", &f.CorrelationID},
		{"event_type", &f.EventType},
		{"event_category", &f.EventCategory},
		{"event_outcome", &f.EventOutcome},
		{"severity", &f.Severity},
		{"namespace", &f.Namespace},
		{"cluster_id", &f.ClusterID},
		{"actor_id", &f.ActorID},
		{"resource_type", &f.ResourceType},
		{"resource_id", &f.ResourceID},
	} {
		*m.dst = v.Get(m.name)
	}
	var err error
	if s := v.Get("since"); s != "" {
		if f.Since, err = ParseTime(s, now); err != nil {
			fe["since"] = err.Error()
		}
	}
	if s := v.Get("until"); s != "" {
		if f.Until, err = ParseTime(s, now); err != nil {
			fe["until"] = err.Error()
		}
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && f.Since.After(f.Until) {
		fe["since"] = "must not be later than until"
	}
	key, hasKey := v.Get("detail_key"), v.Has("detail_key")
	_, hasValue := v.Get("detail_value"), v.Has("detail_value")
	switch {
	case hasKey != hasValue:
		if hasKey {
			fe["detail_value"] = "is required with detail_key"
		} else {
			fe["detail_key"] = "is required with detail_value"
		}
	case hasKey && !detailKeyRe.MatchString(key):
		fe["detail_key"] = "must match ^[a-zA-Z0-9_]+$"
	case hasKey:
		f.DetailKey, f.DetailValue = key, v.Get("detail_value")
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxLimit {
			fe["limit"] = "must be an integer between 1 and " + strconv.Itoa(MaxLimit)
		}
		p.Limit = n
	}
	if s := v.Get("offset"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			fe["offset"] = "must be an integer of at least 0"
		}
		p.Offset = n
	}
	switch o := v.Get("order"); o {
	case "", "desc":
	case "asc":
		p.Ascending = true
	default:
		fe["order"] = "must be asc or desc"
	}
	if s := v.Get("cursor"); s != "" {
		c, err := DecodeCursor(s)
		switch {
		case err != nil:
			fe["cursor"] = "is not a cursor this service issued; use pagination.next_cursor as given"
		case v.Get("offset") != "":
			fe["cursor"] = "cannot be combined with offset"
		case c.Ascending != p.Ascending:
			fe["cursor"] = "was issued for the other order; keep the order parameter of the first page"
		default:
			p.Cursor = &c
		}
	}
	if len(fe) > 0 {
		return ListParams{}, fe
	}
	return p, nil
}

// ParseTime reads a since/until value: "<n>d" (days, may be fractional) or a
// Go duration ("24h", "90m"), both meaning now minus that; an RFC 3339
// timestamp; "YYYY-MM-DDTHH:MM:SS" (UTC); or "YYYY-MM-DD" (UTC midnight).
func ParseTime(s string, now time.Time) (time.Time, error) {
	if m := daysRe.FindStringSubmatch(s); m != nil {
		days, err := strconv.ParseFloat(m[1], 64)
		// Beyond ~106,751 days the product does not fit a Duration, and the
		// conversion would yield an arbitrary time instead of an error.
		if d := days * float64(24*time.Hour); err == nil && d < math.MaxInt64 {
			return now.Add(-time.Duration(d)), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && !strings.HasPrefix(s, "-") {
		return now.Add(-d), nil
	}
	if t, err := audit.ParseTimestamp(s); err == nil {
		return t.UTC(), nil
	}
	for _, layout := range []string{"2006-01-02T15:04:05", time.DateOnly} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, errBadTime
}

type timeError string

func (e timeError) Error() string { return string(e) }

const errBadTime = timeError("must be <n>d, a duration such as 24h, an RFC 3339 timestamp, YYYY-MM-DDTHH:MM:SS or YYYY-MM-DD")
