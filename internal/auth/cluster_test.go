package auth_test

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/auth"
	"kubernaut.ai/datastorage/internal/auth/authtest"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestInClusterConfigReachesTheAPI(t *testing.T) {
	t.Parallel()
	fake := authtest.NewKubernetes(t, "kubernaut")
	fake.AddToken("gw-token", authtest.User{Name: gatewaySA})
	fake.Grant(gatewaySA, "get")
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "token"), fake.ServiceToken+"\n")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ca.crt"), fake.CACert(), 0o600))
	host, port, _ := strings.Cut(strings.TrimPrefix(fake.URL(), "https://"), ":")

	c, err := auth.InCluster(env(map[string]string{"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port}), dir)
	require.NoError(t, err)
	assert.Equal(t, fake.URL(), c.Server)
	k, err := auth.NewKubernetes(auth.KubernetesOptions{Cluster: c, Namespace: "kubernaut"})
	require.NoError(t, err)
	_, err = k.Authorize(context.Background(), "gw-token", auth.VerbGet)
	require.NoError(t, err)

	_, err = auth.InCluster(env(nil), dir)
	require.ErrorContains(t, err, "KUBERNETES_SERVICE_HOST")
	_, err = auth.InCluster(env(map[string]string{"KUBERNETES_SERVICE_HOST": "::1", "KUBERNETES_SERVICE_PORT": "443"}), t.TempDir())
	require.ErrorContains(t, err, "token")
	c, err = auth.InCluster(env(map[string]string{"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}), dir)
	require.NoError(t, err)
	assert.Equal(t, "https://[fd00::1]:443", c.Server)
}

func TestKubeconfig(t *testing.T) {
	t.Parallel()
	fake := authtest.NewKubernetes(t, "kubernaut")
	fake.AddToken("gw-token", authtest.User{Name: gatewaySA})
	fake.Grant(gatewaySA, "get")
	dir := t.TempDir()
	b64 := base64.StdEncoding.EncodeToString
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		writeFile(t, p, content)
		return p
	}
	write("ca.pem", string(fake.CACert()))
	write("sa.token", fake.ServiceToken)
	client := authtest.NewCert(t, "client")

	check := func(t *testing.T, path string) {
		t.Helper()
		c, err := auth.ClusterFromKubeconfig(path)
		require.NoError(t, err)
		assert.Equal(t, fake.URL(), c.Server)
		k, err := auth.NewKubernetes(auth.KubernetesOptions{Cluster: c, Namespace: "kubernaut"})
		require.NoError(t, err)
		_, err = k.Authorize(context.Background(), "gw-token", auth.VerbGet)
		require.NoError(t, err)
	}

	t.Run("inline data and token, current context", func(t *testing.T) {
		check(t, write("inline.yaml", `
apiVersion: v1
kind: Config
current-context: test
clusters:
- name: other
  cluster: {server: "https://example.invalid"}
- name: fake
  cluster:
    server: `+fake.URL()+`/
    certificate-authority-data: `+b64(fake.CACert())+`
users:
- name: sa
  user:
    token: `+fake.ServiceToken+`
    client-certificate-data: `+b64(client.CertPEM)+`
    client-key-data: `+b64(client.KeyPEM)+`
contexts:
- name: other
  context: {cluster: other, user: sa}
- name: test
  context: {cluster: fake, user: sa, namespace: kubernaut}
preferences: {}
`))
	})
	t.Run("relative files, only context", func(t *testing.T) {
		check(t, write("files.yaml", `
clusters:
- name: fake
  cluster: {server: "`+fake.URL()+`", certificate-authority: ca.pem}
users:
- name: sa
  user: {tokenFile: sa.token}
contexts:
- name: only
  context: {cluster: fake, user: sa}
`))
	})
	t.Run("KUBECONFIG wins over in-cluster", func(t *testing.T) {
		c, err := auth.LoadCluster(env(map[string]string{
			"KUBECONFIG":              filepath.Join(dir, "files.yaml") + string(os.PathListSeparator) + "/nonexistent",
			"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443",
		}))
		require.NoError(t, err)
		assert.Equal(t, fake.URL(), c.Server)
	})

	for _, tc := range []struct{ name, user, cluster, want string }{
		{"exec plugin", "{exec: {command: aws}}", "", "exec credential plugins are not supported"},
		{"auth provider", "{auth-provider: {name: oidc}}", "", "auth-provider plugins are not supported"},
		{"basic auth", "{username: u, password: p}", "", "basic authentication"},
		{"insecure", "{token: x}", ", insecure-skip-tls-verify: true", "insecure-skip-tls-verify is not supported"},
		{"proxy", "{token: x}", ", proxy-url: 'http://proxy:3128'", "proxy-url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := auth.ClusterFromKubeconfig(write(tc.name+".yaml", `
current-context: c
clusters: [{name: k, cluster: {server: "https://k:6443"`+tc.cluster+`}}]
users: [{name: u, user: `+tc.user+`}]
contexts: [{name: c, context: {cluster: k, user: u}}]
`))
			require.ErrorContains(t, err, tc.want)
		})
	}
	for name, tc := range map[string]struct{ content, want string }{
		"missing context": {"current-context: nope\ncontexts: []\n", `context "nope" not found`},
		"no context":      {"clusters: []\n", "no current-context"},
		"missing cluster": {"contexts: [{name: c, context: {cluster: k, user: u}}]\n", `cluster "k" not found`},
		"http server":     {"clusters: [{name: k, cluster: {server: 'http://k'}}]\ncontexts: [{name: c, context: {cluster: k}}]\n", "https://"},
		"bad base64":      {"clusters: [{name: k, cluster: {server: 'https://k', certificate-authority-data: '%%%'}}]\ncontexts: [{name: c, context: {cluster: k}}]\n", "not base64"},
		"missing user":    {"clusters: [{name: k, cluster: {server: 'https://k'}}]\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n", `user "u" not found`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := auth.ClusterFromKubeconfig(write(name+".yaml", tc.content))
			require.ErrorContains(t, err, tc.want)
		})
	}
}
