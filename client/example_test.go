package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"time"

	"kubernaut.ai/datastorage/client"
)

// exampleServer stands in for Data Storage in the examples: it accepts
// batches and single events, and serves two pages of a query.
func exampleServer() *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/audit/events/batch", func(w http.ResponseWriter, r *http.Request) {
		var events []map[string]any
		_ = json.NewDecoder(r.Body).Decode(&events)
		ids := []any{}
		for _, e := range events {
			ids = append(ids, e["event_id"])
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]any{"event_ids": ids, "message": fmt.Sprintf("%d audit events created successfully", len(ids))})
	})
	mux.HandleFunc("POST /api/v1/audit/events", func(w http.ResponseWriter, r *http.Request) {
		var e map[string]any
		_ = json.NewDecoder(r.Body).Decode(&e)
		w.Header().Set("Content-Type", "application/problem+json")
		if e["event_type"] == "" {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"type":"https://kubernaut.ai/problems/validation-error","title":"Validation Error","status":400,
				"detail":"the event failed validation in 1 field(s); nothing was written","field_errors":{"event_type":"is required"}}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]any{"event_id": e["event_id"], "event_timestamp": "2026-11-22T10:00:00.000000Z",
			"message": "Audit event created successfully"})
	})
	mux.HandleFunc("GET /api/v1/audit/events", func(w http.ResponseWriter, r *http.Request) {
		page := `{"data":[{"event_id":"0190b6a4-0000-7000-8000-000000000003","event_type":"b"}],
			"pagination":{"limit":1,"offset":0,"total":2,"total_is_exact":true,"has_more":false}}`
		if r.URL.Query().Get("cursor") == "" {
			page = `{"data":[{"event_id":"0190b6a4-0000-7000-8000-000000000004","event_type":"a"}],
				"pagination":{"limit":1,"offset":0,"total":2,"total_is_exact":true,"has_more":true,"next_cursor":"page-2"}}`
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(page))
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.Header.Get("Authorization") != "Bearer token-from-file" {
			w.WriteHeader(http.StatusUnauthorized)
		}
		_, _ = w.Write([]byte(`{"status":"healthy"}`))
	})
	return httptest.NewServer(mux)
}

// A service sends its audit events through an emitter: Emit returns at
// once, the events go out in batches, and Close sends what is left.
func ExampleEmitter() {
	srv := exampleServer()
	defer srv.Close()

	c, err := client.New(srv.URL) // e.g. "http://data-storage.platform.svc:8080"
	if err != nil {
		log.Fatal(err)
	}
	em := client.NewEmitter(c, client.EmitterOptions{
		BatchSize:     100,
		FlushInterval: time.Second,
		Overflow:      client.OverflowBlock,
		MaxBlock:      50 * time.Millisecond,
	})
	// The host exports the emitter's counters with its own metrics
	// through the clientmetrics package.

	for step := 1; step <= 3; step++ {
		err := em.Emit(context.Background(), client.Event{
			Version:       "1.0",
			Type:          "workflowexecution.step.completed",
			Category:      client.CategoryWorkflowExecution,
			Action:        "completed",
			Outcome:       client.OutcomeSuccess,
			CorrelationID: "rr-2026-001",
			Data:          map[string]any{"step": step},
		})
		if err != nil {
			log.Print(err) // ErrBufferFull: dropped and counted, never blocks longer than MaxBlock
		}
	}

	// On shutdown, give the emitter a deadline to deliver what it holds.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := em.Close(ctx); err != nil {
		log.Print(err)
	}
	st := em.Stats()
	fmt.Printf("queued %d, sent %d, failed %d, dropped %d\n", st.Queued, st.Sent, st.Failed, st.Dropped)
	// Output: queued 3, sent 3, failed 0, dropped 0
}

// Errors are *client.Problem values: match them with errors.Is, read the
// field errors with errors.As.
func ExampleProblem() {
	srv := exampleServer()
	defer srv.Close()
	c, _ := client.New(srv.URL)

	_, err := c.WriteEvent(context.Background(), client.Event{
		Version:       "1.0",
		Category:      client.CategoryGateway,
		Action:        "received",
		Outcome:       client.OutcomeSuccess,
		CorrelationID: "rr-2026-001",
	})
	if errors.Is(err, client.ErrValidation) {
		var p *client.Problem
		errors.As(err, &p)
		keys := make([]string, 0, len(p.FieldErrors))
		for k := range p.FieldErrors {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Printf("%s: %s\n", k, p.FieldErrors[k])
		}
	}
	// Output: event_type: is required
}

// Events walks every page of a query, following the cursor.
func ExampleClient_Events() {
	srv := exampleServer()
	defer srv.Close()
	c, _ := client.New(srv.URL)

	q := client.Query{CorrelationID: "rr-2026-001", Since: "7d", Limit: 1}
	for ev, err := range c.Events(context.Background(), q) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(ev.ID, ev.Type)
	}
	// Output:
	// 0190b6a4-0000-7000-8000-000000000004 a
	// 0190b6a4-0000-7000-8000-000000000003 b
}

// WriteEvent writes one event and waits for the answer; the SDK gives it a
// UUIDv7 event_id, so sending it again cannot store it twice.
func ExampleClient_WriteEvent() {
	srv := exampleServer()
	defer srv.Close()
	c, _ := client.New(srv.URL)

	res, err := c.WriteEvent(context.Background(), client.Event{
		Version:       "1.0",
		Type:          "gateway.signal.received",
		Category:      client.CategoryGateway,
		Action:        "received",
		Outcome:       client.OutcomeSuccess,
		CorrelationID: "rr-2026-001",
		Data:          map[string]any{"signal": "OOMKilled"},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.ID.Version(), res.Queued, res.Timestamp.Format(time.RFC3339))
	// Output: VERSION_7 false 2026-11-22T10:00:00Z
}

// In Kubernetes, authenticate with the pod's projected service-account
// token; the client reads the file again when the kubelet rotates it.
func ExampleWithTokenFile() {
	srv := exampleServer()
	defer srv.Close()

	dir, _ := os.MkdirTemp("", "token")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "token") // in a pod: /var/run/secrets/kubernetes.io/serviceaccount/token
	_ = os.WriteFile(path, []byte("token-from-file\n"), 0o600)

	c, _ := client.New(srv.URL, client.WithTokenFile(path))
	fmt.Println(c.Live(context.Background()))
	// Output: <nil>
}
