// Package auth decides who an API caller is and what it may do (CONTRACT
// §11), and keeps the API port's TLS certificate current.
//
// A caller presents a bearer token. An Authorizer turns the token and the
// verb of the route (CONTRACT §1: get, create, update) into an Identity, or
// refuses it with one of three errors, which the HTTP layer maps to its
// answers:
//
//   - ErrUnauthenticated (401): no token, or a token nobody issued;
//   - ErrForbidden (403): a known caller without the verb;
//   - ErrUnavailable (503): the authority could not be asked (the Kubernetes
//     API is down); the caller should retry.
//
// Two Authorizers exist:
//
//   - Static reads tokens, each with its verbs, from a YAML file, and
//     re-reads it when it changes (see NewStatic). A token is allowed exactly
//     the verbs listed for it.
//   - Kubernetes asks the Kubernetes API: a TokenReview authenticates the
//     token, then SubjectAccessReviews on resource `services`, name
//     `data-storage-service`, in the configured namespace, check verb `get`
//     for every request plus the route's verb when it is create or update.
//     Positive answers are cached briefly (see NewKubernetes).
//
// Mode "none" needs no Authorizer: the HTTP layer serves without one.
//
// CertReloader serves the TLS certificate of the API port and picks up a
// replaced certificate without a restart.
//
// This package speaks the Kubernetes JSON API over net/http itself rather
// than importing client-go, whose dependency tree is far larger than the two
// calls used here.
package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Verb is what a request does, as named by CONTRACT §1 and by the
// Kubernetes RBAC rules that grant it.
type Verb string

// The verbs of CONTRACT §1.
const (
	VerbGet    Verb = "get"
	VerbCreate Verb = "create"
	VerbUpdate Verb = "update"
)

// Valid reports whether v is one of the three verbs.
func (v Verb) Valid() bool { return v == VerbGet || v == VerbCreate || v == VerbUpdate }

// ServiceAccountPrefix starts the user name of every Kubernetes service
// account.
const ServiceAccountPrefix = "system:serviceaccount:"

// Identity is an authenticated caller.
type Identity struct {
	// Name is the caller's name: the Kubernetes user name (for a service
	// account "system:serviceaccount:<namespace>:<name>"), or the name of a
	// static token.
	Name string
	// User is true for a person rather than a service. Events written by a
	// user record it as the actor (CONTRACT §2.1).
	User bool
}

// Errors an Authorizer returns, wrapped with details meant for logs.
var (
	// ErrUnauthenticated: the token is missing, unknown or expired (401).
	ErrUnauthenticated = errors.New("not authenticated")
	// ErrForbidden: the caller is known but may not use the verb (403).
	ErrForbidden = errors.New("forbidden")
	// ErrUnavailable: the caller could not be checked right now (503).
	ErrUnavailable = errors.New("authentication unavailable")
)

type ctxKey struct{}

// NewContext returns ctx carrying id.
func NewContext(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext returns the caller of the request whose context is ctx; ok is
// false when the request was not authenticated (auth mode none).
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(ctxKey{}).(Identity)
	return id, ok
}

// BearerToken extracts the token from an Authorization header value
// ("Bearer <token>", scheme case-insensitive). ok is false when the header is
// absent, uses another scheme, or carries no token.
func BearerToken(header string) (token string, ok bool) {
	scheme, rest, found := strings.Cut(strings.TrimSpace(header), " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(rest)
	return token, token != ""
}

// parseVerbs turns verb names into Verbs, refusing unknown ones.
func parseVerbs(names []string) ([]Verb, error) {
	out := make([]Verb, 0, len(names))
	for _, n := range names {
		v := Verb(n)
		if !v.Valid() {
			return nil, fmt.Errorf("unknown verb %q (want get, create or update)", n)
		}
		out = append(out, v)
	}
	return out, nil
}
