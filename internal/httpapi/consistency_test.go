package httpapi_test

import (
	"context"
	"net/http"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/httpapi"
	"kubernaut.ai/datastorage/internal/query"
	"kubernaut.ai/datastorage/internal/readroute"
)

// consistencySpy records the consistency each read's context carries.
type consistencySpy struct {
	next httpapi.Reader
	mu   sync.Mutex
	seen []readroute.Consistency
}

func (s *consistencySpy) record(ctx context.Context) {
	s.mu.Lock()
	s.seen = append(s.seen, readroute.ConsistencyFrom(ctx))
	s.mu.Unlock()
}

func (s *consistencySpy) List(ctx context.Context, p query.ListParams) (query.ListResult, error) {
	s.record(ctx)
	return s.next.List(ctx, p)
}

func (s *consistencySpy) Get(ctx context.Context, id uuid.UUID) (audit.Event, error) {
	s.record(ctx)
	return s.next.Get(ctx, id)
}

func (s *consistencySpy) last() readroute.Consistency {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[len(s.seen)-1]
}

// X-Consistency and ?consistency= reach the read as the store's router
// needs them; a bad value is a 400 naming the header or the parameter.
func TestReadConsistency(t *testing.T) {
	t.Parallel()
	spy := &consistencySpy{}
	b := setup(t, func(o *options) { o.reader = spy })
	spy.next = query.New(b.store)

	for _, tt := range []struct {
		name    string
		path    string
		headers []string
		want    readroute.Consistency
	}{
		{"default", "/api/v1/audit/events", nil, readroute.Eventual},
		{"header strong", "/api/v1/audit/events", []string{"X-Consistency", "strong"}, readroute.Strong},
		{"header eventual", "/api/v1/audit/events", []string{"X-Consistency", "eventual"}, readroute.Eventual},
		{"parameter strong", "/api/v1/audit/events?consistency=strong", nil, readroute.Strong},
		{"either says strong", "/api/v1/audit/events?consistency=eventual", []string{"X-Consistency", "strong"}, readroute.Strong},
		{"get by id", "/api/v1/audit/events/" + uuid.NewString() + "?consistency=strong", nil, readroute.Strong},
	} {
		r := b.do("GET", tt.path, nil, tt.headers...)
		assert.Contains(t, []int{http.StatusOK, http.StatusNotFound}, r.status, "%s: %s", tt.name, r.body)
		assert.Equal(t, tt.want, spy.last(), tt.name)
	}

	r := b.do("GET", "/api/v1/audit/events", nil, "X-Consistency", "Strong")
	assert.Equal(t, http.StatusBadRequest, r.status)
	assert.Equal(t, map[string]any{"X-Consistency": `must be strong or eventual, got "Strong"`}, r.fields(t))
	r = b.do("GET", "/api/v1/audit/timeline/rr-1?consistency=bounded", nil)
	assert.Equal(t, http.StatusBadRequest, r.status)
	assert.Equal(t, map[string]any{"consistency": `must be strong or eventual, got "bounded"`}, r.fields(t))
	r = b.do("GET", "/api/v1/audit/aggregations/success-rate?consistency=strong&consistency=eventual", nil)
	assert.Equal(t, http.StatusBadRequest, r.status)
	assert.Equal(t, map[string]any{"consistency": "must be given once"}, r.fields(t))
	// Writes ignore it: they always go to the primary.
	r = b.do("POST", "/api/v1/audit/events", event(nil), "X-Consistency", "whatever")
	assert.Contains(t, []int{http.StatusCreated, http.StatusAccepted}, r.status, "%s", r.body)
}
