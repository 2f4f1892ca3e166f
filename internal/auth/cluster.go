package auth

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
)

// ServiceAccountDir is where Kubernetes mounts a pod's service account
// token, CA certificate and namespace.
const ServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// Cluster is how to reach the Kubernetes API: its address, how to trust it
// and how to authenticate to it. LoadCluster builds one from the
// environment.
type Cluster struct {
	// Server is the API base URL, e.g. https://10.96.0.1:443.
	Server string
	// CAData is the PEM bundle the API server's certificate must chain to;
	// empty means the system roots.
	CAData []byte
	// TLSServerName overrides the name checked in the server certificate.
	TLSServerName string
	// Token is a bearer token for this service's own calls.
	Token string
	// TokenFile holds the bearer token instead; it is re-read every minute,
	// as projected service account tokens are rotated by the kubelet.
	TokenFile string
	// CertData and KeyData are a PEM client certificate and key.
	CertData, KeyData []byte
	// Source says where this came from, for logs.
	Source string
}

// LoadCluster finds the Kubernetes API the way a pod expects to: from the
// kubeconfig file named by KUBECONFIG when that is set (useful outside a
// cluster), else from the in-cluster service account (KUBERNETES_SERVICE_HOST
// and KUBERNETES_SERVICE_PORT, and the token and CA in ServiceAccountDir).
// getenv is os.Getenv outside tests.
func LoadCluster(getenv func(string) string) (Cluster, error) {
	if kc := getenv("KUBECONFIG"); kc != "" {
		// Several files joined by the list separator are merged by kubectl;
		// here the first one is used.
		path, _, _ := strings.Cut(kc, string(os.PathListSeparator))
		return ClusterFromKubeconfig(path)
	}
	return inCluster(getenv, ServiceAccountDir)
}

// inCluster reads the service account mounted into the pod at dir.
func inCluster(getenv func(string) string, dir string) (Cluster, error) {
	host, port := getenv("KUBERNETES_SERVICE_HOST"), getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return Cluster{}, errors.New("not running in a Kubernetes pod (KUBERNETES_SERVICE_HOST/PORT unset) and KUBECONFIG is not set")
	}
	tokenFile := filepath.Join(dir, "token")
	if _, err := os.Stat(tokenFile); err != nil {
		return Cluster{}, fmt.Errorf("service account token: %w (is automountServiceAccountToken off?)", err)
	}
	ca, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return Cluster{}, fmt.Errorf("service account CA: %w", err)
	}
	return Cluster{
		Server:    "https://" + net.JoinHostPort(host, port),
		CAData:    ca,
		TokenFile: tokenFile,
		Source:    "in-cluster service account",
	}, nil
}

// kubeconfig is the part of a kubeconfig file this package understands.
type kubeconfig struct {
	CurrentContext string `yaml:"current-context"`
	Clusters       []struct {
		Name    string `yaml:"name"`
		Cluster struct {
			Server                   string `yaml:"server"`
			CertificateAuthority     string `yaml:"certificate-authority"`
			CertificateAuthorityData string `yaml:"certificate-authority-data"`
			TLSServerName            string `yaml:"tls-server-name"`
			InsecureSkipTLSVerify    bool   `yaml:"insecure-skip-tls-verify"`
			ProxyURL                 string `yaml:"proxy-url"`
		} `yaml:"cluster"`
	} `yaml:"clusters"`
	Users []struct {
		Name string `yaml:"name"`
		User struct {
			Token                 string    `yaml:"token"`
			TokenFile             string    `yaml:"tokenFile"`
			ClientCertificate     string    `yaml:"client-certificate"`
			ClientCertificateData string    `yaml:"client-certificate-data"`
			ClientKey             string    `yaml:"client-key"`
			ClientKeyData         string    `yaml:"client-key-data"`
			Exec                  yaml.Node `yaml:"exec"`
			AuthProvider          yaml.Node `yaml:"auth-provider"`
			Username              string    `yaml:"username"`
		} `yaml:"user"`
	} `yaml:"users"`
	Contexts []struct {
		Name    string `yaml:"name"`
		Context struct {
			Cluster string `yaml:"cluster"`
			User    string `yaml:"user"`
		} `yaml:"context"`
	} `yaml:"contexts"`
}

