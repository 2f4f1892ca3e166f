package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"

	"github.com/google/uuid"

	"kubernaut.ai/datastorage/client"
)

// An agent searches the catalog, picks a workflow and gets it to run only
// through Select, which has the server confirm the choice first.
func Example_discoverThenSelect() {
	offered := client.WorkflowID("increase-memory", "1.2.0")
	fake := &searchFake{offered: []uuid.UUID{offered}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fake.handle(w, r, body)
	}))
	defer srv.Close()

	c, err := client.New(srv.URL)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	d, err := c.Discover(ctx, client.SearchRequest{
		Context:       client.SearchContext{SignalType: "OOMKilled", Severity: "critical"},
		RemediationID: "rr-2026-001",
	})
	if err != nil {
		log.Fatal(err)
	}
	best, _ := d.Best()
	wf, err := d.Select(ctx, best.Workflow.WorkflowID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("run", wf.WorkflowID == offered, wf.Status)

	// A workflow the search did not offer is refused, and never fetched.
	_, err = d.Select(ctx, client.WorkflowID("scale-out", "1.0.0"))
	var rejected *client.SelectionError
	if errors.As(err, &rejected) {
		fmt.Println("refused:", rejected.Reason)
	}
	// Output:
	// run true active
	// refused: not_offered
}
