// Package client is the Go SDK of the Data Storage service: a typed client for
// every endpoint of its API (api/openapi.yaml) and a buffered [Emitter] that
// services use to send their audit events without waiting for the network.
//
// # The typed client
//
// [New] returns a [Client] for one base URL. Each method is one HTTP call;
// none of them retries (the [Emitter] does). A 4xx or 5xx answer is returned
// as a *[Problem], the server's RFC 7807 document, which errors.Is matches
// against the sentinel errors of this package:
//
//	ev, err := c.GetEvent(ctx, id)
//	switch {
//	case errors.Is(err, client.ErrNotFound):
//		// no such event
//	case err != nil:
//		var p *client.Problem
//		if errors.As(err, &p) { log.Println(p.FieldErrors) }
//	}
//
// Lists page with an opaque cursor; [Client.Events] walks every page for you.
//
// One type, [Event], is an event both as written and as read: the fields the
// server assigns (hash, chain position, legal hold, commit time) are filled
// on read and never sent, so an event read back can be written again as it
// is (the write is idempotent by its id and timestamp). A read event's Data
// is the stored object as a json.RawMessage; [Event.DecodeData] decodes it.
//
// # The workflow catalog
//
// [Client.RegisterWorkflow], [Client.GetWorkflow], [Client.ListWorkflows]
// (and the [Client.Workflows] iterator), [Client.WorkflowVersions] and
// [Client.SetWorkflowStatus] manage the catalog of remediation workflows;
// [WorkflowID] derives a version's id from its name and version. An agent
// chooses a workflow with [Client.Discover]: the [Discovery] it returns
// holds the ranked results without content, and [Discovery.Select] has the
// server confirm that the choice was offered and is still active before it
// returns the version to run. A refused choice is a *[SelectionError].
//
// # Authentication
//
// The server may require a bearer token (auth.mode static or kubernetes).
// [WithToken] sends a fixed token; [WithTokenFile] reads it from a file and
// reads it again whenever the file changes, which is what a Kubernetes
// projected service-account token needs: the kubelet rotates it in place.
//
// # The emitter
//
// [NewEmitter] starts a background sender. [Emitter.Emit] puts an event in a
// bounded in-memory buffer and returns; the sender posts the buffer to the
// batch endpoint in batches (by size and by interval), retrying with
// exponential backoff and jitter while the server or the network fails.
// Every event gets its event_id (a UUIDv7) when it is emitted, so a retried
// batch can never store an event twice. [Emitter.Flush] and [Emitter.Close]
// wait, within a deadline, until what was emitted has been sent. See
// [EmitterOptions] for the overflow policy and the limits. [Emitter.Stats]
// returns its counters; the clientmetrics package (a module of its own, so
// that this one needs no Prometheus) exports them as Prometheus metrics.
//
// # Dependencies
//
// This package is a Go module of its own (kubernaut.ai/datastorage/client)
// that needs only the standard library and github.com/google/uuid: a
// service importing it inherits none of the server's dependencies. Its
// tests, which check every exchange against api/openapi.yaml and run
// against the real server, live in the server's module (test/sdk).
package client
