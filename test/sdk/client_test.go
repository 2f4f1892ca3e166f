package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/client"
)

// The tests in this file run against the real API over a real database.

func TestWriteOneAndGetItBack(t *testing.T) {
	t.Parallel()
	srv := startLiveServer(t)
	c, tr := newSpecClient(t, srv.url)
	ctx := context.Background()

	dur := int64(1500)
	ev := newEvent("rr-write-one")
	ev.Namespace, ev.Severity, ev.DurationMS = "prod", "high", &dur
	ev.Data = map[string]any{"event_type": "workflowexecution.step.completed", "signal": "OOMKilled"}
	res, err := c.WriteEvent(ctx, ev)
	require.NoError(t, err)
	assert.False(t, res.Queued)
	assert.Equal(t, uuid.Version(7), res.ID.Version(), "the SDK assigns a UUIDv7")
	assert.WithinDuration(t, time.Now(), res.Timestamp, time.Minute)

	got, err := c.GetEvent(ctx, res.ID)
	require.NoError(t, err)
	assert.Equal(t, res.ID, got.ID)
	assert.Equal(t, "rr-write-one", got.CorrelationID)
	assert.Equal(t, client.CategoryWorkflowExecution, got.Category)
	assert.Equal(t, "prod", got.Namespace)
	assert.Equal(t, "high", got.Severity)
	assert.Equal(t, int64(1500), *got.DurationMS)
	assert.Equal(t, "service", got.ActorType, "server default")
	assert.Equal(t, "workflowexecution-service", got.ActorID, "server default")
	assert.Equal(t, 2555, got.RetentionDays)
	assert.Equal(t, got.Timestamp.UTC().Format(time.DateOnly), got.Date)
	assert.Regexp(t, "^[0-9a-f]{64}$", got.Hash)
	assert.Equal(t, "", got.PreviousHash, "the first event of its chain")
	require.IsType(t, json.RawMessage{}, got.Data, "a read event's data is the stored object as sent")
	assert.JSONEq(t, `{"event_type":"workflowexecution.step.completed","signal":"OOMKilled"}`, string(got.Data.(json.RawMessage)))
	var data struct{ Signal string }
	require.NoError(t, got.DecodeData(&data))
	assert.Equal(t, "OOMKilled", data.Signal)
	assert.False(t, got.CreatedAt.IsZero())

	// Idempotent: the same event (same id and timestamp) again is stored once.
	ev.ID, ev.Timestamp = res.ID, res.Timestamp
	again, err := c.WriteEvent(ctx, ev)
	require.NoError(t, err)
	assert.Equal(t, res.ID, again.ID)
	// One type for both directions: the event as read back is a valid write
	// of itself, stored once.
	again, err = c.WriteEvent(ctx, *got)
	require.NoError(t, err)
	assert.Equal(t, res.ID, again.ID)
	assert.Equal(t, 1, srv.count(t, "SELECT count(*) FROM audit_events WHERE event_id = $1", res.ID))
	assert.Equal(t, 4, tr.count())
}

func TestWriteBatchKeepsOrderAndParents(t *testing.T) {
	t.Parallel()
	srv := startLiveServer(t)
	c, _ := newSpecClient(t, srv.url)
	ctx := context.Background()

	parent := newEvent("rr-batch")
	parent.ID = client.NewEventID()
	child := newEvent("rr-batch")
	child.ParentEventID = &parent.ID
	child.Outcome = client.OutcomeFailure
	child.ErrorCode, child.ErrorMessage = "E42", "step failed"
	res, err := c.WriteEvents(ctx, []client.Event{parent, child, newEvent("rr-batch")})
	require.NoError(t, err)
	require.Len(t, res.IDs, 3)
	assert.Equal(t, parent.ID, res.IDs[0])
	assert.Equal(t, "3 audit events created successfully", res.Message)

	got, err := c.GetEvent(ctx, res.IDs[1])
	require.NoError(t, err)
	require.NotNil(t, got.ParentEventID)
	assert.Equal(t, parent.ID, *got.ParentEventID)
	require.NotNil(t, got.ParentEventDate)
	assert.Equal(t, "E42", got.ErrorCode)
}