// ClusterFromKubeconfig reads the current context of a kubeconfig file (or
// its only context when current-context is unset).
//
// Supported: cluster server, certificate-authority(-data), tls-server-name;
// user token, tokenFile, client-certificate(-data) and client-key(-data).
// Relative file paths are relative to the kubeconfig's directory. Refused
// with an error, rather than silently ignored: exec and auth-provider
// plugins, basic auth, proxy-url and insecure-skip-tls-verify.
func ClusterFromKubeconfig(path string) (Cluster, error) {
	fail := func(format string, a ...any) (Cluster, error) {
		return Cluster{}, fmt.Errorf("kubeconfig %s: "+format, append([]any{path}, a...)...)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Cluster{}, fmt.Errorf("kubeconfig: %w", err)
	}
	var kc kubeconfig
	if err := yaml.Unmarshal(data, &kc); err != nil {
		return fail("%v", err)
	}
	name := kc.CurrentContext
	if name == "" {
		if len(kc.Contexts) != 1 {
			return fail("no current-context, and not exactly one context to use instead")
		}
		name = kc.Contexts[0].Name
	}
	var clusterName, userName string
	found := false
	for _, c := range kc.Contexts {
		if c.Name == name {
			clusterName, userName, found = c.Context.Cluster, c.Context.User, true
		}
	}
	if !found {
		return fail("context %q not found", name)
	}
	dir := filepath.Dir(path)
	resolve := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	// data reads an inline base64 value, else the file.
	load := func(what, inline, file string) ([]byte, error) {
		if inline != "" {
			b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(inline))
			if err != nil {
				return nil, fmt.Errorf("%s-data is not base64: %v", what, err)
			}
			return b, nil
		}
		if file == "" {
			return nil, nil
		}
		return os.ReadFile(resolve(file))
	}

	out := Cluster{Source: fmt.Sprintf("kubeconfig %s, context %s", path, name)}
	found = false
	for _, c := range kc.Clusters {
		if c.Name != clusterName {
			continue
		}
		found = true
		cl := c.Cluster
		switch {
		case cl.InsecureSkipTLSVerify:
			return fail("cluster %q: insecure-skip-tls-verify is not supported; give certificate-authority(-data)", clusterName)
		case cl.ProxyURL != "":
			return fail("cluster %q: proxy-url is not supported", clusterName)
		}
		u, err := url.Parse(cl.Server)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return fail("cluster %q: server must be an https:// URL, got %q", clusterName, cl.Server)
		}
		out.Server = strings.TrimSuffix(cl.Server, "/")
		out.TLSServerName = cl.TLSServerName
		if out.CAData, err = load("certificate-authority", cl.CertificateAuthorityData, cl.CertificateAuthority); err != nil {
			return fail("cluster %q: %v", clusterName, err)
		}
	}
	if !found {
		return fail("cluster %q not found", clusterName)
	}
	found = false
	for _, u := range kc.Users {
		if u.Name != userName {
			continue
		}
		found = true
		us := u.User
		switch {
		case !us.Exec.IsZero():
			return fail("user %q: exec credential plugins are not supported; use a token, tokenFile or client certificate", userName)
		case !us.AuthProvider.IsZero():
			return fail("user %q: auth-provider plugins are not supported; use a token, tokenFile or client certificate", userName)
		case us.Username != "":
			return fail("user %q: basic authentication is not supported", userName)
		}
		out.Token, out.TokenFile = us.Token, resolve(us.TokenFile)
		var err error
		if out.CertData, err = load("client-certificate", us.ClientCertificateData, us.ClientCertificate); err != nil {
			return fail("user %q: %v", userName, err)
		}
		if out.KeyData, err = load("client-key", us.ClientKeyData, us.ClientKey); err != nil {
			return fail("user %q: %v", userName, err)
		}
	}
	if !found && userName != "" {
		return fail("user %q not found", userName)
	}
	return out, nil
}

// client builds the HTTP client and the credential for calls to the API.
func (c Cluster) client() (*http.Client, func() (string, error), error) {
	if c.Server == "" {
		return nil, nil, errors.New("no Kubernetes API server address")
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.TLSServerName}
	if len(c.CAData) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(c.CAData) {
			return nil, nil, errors.New("the Kubernetes CA data holds no PEM certificate")
		}
		tc.RootCAs = pool
	}
	if len(c.CertData) > 0 || len(c.KeyData) > 0 {
		cert, err := tls.X509KeyPair(c.CertData, c.KeyData)
		if err != nil {
			return nil, nil, fmt.Errorf("client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	tr.MaxIdleConnsPerHost = 16
	token := func() (string, error) { return c.Token, nil }
	if c.TokenFile != "" {
		tf := &tokenFileCache{path: c.TokenFile}
		if _, err := tf.get(); err != nil {
			return nil, nil, err
		}
		token = tf.get
	}
	return &http.Client{Transport: tr}, token, nil
}

// tokenFileCache re-reads a token file once a minute: the kubelet rotates
// projected service account tokens well before they expire.
type tokenFileCache struct {
	path string
	mu   sync.Mutex
	tok  string
	read time.Time
}

func (t *tokenFileCache) get() (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tok != "" && time.Since(t.read) < time.Minute {
		return t.tok, nil
	}
	b, err := os.ReadFile(t.path)
	if err != nil {
		if t.tok != "" {
			// Keep the last one for another minute; it is valid for longer.
			t.read = time.Now()
			return t.tok, nil
		}
		return "", fmt.Errorf("token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("token file %s is empty", t.path)
	}
	t.tok, t.read = tok, time.Now()
	return tok, nil
}
