package catalog

import (
	"context"
	"encoding/base64"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"kubernaut.ai/datastorage/internal/store"
)

// ListPage is one page of the workflow list (CONTRACT §15.3).
type ListPage struct {
	Workflows  []Workflow `json:"workflows"`
	Pagination Pagination `json:"pagination"`
}

// Pagination says whether more versions follow and where.
type Pagination struct {
	Limit      int    `json:"limit"`
	HasMore    bool   `json:"has_more"`
	NextCursor string `json:"next_cursor,omitempty"`
}

const (
	defaultListLimit = 50
	maxListLimit     = 1000
	cursorVersion    = 'w'
)

// encodeCursor is the opaque text of a list position: a version byte, the
// name, NUL (never in a name) and the version's sortable key, base64url.
func encodeCursor(k store.WorkflowKeyset) string {
	return base64.RawURLEncoding.EncodeToString([]byte(string(cursorVersion) + k.Name + "\x00" + k.VersionKey))
}

func decodeCursor(s string) (store.WorkflowKeyset, bool) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < 3 || b[0] != cursorVersion {
		return store.WorkflowKeyset{}, false
	}
	name, key, ok := strings.Cut(string(b[1:]), "\x00")
	return store.WorkflowKeyset{Name: name, VersionKey: key}, ok && name != "" && key != ""
}

// List returns a page of versions without content, filtered by the query
// parameters workflow_name, status, action_type, signal_type, latest,
// limit and cursor. Errors: *ValidationError naming the parameter,
// ErrUnavailable.
func (s *Service) List(ctx context.Context, q url.Values) (ListPage, error) {
	fe := fieldErrors{}
	f := store.WorkflowFilter{Name: q.Get("workflow_name"), Status: q.Get("status"),
		ActionType: q.Get("action_type"), SignalType: q.Get("signal_type"), Limit: defaultListLimit}
	if f.Status != "" && !slices.Contains([]string{StatusActive, StatusDisabled, StatusDeprecated, StatusArchived}, f.Status) {
		fe.add("status", "must be one of active, disabled, deprecated, archived")
	}
	switch q.Get("latest") {
	case "", "false":
	case "true":
		f.LatestOnly = true
	default:
		fe.add("latest", "must be true or false")
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > maxListLimit {
			fe.add("limit", "must be an integer from 1 to %d", maxListLimit)
		}
		f.Limit = n
	}
	if c := q.Get("cursor"); c != "" {
		k, ok := decodeCursor(c)
		if !ok {
			fe.add("cursor", "is not a cursor this list returned")
		}
		f.After = &k
	}
	if err := fe.err(); err != nil {
		return ListPage{}, err
	}
	limit := f.Limit
	f.Limit++ // one more tells whether a next page exists
	recs, err := s.store.ListWorkflows(ctx, f)
	if err != nil {
		return ListPage{}, storeErr("list", err)
	}
	page := ListPage{Pagination: Pagination{Limit: limit}}
	if len(recs) > limit {
		recs = recs[:limit]
		last := recs[limit-1]
		page.Pagination.HasMore = true
		page.Pagination.NextCursor = encodeCursor(store.WorkflowKeyset{Name: last.Name, VersionKey: last.VersionKey})
	}
	if page.Workflows, err = fromRecords(recs); err != nil {
		return ListPage{}, err
	}
	return page, nil
}