func TestValidationErrorsAreTypedProblems(t *testing.T) {
	t.Parallel()
	srv := startLiveServer(t)
	c, _ := newSpecClient(t, srv.url)
	ctx := context.Background()

	bad := newEvent("rr-bad")
	bad.Category = "nonsense"
	bad.Version = ""
	_, err := c.WriteEvents(badRequest(ctx), []client.Event{newEvent("rr-bad"), bad})
	require.Error(t, err)
	assert.True(t, errors.Is(err, client.ErrValidation))
	assert.True(t, errors.Is(err, client.ErrBadRequest))
	assert.False(t, errors.Is(err, client.ErrNotFound))
	var p *client.Problem
	require.True(t, errors.As(err, &p))
	assert.Equal(t, 400, p.Status)
	assert.Equal(t, "validation-error", p.Slug())
	assert.Equal(t, "Validation Error", p.Title)
	assert.Contains(t, p.FieldErrors, "[1].event_category")
	assert.Contains(t, p.FieldErrors, "[1].version")
	assert.NotContains(t, p.FieldErrors, "[0].version")
	assert.NotEmpty(t, p.RequestID)
	assert.Contains(t, p.Error(), "[1].event_category")
	assert.Equal(t, 0, srv.count(t, "SELECT count(*) FROM audit_events"), "a batch is atomic")

	_, err = c.GetEvent(ctx, uuid.New())
	assert.True(t, errors.Is(err, client.ErrNotFound), "%v", err)
	assert.False(t, errors.Is(err, client.ErrServer))

	_, err = c.QueryEvents(badRequest(ctx), client.Query{DetailKey: "not valid!", DetailValue: "x"})
	require.True(t, errors.As(err, &p), "%v", err)
	assert.Contains(t, p.FieldErrors, "detail_key")
}

func TestQueryFiltersAndCursorIteration(t *testing.T) {
	t.Parallel()
	srv := startLiveServer(t)
	c, _ := newSpecClient(t, srv.url)
	ctx := context.Background()

	base := time.Now().UTC().Add(-30 * time.Minute).Truncate(time.Second)
	var batch []client.Event
	for i := range 57 {
		ev := newEvent("rr-query")
		ev.Timestamp = base.Add(time.Duration(i) * time.Second)
		ev.Namespace = []string{"ns-a", "ns-b"}[i%2]
		ev.ClusterID = "k1"
		ev.ActorID = "gateway-7"
		ev.ResourceType, ev.ResourceID = "Pod", fmt.Sprintf("pod-%d", i)
		ev.Severity = "warning"
		ev.Data = map[string]any{"n": i, "workflow_id": fmt.Sprintf("wf-%d", i%3)}
		if i%5 == 0 {
			ev.Outcome = client.OutcomeFailure
		}
		batch = append(batch, ev)
	}
	other := newEvent("rr-other")
	other.Category, other.Type = client.CategoryGateway, "gateway.signal.received"
	batch = append(batch, other)
	_, err := c.WriteEvents(ctx, batch)
	require.NoError(t, err)

	// Every filter of the contract, one at a time.
	for _, tc := range []struct {
		q    client.Query
		want int
	}{
		{client.Query{CorrelationID: "rr-query"}, 57},
		{client.Query{Type: "gateway.signal.received"}, 1},
		{client.Query{Category: client.CategoryWorkflowExecution}, 57},
		{client.Query{Outcome: client.OutcomeFailure}, 12},
		{client.Query{Severity: "warning"}, 57},
		{client.Query{Namespace: "ns-a"}, 29},
		{client.Query{ClusterID: "k1"}, 57},
		{client.Query{ActorID: "gateway-7"}, 57},
		{client.Query{ResourceType: "Pod"}, 57},
		{client.Query{ResourceID: "pod-3"}, 1},
		{client.Query{DetailKey: "workflow_id", DetailValue: "wf-1"}, 19},
		{client.Query{CorrelationID: "rr-query", Since: client.TimeBound(base.Add(50 * time.Second))}, 7},
		{client.Query{CorrelationID: "rr-query", Until: client.TimeBound(base.Add(9 * time.Second))}, 10},
		{client.Query{CorrelationID: "rr-query", Since: "1d", Until: "0s"}, 57},
	} {
		page, err := c.QueryEvents(ctx, tc.q)
		require.NoError(t, err, "%+v", tc.q)
		assert.EqualValues(t, tc.want, page.Pagination.Total, "%+v", tc.q)
	}

	// One page, then every page through the iterator, in both orders.
	page, err := c.QueryEvents(ctx, client.Query{CorrelationID: "rr-query", Limit: 10})
	require.NoError(t, err)
	assert.Len(t, page.Data, 10)
	assert.True(t, page.Pagination.HasMore)
	assert.NotEmpty(t, page.Pagination.NextCursor)
	assert.True(t, page.Data[0].Timestamp.After(page.Data[9].Timestamp), "newest first")

	for _, order := range []client.Order{client.OrderDesc, client.OrderAsc} {
		var seen []time.Time
		ids := map[uuid.UUID]bool{}
		for ev, err := range c.Events(ctx, client.Query{CorrelationID: "rr-query", Limit: 10, Order: order}) {
			require.NoError(t, err)
			seen = append(seen, ev.Timestamp)
			ids[ev.ID] = true
		}
		assert.Len(t, seen, 57, order)
		assert.Len(t, ids, 57, "no event twice (%s)", order)
		for i := 1; i < len(seen); i++ {
			if order == client.OrderAsc {
				assert.False(t, seen[i].Before(seen[i-1]))
			} else {
				assert.False(t, seen[i].After(seen[i-1]))
			}
		}
	}

	// Breaking out of the iterator stops fetching.
	n := 0
	for range c.Events(ctx, client.Query{CorrelationID: "rr-query", Limit: 5}) {
		n++
		if n == 7 {
			break
		}
	}
	assert.Equal(t, 7, n)

	// Offset paging, for compatibility.
	page, err = c.QueryEvents(ctx, client.Query{CorrelationID: "rr-query", Limit: 50, Offset: 50})
	require.NoError(t, err)
	assert.Len(t, page.Data, 7)
	assert.Equal(t, 50, page.Pagination.Offset)

	// An iterator that meets an error yields it once and stops.
	var errs []error
	for _, err := range c.Events(badRequest(ctx), client.Query{Since: "yesterday"}) {
		errs = append(errs, err)
	}
	require.Len(t, errs, 1)
	assert.True(t, errors.Is(errs[0], client.ErrValidation))
}

