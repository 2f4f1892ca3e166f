package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// What the SubjectAccessReviews ask about (CONTRACT §11): RBAC rules on
// this Service object grant access to the API.
const (
	ServiceResource = "services"
	ServiceName     = "data-storage-service"
)

// Defaults for KubernetesOptions.
const (
	DefaultCacheTTL    = 30 * time.Second
	DefaultCacheSize   = 10_000
	DefaultCallTimeout = 5 * time.Second
)

// KubernetesOptions configure NewKubernetes.
type KubernetesOptions struct {
	// Cluster is how to reach the Kubernetes API (see LoadCluster).
	Cluster Cluster
	// Namespace is the namespace of the data-storage-service Service the
	// SubjectAccessReviews ask about. Required.
	Namespace string
	// CacheTTL is how long a positive answer is reused: a valid token, an
	// allowed verb. Zero means DefaultCacheTTL; negative disables the cache.
	// Refusals are never cached, so a grant takes effect at once and a
	// revocation within CacheTTL.
	CacheTTL time.Duration
	// CacheSize bounds the number of tokens remembered; zero means
	// DefaultCacheSize.
	CacheSize int
	// Timeout bounds each call to the Kubernetes API; zero means
	// DefaultCallTimeout.
	Timeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Kubernetes authorizes bearer tokens with the Kubernetes API (auth.mode
// kubernetes): a TokenReview says who the token belongs to, then one
// SubjectAccessReview per verb says whether that user may use it on the
// data-storage-service Service. Every request needs verb get; writes need
// create as well, legal holds update.
//
// The service's own service account needs to create tokenreviews and
// subjectaccessreviews (the system:auth-delegator ClusterRole grants both).
// When the API cannot be asked, or refuses this service's own calls,
// Authorize returns ErrUnavailable: the caller is not at fault and should
// retry.
type Kubernetes struct {
	client    *http.Client
	token     func() (string, error)
	server    string
	namespace string
	timeout   time.Duration
	now       func() time.Time
	cache     *reviewCache
}

// NewKubernetes checks the options and builds the client. It does not call
// the API.
func NewKubernetes(o KubernetesOptions) (*Kubernetes, error) {
	if o.Namespace == "" {
		return nil, errors.New("auth: kubernetes mode needs a namespace")
	}
	client, token, err := o.Cluster.client()
	if err != nil {
		return nil, fmt.Errorf("auth: Kubernetes API (%s): %w", o.Cluster.Source, err)
	}
	if o.CacheTTL == 0 {
		o.CacheTTL = DefaultCacheTTL
	}
	if o.CacheSize <= 0 {
		o.CacheSize = DefaultCacheSize
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultCallTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Kubernetes{
		client:    client,
		token:     token,
		server:    strings.TrimSuffix(o.Cluster.Server, "/"),
		namespace: o.Namespace,
		timeout:   o.Timeout,
		now:       o.Now,
		cache:     &reviewCache{ttl: o.CacheTTL, max: o.CacheSize, entries: map[[sha256.Size]byte]*reviewEntry{}},
	}, nil
}

// Authorize implements the kubernetes mode.
func (k *Kubernetes) Authorize(ctx context.Context, token string, verb Verb) (Identity, error) {
	if token == "" {
		return Identity{}, fmt.Errorf("%w: no bearer token", ErrUnauthenticated)
	}
	if !verb.Valid() {
		return Identity{}, fmt.Errorf("%w: unknown verb %q", ErrForbidden, verb)
	}
	key := sha256.Sum256([]byte(token))
	e := k.cache.get(key, k.now())
	if e == nil {
		user, err := k.tokenReview(ctx, token)
		if err != nil {
			return Identity{}, err
		}
		e = k.cache.put(key, user, k.now())
	}
	verbs := []Verb{VerbGet}
	if verb != VerbGet {
		verbs = append(verbs, verb)
	}
	for _, v := range verbs {
		if k.cache.allowed(e, v) {
			continue
		}
		if err := k.accessReview(ctx, e.user, v); err != nil {
			return e.id, err
		}
		k.cache.allow(e, v)
	}
	return e.id, nil
}

// userInfo is the user a TokenReview names, passed on unchanged to the
// SubjectAccessReviews.
type userInfo struct {
	Username string              `json:"username"`
	UID      string              `json:"uid,omitempty"`
	Groups   []string            `json:"groups,omitempty"`
	Extra    map[string][]string `json:"extra,omitempty"`
}

// reviewRequest is what is sent: a review object with only its spec.
type reviewRequest struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Spec       any    `json:"spec"`
}

type tokenReviewSpec struct {
	Token string `json:"token"`
}

// tokenReview is the answer to a TokenReview.
type tokenReview struct {
	Status struct {
		Authenticated bool     `json:"authenticated"`
		User          userInfo `json:"user"`
		Error         string   `json:"error,omitempty"`
	} `json:"status"`
}

type resourceAttributes struct {
	Namespace string `json:"namespace"`
	Verb      string `json:"verb"`
	Group     string `json:"group"`
	Resource  string `json:"resource"`
	Name      string `json:"name"`
}

type accessReviewSpec struct {
	ResourceAttributes resourceAttributes  `json:"resourceAttributes"`
	User               string              `json:"user"`
	UID                string              `json:"uid,omitempty"`
	Groups             []string            `json:"groups,omitempty"`
	Extra              map[string][]string `json:"extra,omitempty"`
}

// accessReview is the answer to a SubjectAccessReview.
type accessReview struct {
	Status struct {
		Allowed         bool   `json:"allowed"`
		Denied          bool   `json:"denied,omitempty"`
		Reason          string `json:"reason,omitempty"`
		EvaluationError string `json:"evaluationError,omitempty"`
	} `json:"status"`
}

func (k *Kubernetes) tokenReview(ctx context.Context, token string) (userInfo, error) {
	var tr tokenReview
	in := reviewRequest{"authentication.k8s.io/v1", "TokenReview", tokenReviewSpec{Token: token}}
	if err := k.post(ctx, "/apis/authentication.k8s.io/v1/tokenreviews", in, &tr); err != nil {
		return userInfo{}, err
	}
	if !tr.Status.Authenticated {
		reason := tr.Status.Error
		if reason == "" {
			reason = "the TokenReview did not authenticate the token"
		}
		return userInfo{}, fmt.Errorf("%w: %s", ErrUnauthenticated, reason)
	}
	if tr.Status.User.Username == "" {
		return userInfo{}, fmt.Errorf("%w: the TokenReview named no user", ErrUnauthenticated)
	}
	return tr.Status.User, nil
}

func (k *Kubernetes) accessReview(ctx context.Context, u userInfo, verb Verb) error {
	var sar accessReview
	in := reviewRequest{"authorization.k8s.io/v1", "SubjectAccessReview", accessReviewSpec{
		ResourceAttributes: resourceAttributes{
			Namespace: k.namespace, Verb: string(verb), Resource: ServiceResource, Name: ServiceName,
		},
		User: u.Username, UID: u.UID, Groups: u.Groups, Extra: u.Extra,
	}}
	if err := k.post(ctx, "/apis/authorization.k8s.io/v1/subjectaccessreviews", in, &sar); err != nil {
		return err
	}
	if !sar.Status.Allowed {
		why := sar.Status.Reason
		if sar.Status.EvaluationError != "" {
			why = strings.TrimSpace(why + " (evaluation error: " + sar.Status.EvaluationError + ")")
		}
		if why == "" {
			why = "no RBAC rule allows it"
		}
		return fmt.Errorf("%w: %s may not %s %s/%s in namespace %s: %s",
			ErrForbidden, u.Username, verb, ServiceResource, ServiceName, k.namespace, why)
	}
	return nil
}

// post sends in as JSON and decodes the answer into out. Every failure is
// ErrUnavailable: it is never the caller's fault.
func (k *Kubernetes) post(ctx context.Context, path string, in, out any) error {
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, k.server+path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	bearer, err := k.token()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: Kubernetes API: %v", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%w: Kubernetes API: reading the answer: %v", ErrUnavailable, err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		hint := ""
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			hint = " (this service's own credentials are refused: it needs to create tokenreviews and subjectaccessreviews, e.g. through the system:auth-delegator ClusterRole)"
		}
		return fmt.Errorf("%w: Kubernetes API answered %d to POST %s%s: %s",
			ErrUnavailable, resp.StatusCode, path, hint, snippet(raw))
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%w: Kubernetes API: undecodable answer to POST %s: %v", ErrUnavailable, path, err)
	}
	return nil
}

