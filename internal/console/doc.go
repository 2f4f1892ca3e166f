// Package console is the audit console: server-rendered pages for people
// (auditors, on-call engineers, platform owners) over the same API that
// programs use, served at /console/ on the API port.
//
// # How it reads and writes
//
// The console is a client of the API, in process: every page turns into one
// or two requests to the [http.Handler] of package httpapi, carrying the
// signed-in caller's bearer token. It therefore reads through exactly the
// paths the API reads through (package query), and every action is
// authorized by the API's own guard with the caller's verbs: a button the
// console hides for a get-only token would be refused with 403 anyway. The
// console never imports the store.
//
// # Sign-in and safety
//
// With authentication on (auth.mode static or kubernetes) a person signs in
// by pasting a bearer token; the console checks it with the API's
// [Authorizer] and keeps it in an HttpOnly, SameSite=Strict cookie (Secure
// under TLS) that expires after [SessionTTL]. With auth.mode none there is
// no sign-in.
//
// Every page carries a Content-Security-Policy that allows only the
// console's own stylesheet (no script at all: the console works without
// JavaScript), frame-ancestors 'none', nosniff and a referrer policy that sends no
// address to another site. Every form
// that changes something is a POST with a CSRF token (a random value in a
// cookie that must be echoed in the form: it works across replicas without
// shared state) and an Origin check. Everything that came from an event is
// escaped by html/template, and event data is shown as text.
//
// # Pictures
//
// The dashboards are SVG drawn on the server ([BarChart], [StackedColumns]),
// each with a table of the same numbers beside it for screen readers and for
// copying.
package console
