// Package deploy_test checks the Kubernetes manifests, the Prometheus rules,
// the Grafana dashboard and the Dockerfile of Data Storage.
//
// It is its own Go module (kubernaut.ai/datastorage/deploy) because it needs
// the kustomize API, the Kubernetes API types, the PromQL parser and the
// Dockerfile parser, none of which may reach the service's go.mod or binary.
// It imports the service's own configuration loader (internal/config, through
// a replace directive) to load the configuration each pod would see.
package deploy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// object is one rendered Kubernetes object, decoded strictly into its Go type.
type object struct {
	APIVersion, Kind, Name, Namespace string
	JSON                              []byte
	Typed                             any
}

func (o object) String() string {
	return fmt.Sprintf("%s %s/%s", o.Kind, o.Namespace, o.Name)
}

// rendered is the output of one kustomization.
type rendered struct {
	dir     string
	objects []object
}

// render builds the kustomization in dir (relative to deploy/) with the
// kustomize API, as `kubectl apply -k dir` would, and decodes every object
// strictly: a field its Go type does not know fails the test.
func render(t *testing.T, dir string) *rendered {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resMap, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	r := &rendered{dir: dir}
	for _, res := range resMap.Resources() {
		raw, err := res.MarshalJSON()
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		o := object{APIVersion: res.GetApiVersion(), Kind: res.GetKind(), Name: res.GetName(), Namespace: res.GetNamespace(), JSON: raw}
		typed, ok := newTyped(o.APIVersion, o.Kind)
		if !ok {
			t.Errorf("%s: %s (%s) is a kind these tests do not know; add its Go type to newTyped", dir, o, o.APIVersion)
			continue
		}
		if err := decodeStrict(raw, typed); err != nil {
			t.Errorf("%s: %s does not decode strictly into %T: %v", dir, o, typed, err)
			continue
		}
		o.Typed = typed
		r.objects = append(r.objects, o)
	}
	return r
}

// decodeStrict decodes JSON, failing on any field the target does not have.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after the object")
	}
	return nil
}

// decodeYAMLStrict is decodeStrict for YAML.
func decodeYAMLStrict(data []byte, v any) error {
	j, err := yaml.YAMLToJSON(data)
	if err != nil {
		return err
	}
	return decodeStrict(j, v)
}

// newTyped returns a pointer to the Go type of a kind.
func newTyped(apiVersion, kind string) (any, bool) {
	switch apiVersion + " " + kind {
	case "v1 Namespace":
		return &corev1.Namespace{}, true
	case "v1 ServiceAccount":
		return &corev1.ServiceAccount{}, true
	case "v1 Service":
		return &corev1.Service{}, true
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}, true
	case "v1 Secret":
		return &corev1.Secret{}, true
	case "v1 PersistentVolumeClaim":
		return &corev1.PersistentVolumeClaim{}, true
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}, true
	case "apps/v1 StatefulSet":
		return &appsv1.StatefulSet{}, true
	case "batch/v1 Job":
		return &batchv1.Job{}, true
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, true
	case "autoscaling/v2 HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}, true
	case "networking.k8s.io/v1 NetworkPolicy":
		return &networkingv1.NetworkPolicy{}, true
	case "rbac.authorization.k8s.io/v1 ClusterRole":
		return &rbacv1.ClusterRole{}, true
	case "rbac.authorization.k8s.io/v1 ClusterRoleBinding":
		return &rbacv1.ClusterRoleBinding{}, true
	case "rbac.authorization.k8s.io/v1 Role":
		return &rbacv1.Role{}, true
	case "rbac.authorization.k8s.io/v1 RoleBinding":
		return &rbacv1.RoleBinding{}, true
	case "monitoring.coreos.com/v1 ServiceMonitor":
		return &serviceMonitor{}, true
	case "monitoring.coreos.com/v1 PrometheusRule":
		return &prometheusRule{}, true
	case "route.openshift.io/v1 Route":
		return &route{}, true
	case "build.openshift.io/v1 BuildConfig":
		return &buildConfig{}, true
	case "image.openshift.io/v1 ImageStream":
		return &imageStream{}, true
	case "postgresql.cnpg.io/v1 Cluster":
		return &cnpgCluster{}, true
	}
	return nil, false
}

