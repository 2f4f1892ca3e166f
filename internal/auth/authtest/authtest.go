// Package authtest has test doubles for what internal/auth talks to: a fake
// Kubernetes API that answers TokenReviews and SubjectAccessReviews, and
// self-signed certificates. It is meant for _test.go files only.
package authtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"kubernaut.ai/datastorage/internal/auth"
)

// Kubernetes is a fake Kubernetes API server over TLS. It knows tokens (each
// naming a user) and RBAC grants (user → verbs on the data-storage-service
// Service in one namespace), and checks that every review it receives is
// shaped as CONTRACT §11 says, failing the test otherwise.
type Kubernetes struct {
	t         testing.TB
	srv       *httptest.Server
	namespace string
	// ServiceToken is the bearer token the fake expects on every call: the
	// data storage service's own credential.
	ServiceToken string

	mu             sync.Mutex
	users          map[string]User            // token → user
	grants         map[string]map[string]bool // username → verb → allowed
	down           bool
	tokenReviews   int
	accessReviews  int
	reviewedVerbs  []string
	reviewedGroups [][]string
}

// User is who a token belongs to.
type User struct {
	Name   string
	UID    string
	Groups []string
}

// NewKubernetes starts a fake API server expecting reviews for namespace; it
// stops when the test ends.
func NewKubernetes(t testing.TB, namespace string) *Kubernetes {
	t.Helper()
	k := &Kubernetes{
		t: t, namespace: namespace, ServiceToken: "datastorage-sa-token",
		users: map[string]User{}, grants: map[string]map[string]bool{},
	}
	k.srv = httptest.NewTLSServer(http.HandlerFunc(k.serve))
	t.Cleanup(k.srv.Close)
	return k
}

// Cluster is how internal/auth reaches this fake.
func (k *Kubernetes) Cluster() auth.Cluster {
	return auth.Cluster{
		Server: k.srv.URL,
		CAData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: k.srv.Certificate().Raw}),
		Token:  k.ServiceToken,
		Source: "fake Kubernetes API",
	}
}

// URL is the fake's base URL.
func (k *Kubernetes) URL() string { return k.srv.URL }

// CACert is the fake's certificate, PEM.
func (k *Kubernetes) CACert() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: k.srv.Certificate().Raw})
}

// AddToken makes token authenticate as u.
func (k *Kubernetes) AddToken(token string, u User) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.users[token] = u
}

// RemoveToken makes token unknown again.
func (k *Kubernetes) RemoveToken(token string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.users, token)
}

// Grant allows user the verbs on the Service.
func (k *Kubernetes) Grant(user string, verbs ...string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.grants[user] == nil {
		k.grants[user] = map[string]bool{}
	}
	for _, v := range verbs {
		k.grants[user][v] = true
	}
}

// SetDown makes every call fail with 503 (down) or succeed again.
func (k *Kubernetes) SetDown(down bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.down = down
}

// Close stops the server: calls then fail to connect.
func (k *Kubernetes) Close() { k.srv.Close() }

// Calls returns how many TokenReviews and SubjectAccessReviews were
// answered.
func (k *Kubernetes) Calls() (tokenReviews, accessReviews int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.tokenReviews, k.accessReviews
}

// ReviewedVerbs returns the verbs of the SubjectAccessReviews so far, in
// order.
func (k *Kubernetes) ReviewedVerbs() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.reviewedVerbs)
}

// ReviewedGroups returns the groups sent with each SubjectAccessReview so
// far, in order.
func (k *Kubernetes) ReviewedGroups() [][]string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.reviewedGroups)
}