func TestNotificationsAgainstTheServer(t *testing.T) {
	t.Parallel()
	srv := startLiveServer(t)
	c, _ := newSpecClient(t, srv.url)
	ctx := context.Background()

	level := 2
	n := client.Notification{
		RemediationID:   "rr-n1",
		NotificationID:  "n-" + uuid.NewString(),
		Recipient:       "oncall@example.com",
		Channel:         client.ChannelSlack,
		MessageSummary:  "pod restarted",
		Status:          client.NotificationSent,
		EscalationLevel: &level,
	}
	res, err := c.WriteNotification(ctx, n)
	require.NoError(t, err)
	require.False(t, res.Queued)
	require.NotNil(t, res.Record)
	assert.Positive(t, res.Record.ID)
	assert.Equal(t, n.NotificationID, res.Record.NotificationID)
	assert.Equal(t, client.ChannelSlack, res.Record.Channel)
	assert.Equal(t, 2, *res.Record.EscalationLevel)
	assert.WithinDuration(t, time.Now(), res.Record.SentAt, time.Minute, "a zero SentAt is now")

	_, err = c.WriteNotification(ctx, n)
	assert.True(t, errors.Is(err, client.ErrConflict), "%v", err)

	n.NotificationID, n.Channel = "n-2", "carrier-pigeon"
	_, err = c.WriteNotification(badRequest(ctx), n)
	var p *client.Problem
	require.True(t, errors.As(err, &p), "%v", err)
	assert.Contains(t, p.FieldErrors, "channel")
}

func TestHealthAgainstTheServer(t *testing.T) {
	t.Parallel()
	srv := startLiveServer(t)
	c, _ := newSpecClient(t, srv.url)
	ctx := context.Background()
	require.NoError(t, c.Live(ctx))
	r, err := c.Ready(ctx)
	require.NoError(t, err)
	assert.True(t, r.Ready)
	assert.Equal(t, "ready", r.Status)
	assert.Equal(t, "up", r.Database)
}

func TestRequestIDIsSent(t *testing.T) {
	t.Parallel()
	srv := startLiveServer(t)
	c, _ := newSpecClient(t, srv.url)
	_, err := c.GetEvent(client.WithRequestID(context.Background(), "trace-123"), uuid.New())
	var p *client.Problem
	require.True(t, errors.As(err, &p))
	assert.Equal(t, "trace-123", p.RequestID)
}

func TestBaseURLWithPrefixAndEscaping(t *testing.T) {
	t.Parallel()
	f := newFakeServer(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		writeProblem(w, 404, `{"type":"https://kubernaut.ai/problems/not-found","title":"Not Found","status":404}`)
	})
	c, err := client.New(f.URL + "/datastorage/")
	require.NoError(t, err)
	_, err = c.Timeline(context.Background(), "rr/with slash?")
	assert.True(t, errors.Is(err, client.ErrNotFound))
	assert.Equal(t, "/datastorage/api/v1/audit/timeline/rr%2Fwith%20slash%3F", f.last().path)

	for _, bad := range []string{"", "localhost:8080", "ftp://x", "http://"} {
		_, err := client.New(bad)
		assert.Error(t, err, bad)
	}
}