// serviceMonitor is the part of the Prometheus Operator's ServiceMonitor
// these manifests use (its Go types are a heavy module of their own). A
// field outside it fails the strict decoding: add it here deliberately.
type serviceMonitor struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		JobLabel          string               `json:"jobLabel,omitempty"`
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector *struct {
			Any        bool     `json:"any,omitempty"`
			MatchNames []string `json:"matchNames,omitempty"`
		} `json:"namespaceSelector,omitempty"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path,omitempty"`
			Scheme        string `json:"scheme,omitempty"`
			Interval      string `json:"interval,omitempty"`
			ScrapeTimeout string `json:"scrapeTimeout,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// prometheusRule is the Prometheus Operator's PrometheusRule.
type prometheusRule struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            ruleFile          `json:"spec"`
}

// ruleFile is a Prometheus rule file, and the spec of a PrometheusRule.
type ruleFile struct {
	Groups []ruleGroup `json:"groups"`
}

type ruleGroup struct {
	Name     string `json:"name"`
	Interval string `json:"interval,omitempty"`
	Rules    []rule `json:"rules"`
}

type rule struct {
	Alert         string            `json:"alert,omitempty"`
	Record        string            `json:"record,omitempty"`
	Expr          string            `json:"expr"`
	For           string            `json:"for,omitempty"`
	KeepFiringFor string            `json:"keep_firing_for,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

// all returns the objects of a kind.
func (r *rendered) all(kind string) []object {
	var out []object
	for _, o := range r.objects {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

// get returns the object of a kind and name; the name of a generated
// ConfigMap or Secret may carry kustomize's hash suffix.
func (r *rendered) get(t *testing.T, kind, name string) object {
	t.Helper()
	o, ok := r.find(kind, name)
	if !ok {
		var names []string
		for _, o := range r.all(kind) {
			names = append(names, o.Name)
		}
		t.Fatalf("%s: no %s %q (have %v)", r.dir, kind, name, names)
	}
	return o
}

func (r *rendered) find(kind, name string) (object, bool) {
	for _, o := range r.objects {
		if o.Kind != kind {
			continue
		}
		if o.Name == name {
			return o, true
		}
	}
	return object{}, false
}

// deployment returns the typed Deployment of a name.
func (r *rendered) deployment(t *testing.T, name string) *appsv1.Deployment {
	t.Helper()
	return r.get(t, "Deployment", name).Typed.(*appsv1.Deployment)
}

// overlays are the kustomizations an operator applies, with what each
// must produce.
var overlays = []struct {
	dir       string
	namespace string
	replicas  int32
	// external are the Secrets the overlay expects to exist in the cluster
	// (created as docs/operations.md says, from deploy/secrets templates).
	external []string
	tls      bool
	authMode string
}{
	{dir: "base", namespace: "", replicas: 3, authMode: "none",
		external: []string{"datastorage-db", "datastorage-redis", "datastorage-integrity", "datastorage-export-signing"}},
	{dir: "overlays/dev", namespace: "datastorage-dev", replicas: 1, authMode: "none"},
	{dir: "overlays/production", namespace: "kubernaut-system", replicas: 3, tls: true, authMode: "kubernetes",
		external: []string{"datastorage-pg-app", "datastorage-pg-ca", "datastorage-redis", "datastorage-integrity", "datastorage-export-signing", "datastorage-tls"}},
	{dir: "overlays/openshift", namespace: "kubernaut-system", replicas: 3, authMode: "kubernetes",
		external: []string{"datastorage-db", "datastorage-redis", "datastorage-integrity", "datastorage-export-signing"}},
}

// baseName strips kustomize's hash suffix from a generated name.
func baseName(r *rendered, kind, name string) string {
	for _, o := range r.objects {
		if o.Kind == kind && o.Name == name {
			if i := strings.LastIndex(name, "-"); i > 0 && isHash(name[i+1:]) {
				return name[:i]
			}
		}
	}
	return name
}

func isHash(s string) bool {
	return len(s) == 10 && !strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9')
	})
}

func sortedKeys[M ~map[string]V, V any](m M) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// repo is the path of the main module, relative to deploy/.
func repo(parts ...string) string { return filepath.Join(append([]string{".."}, parts...)...) }
