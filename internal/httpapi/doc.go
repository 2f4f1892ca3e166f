// Package httpapi is Data Storage's HTTP API: routes, middleware and the
// RFC 7807 problems that are its only error bodies. It holds no rules of
// its own; every decision is a domain package's (internal/audit decodes,
// internal/ingest writes, internal/query and internal/integrity read), and
// it never imports internal/store.
//
// # Building the API
//
// [New] takes a [Config] of interfaces, each declared here in the words
// the handlers need ([Ingester], [Reader], [TimelineReader], [Aggregator],
// [NotificationWriter], [Integrity], [Health], [Authorizer]), and returns an
// [API], an http.Handler:
//
//	api := httpapi.New(httpapi.Config{
//		Validator: validator,           // *audit.Validator
//		Ingest:    pipeline,            // *ingest.Pipeline
//		Reader:    query.New(st),       // the store, through the read domain
//		Health:    health,
//		Log:       log,
//	})
//	srv := &http.Server{Handler: api}
//
// cmd/datastorage's serve is the one place that fills every field; tests
// fill them with real services over a real store, or with fakes in unit
// tests.
//
// # A request's way through
//
// Every request passes the same middleware, outermost first: a request id
// (the client's X-Request-ID when it is sane, see [RequestID]), the
// request deadline, panic recovery, one log line and the HTTP metrics; then,
// for the routes under /api/, authentication, authorization and the rate
// limit. The probes (/healthz, /readyz and their older names) are never
// authenticated. Routes use net/http's method-and-path patterns; a path
// that matches no route, or a method a route does not allow, is a problem
// like any other (404, 405 with Allow).
//
// # Handlers and errors
//
// A handler reads the body within the configured limits, decodes it with
// the validator, calls one domain function and writes the answer. Errors
// become problems by what their domain package documents, tested with
// errors.Is and errors.As, never by looking at the store:
//
//   - field errors from internal/audit, and a missing parent
//     (*ingest.MissingParentsError): 400 validation-error naming every
//     failing field ([Problem].FieldErrors);
//   - query.ErrNotFound, integrity.ErrNotFound: 404 not-found;
//   - audit.ErrNotificationExists: 409 conflict;
//   - an outage (failure.ClassOf says Unavailable on a read; the
//     pipeline's ErrUnavailable, ErrBusy and ErrClosed on a write): 503 with
//     Retry-After; a write the spool took instead is a 202;
//   - anything else: 500 internal-error, logged at error level with the
//     request id, which the problem's detail repeats.
//
// The exchanges are checked against api/openapi.yaml by the tests
// (internal/apitest), so a handler cannot drift from the contract silently.
package httpapi