func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// reviewCache remembers positive answers per token (by its SHA-256 digest,
// so the cache holds no tokens): who it is and which verbs were allowed.
// Each entry expires ttl after its TokenReview, verbs included. At max
// entries, expired entries are dropped and, if that is not enough, an
// arbitrary one; the cost of a wrong eviction is one more TokenReview.
type reviewCache struct {
	ttl time.Duration
	max int

	mu      sync.Mutex
	entries map[[sha256.Size]byte]*reviewEntry
}

type reviewEntry struct {
	user    userInfo
	id      Identity
	expires time.Time
	verbs   map[Verb]bool // guarded by reviewCache.mu
}

func (c *reviewCache) get(key [sha256.Size]byte, now time.Time) *reviewEntry {
	if c.ttl < 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[key]
	if e == nil || !now.Before(e.expires) {
		return nil
	}
	return e
}

// put makes an entry for a freshly reviewed token. With the cache disabled
// the entry is returned but not kept.
func (c *reviewCache) put(key [sha256.Size]byte, u userInfo, now time.Time) *reviewEntry {
	e := &reviewEntry{
		user:    u,
		id:      Identity{Name: u.Username, User: !strings.HasPrefix(u.Username, ServiceAccountPrefix)},
		expires: now.Add(c.ttl),
		verbs:   map[Verb]bool{},
	}
	if c.ttl < 0 {
		return e
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		for k, old := range c.entries {
			if !now.Before(old.expires) {
				delete(c.entries, k)
			}
		}
		for k := range c.entries {
			if len(c.entries) < c.max {
				break
			}
			delete(c.entries, k)
		}
	}
	c.entries[key] = e
	return e
}

func (c *reviewCache) allowed(e *reviewEntry, v Verb) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return e.verbs[v]
}

func (c *reviewCache) allow(e *reviewEntry, v Verb) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e.verbs[v] = true
}

// size is the number of entries, for tests and metrics.
func (c *reviewCache) size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