func TestNonProblemErrorBodies(t *testing.T) {
	t.Parallel()
	f := newFakeServer(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Retry-After", "7")
		w.WriteHeader(http.StatusBadGateway)
		_, _ = w.Write([]byte("<html>bad gateway</html>"))
	})
	c, err := client.New(f.URL)
	require.NoError(t, err)
	_, err = c.LegalHolds(context.Background())
	var p *client.Problem
	require.True(t, errors.As(err, &p))
	assert.Equal(t, 502, p.Status)
	assert.Equal(t, "about:blank", p.Type)
	assert.Equal(t, "Bad Gateway", p.Title)
	assert.Contains(t, p.Detail, "bad gateway")
	assert.Equal(t, 7*time.Second, p.RetryAfter)
	assert.True(t, errors.Is(err, client.ErrServer))
	assert.True(t, p.Retryable())
}

func TestProblemSentinels(t *testing.T) {
	t.Parallel()
	for status, want := range map[int]error{
		401: client.ErrUnauthorized, 403: client.ErrForbidden, 404: client.ErrNotFound, 409: client.ErrConflict,
		413: client.ErrTooLarge, 429: client.ErrRateLimited, 503: client.ErrUnavailable, 500: client.ErrServer,
	} {
		p := &client.Problem{Status: status, Title: http.StatusText(status), Type: "about:blank"}
		assert.True(t, errors.Is(p, want), "%d", status)
		assert.False(t, errors.Is(p, client.ErrBadRequest), "%d", status)
	}
	p := &client.Problem{Status: 400, Type: "https://kubernaut.ai/problems/batch-size-exceeded"}
	assert.True(t, errors.Is(p, client.ErrBatchTooLarge))
	assert.True(t, errors.Is(p, client.ErrBadRequest))
	assert.False(t, errors.Is(p, client.ErrValidation))
	wrapped := fmt.Errorf("saving: %w", p)
	assert.True(t, errors.Is(wrapped, client.ErrBadRequest))

	// A slow body (408) is worth sending again; a body the server does not
	// read (415) is not.
	assert.True(t, (&client.Problem{Status: 408}).Retryable())
	assert.False(t, (&client.Problem{Status: 415}).Retryable())
	assert.False(t, (&client.Problem{Status: 400}).Retryable())
}

// TestEventEncoding pins the request form: omitted optional keys, the
// required ones always present, event_data never null.
func TestEventEncoding(t *testing.T) {
	t.Parallel()
	f := newFakeServer(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		writeJSON(w, 201, `{"event_id":"0190b6a4-0000-7000-8000-000000000001","event_timestamp":"2026-11-22T10:00:00.000000Z","message":"Audit event created successfully"}`)
	})
	c, _ := newSpecClient(t, f.URL)
	ev := newEvent("rr-enc")
	ev.Data = nil
	_, err := c.WriteEvent(context.Background(), ev)
	require.NoError(t, err)
	var sent map[string]any
	require.NoError(t, json.Unmarshal(f.last().body, &sent))
	assert.Equal(t, map[string]any{}, sent["event_data"])
	for _, k := range []string{"event_id", "version", "event_type", "event_timestamp", "event_category", "event_action", "event_outcome", "correlation_id"} {
		assert.Contains(t, sent, k)
	}
	for _, k := range []string{"actor_type", "namespace", "parent_event_id", "duration_ms", "retention_days", "is_sensitive", "severity"} {
		assert.NotContains(t, sent, k)
	}

	// The fields the server assigns are never sent, even when set (an event
	// read back and written again).
	placed := time.Now()
	ev.Date, ev.Hash, ev.PreviousHash, ev.HashAlgorithm, ev.ChainSeq = "2026-11-22", "aa", "bb", "sha256", 4
	ev.LegalHold, ev.LegalHoldReason, ev.LegalHoldPlacedBy, ev.LegalHoldPlacedAt = true, "case", "alice", &placed
	ev.ParentEventDate, ev.CreatedAt = &placed, placed
	_, err = c.WriteEvent(context.Background(), ev)
	require.NoError(t, err)
	sent = nil
	require.NoError(t, json.Unmarshal(f.last().body, &sent))
	for _, k := range []string{"event_date", "event_hash", "previous_event_hash", "hash_algorithm", "chain_seq", "legal_hold",
		"legal_hold_reason", "legal_hold_placed_by", "legal_hold_placed_at", "parent_event_date", "created_at"} {
		assert.NotContains(t, sent, k)
	}
	assert.Equal(t, "application/json", f.last().header.Get("Content-Type"))
	assert.True(t, strings.HasPrefix(f.last().header.Get("User-Agent"), "datastorage-go-client"))
}