func (k *Kubernetes) serve(w http.ResponseWriter, r *http.Request) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.down {
		http.Error(w, `{"kind":"Status","code":503}`, http.StatusServiceUnavailable)
		return
	}
	if r.Method != http.MethodPost {
		k.t.Errorf("fake Kubernetes API: %s %s, want POST", r.Method, r.URL.Path)
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	if got := r.Header.Get("Authorization"); got != "Bearer "+k.ServiceToken {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		k.t.Errorf("fake Kubernetes API: Content-Type %q", ct)
	}
	var req struct {
		APIVersion string          `json:"apiVersion"`
		Kind       string          `json:"kind"`
		Spec       json.RawMessage `json:"spec"`
		Status     json.RawMessage `json:"status"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		k.t.Errorf("fake Kubernetes API: undecodable body: %v", err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if req.Status != nil {
		k.t.Errorf("fake Kubernetes API: a review request carries a status: %s", req.Status)
	}
	switch r.URL.Path {
	case "/apis/authentication.k8s.io/v1/tokenreviews":
		k.tokenReview(w, req.APIVersion, req.Kind, req.Spec)
	case "/apis/authorization.k8s.io/v1/subjectaccessreviews":
		k.accessReview(w, req.APIVersion, req.Kind, req.Spec)
	default:
		k.t.Errorf("fake Kubernetes API: unexpected path %s", r.URL.Path)
		w.WriteHeader(http.StatusNotFound)
	}
}

func (k *Kubernetes) tokenReview(w http.ResponseWriter, apiVersion, kind string, raw json.RawMessage) {
	k.tokenReviews++
	if apiVersion != "authentication.k8s.io/v1" || kind != "TokenReview" {
		k.t.Errorf("fake Kubernetes API: TokenReview sent as %s %s", apiVersion, kind)
	}
	var spec struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(raw, &spec); err != nil || spec.Token == "" {
		k.t.Errorf("fake Kubernetes API: TokenReview spec without a token: %s", raw)
	}
	status := map[string]any{"authenticated": false, "error": "token not recognised"}
	if u, ok := k.users[spec.Token]; ok {
		status = map[string]any{"authenticated": true, "user": map[string]any{
			"username": u.Name, "uid": u.UID, "groups": u.Groups,
		}}
	}
	writeJSON(w, map[string]any{
		"apiVersion": apiVersion, "kind": kind,
		"spec":   map[string]any{"token": spec.Token},
		"status": status,
	})
}

func (k *Kubernetes) accessReview(w http.ResponseWriter, apiVersion, kind string, raw json.RawMessage) {
	k.accessReviews++
	if apiVersion != "authorization.k8s.io/v1" || kind != "SubjectAccessReview" {
		k.t.Errorf("fake Kubernetes API: SubjectAccessReview sent as %s %s", apiVersion, kind)
	}
	var spec struct {
		User               string   `json:"user"`
		UID                string   `json:"uid"`
		Groups             []string `json:"groups"`
		ResourceAttributes *struct {
			Namespace string `json:"namespace"`
			Verb      string `json:"verb"`
			Group     string `json:"group"`
			Resource  string `json:"resource"`
			Name      string `json:"name"`
		} `json:"resourceAttributes"`
		NonResourceAttributes any `json:"nonResourceAttributes"`
	}
	if err := json.Unmarshal(raw, &spec); err != nil {
		k.t.Errorf("fake Kubernetes API: SubjectAccessReview spec: %v", err)
	}
	ra := spec.ResourceAttributes
	switch {
	case ra == nil:
		k.t.Errorf("fake Kubernetes API: SubjectAccessReview without resourceAttributes: %s", raw)
		w.WriteHeader(http.StatusBadRequest)
		return
	case spec.NonResourceAttributes != nil:
		k.t.Errorf("fake Kubernetes API: SubjectAccessReview with nonResourceAttributes: %s", raw)
	case ra.Resource != "services" || ra.Name != "data-storage-service" || ra.Group != "" || ra.Namespace != k.namespace:
		k.t.Errorf("fake Kubernetes API: SubjectAccessReview for %s/%s (group %q) in namespace %q, want services/data-storage-service in %q",
			ra.Resource, ra.Name, ra.Group, ra.Namespace, k.namespace)
	case ra.Verb != "get" && ra.Verb != "create" && ra.Verb != "update":
		k.t.Errorf("fake Kubernetes API: SubjectAccessReview for verb %q", ra.Verb)
	case spec.User == "":
		k.t.Errorf("fake Kubernetes API: SubjectAccessReview without a user")
	}
	k.reviewedVerbs = append(k.reviewedVerbs, ra.Verb)
	k.reviewedGroups = append(k.reviewedGroups, spec.Groups)
	allowed := k.grants[spec.User][ra.Verb]
	status := map[string]any{"allowed": allowed}
	if !allowed {
		status["reason"] = "no RBAC rule matched"
	}
	writeJSON(w, map[string]any{"apiVersion": apiVersion, "kind": kind, "status": status})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(v)
}

// Cert is a generated self-signed certificate for localhost and 127.0.0.1.
type Cert struct {
	CertPEM, KeyPEM []byte
	Cert            *x509.Certificate
}

// NewCert makes a self-signed server certificate valid for localhost,
// 127.0.0.1 and ::1; commonName tells certificates apart.
func NewCert(t testing.TB, commonName string) Cert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return Cert{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		Cert:    cert,
	}
}

// Write writes the certificate and key to the two files.
func (c Cert) Write(t testing.TB, certFile, keyFile string) {
	t.Helper()
	if err := os.WriteFile(certFile, c.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, c.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
}

// Pool is a certificate pool trusting only c.
func (c Cert) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.Cert)
	return p
}
