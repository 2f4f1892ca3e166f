package deploy_test

import (
	"os"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// OpenShift's own API module (github.com/openshift/api) is not served by the
// module proxy these tests build with, so Route, BuildConfig and ImageStream
// are checked against small schemas of our own below: the fields their
// OpenShift 4 API reference documents, with the ones it marks required
// checked as required. Strict decoding refuses any field outside them, so a
// typo fails here rather than in the cluster. They are narrower than the
// real API on purpose: add a field when the manifests need it.

// route is route.openshift.io/v1 Route: spec.to (kind, name) is required.
type route struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		Host string `json:"host,omitempty"`
		Path string `json:"path,omitempty"`
		To   struct {
			Kind   string `json:"kind"`
			Name   string `json:"name"`
			Weight *int32 `json:"weight,omitempty"`
		} `json:"to"`
		Port *struct {
			TargetPort string `json:"targetPort"`
		} `json:"port,omitempty"`
		TLS *struct {
			Termination                   string `json:"termination"`
			InsecureEdgeTerminationPolicy string `json:"insecureEdgeTerminationPolicy,omitempty"`
			Certificate                   string `json:"certificate,omitempty"`
			Key                           string `json:"key,omitempty"`
			CACertificate                 string `json:"caCertificate,omitempty"`
		} `json:"tls,omitempty"`
		WildcardPolicy string `json:"wildcardPolicy,omitempty"`
	} `json:"spec"`
}

// buildConfig is build.openshift.io/v1 BuildConfig: spec.strategy (with its
// type) is required; a Docker strategy reads dockerStrategy.
type buildConfig struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		RunPolicy    string            `json:"runPolicy,omitempty"`
		NodeSelector map[string]string `json:"nodeSelector,omitempty"`
		Source       struct {
			Type string `json:"type"`
			Git  *struct {
				URI string `json:"uri"`
				Ref string `json:"ref,omitempty"`
			} `json:"git,omitempty"`
			ContextDir string `json:"contextDir,omitempty"`
		} `json:"source"`
		Strategy struct {
			Type           string `json:"type"`
			DockerStrategy *struct {
				DockerfilePath string          `json:"dockerfilePath,omitempty"`
				BuildArgs      []corev1.EnvVar `json:"buildArgs,omitempty"`
			} `json:"dockerStrategy,omitempty"`
		} `json:"strategy"`
		Output struct {
			To *corev1.ObjectReference `json:"to,omitempty"`
		} `json:"output"`
		Resources                    corev1.ResourceRequirements `json:"resources,omitempty"`
		SuccessfulBuildsHistoryLimit *int32                      `json:"successfulBuildsHistoryLimit,omitempty"`
		FailedBuildsHistoryLimit     *int32                      `json:"failedBuildsHistoryLimit,omitempty"`
		Triggers                     []struct {
			Type string `json:"type"`
		} `json:"triggers"`
	} `json:"spec"`
}

// imageStream is image.openshift.io/v1 ImageStream.
type imageStream struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		LookupPolicy struct {
			Local bool `json:"local"`
		} `json:"lookupPolicy"`
	} `json:"spec"`
}

func TestOpenShiftRouteIsEdgeTLSToTheAPIPort(t *testing.T) {
	r := render(t, "overlays/openshift")
	rt := r.get(t, "Route", "datastorage").Typed.(*route)
	if rt.Spec.To.Kind != "Service" || rt.Spec.To.Name == "" {
		t.Fatalf("route to %+v: spec.to (kind Service, name) is required", rt.Spec.To)
	}
	svc := r.get(t, "Service", rt.Spec.To.Name).Typed.(*corev1.Service)
	if rt.Spec.Port == nil || !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == rt.Spec.Port.TargetPort }) {
		t.Errorf("route port %+v is not a port of Service %s", rt.Spec.Port, svc.Name)
	} else if rt.Spec.Port.TargetPort != "api" {
		t.Errorf("the route exposes %s, want the API port only (never metrics)", rt.Spec.Port.TargetPort)
	}
	if rt.Spec.TLS == nil || rt.Spec.TLS.Termination != "edge" {
		t.Errorf("route TLS %+v, want edge termination", rt.Spec.TLS)
	} else if rt.Spec.TLS.InsecureEdgeTerminationPolicy != "Redirect" {
		t.Errorf("insecureEdgeTerminationPolicy %q: plain HTTP must be redirected, never served", rt.Spec.TLS.InsecureEdgeTerminationPolicy)
	}
	// Edge TLS forwards plain HTTP: the pods must not expect HTTPS.
	for _, ov := range overlays {
		if ov.dir == "overlays/openshift" && ov.tls {
			t.Error("an edge Route forwards HTTP; the OpenShift overlay must not serve TLS on the pods")
		}
	}
	np := r.get(t, "NetworkPolicy", "datastorage-openshift").Typed.(*networkingv1.NetworkPolicy)
	routerAllowed := false
	for _, in := range np.Spec.Ingress {
		for _, from := range in.From {
			if from.NamespaceSelector != nil && from.NamespaceSelector.MatchLabels["network.openshift.io/policy-group"] == "ingress" {
				routerAllowed = slices.ContainsFunc(in.Ports, func(p networkingv1.NetworkPolicyPort) bool { return p.Port != nil && p.Port.String() == "api" })
			}
		}
	}
	if !routerAllowed {
		t.Error("no NetworkPolicy lets OpenShift's router reach the API port: the Route would time out")
	}
}

// restricted-v2 admits a pod only if it sets no UID, GID or fsGroup outside
// the namespace's range (we set none), runs as non-root, drops every
// capability, refuses privilege escalation and uses the runtime's seccomp
// profile.
func TestOpenShiftPodsFitTheRestrictedV2SCC(t *testing.T) {
	r := render(t, "overlays/openshift")
	for what, spec := range workloads(r) {
		checkSecurity(t, what, spec, true)
		if psc := spec.SecurityContext; psc != nil && (psc.RunAsUser != nil || psc.RunAsGroup != nil || psc.FSGroup != nil) {
			t.Errorf("%s: fixed runAsUser/runAsGroup/fsGroup %v/%v/%v; restricted-v2 assigns them", what, psc.RunAsUser, psc.RunAsGroup, psc.FSGroup)
		}
		for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
			if c.SecurityContext != nil && (c.SecurityContext.RunAsUser != nil || c.SecurityContext.RunAsGroup != nil) {
				t.Errorf("%s container %s: a fixed UID or GID", what, c.Name)
			}
			if isServiceImage(c.Image) {
				if _, tag, _ := splitImage(c.Image); !strings.HasSuffix(tag, "-ubi9") {
					t.Errorf("%s container %s runs %s, want the UBI 9 image (group 0 for an arbitrary UID)", what, c.Name, c.Image)
				}
			}
		}
	}
}

func TestOpenShiftBuildsTheUBIImageForBothArchitectures(t *testing.T) {
	r := render(t, "overlays/openshift")
	is := r.get(t, "ImageStream", "datastorage").Typed.(*imageStream)
	arches := map[string]bool{}
	for _, o := range r.all("BuildConfig") {
		bc := o.Typed.(*buildConfig)
		arch := bc.Spec.NodeSelector["kubernetes.io/arch"]
		if arch == "" {
			t.Errorf("%s: no kubernetes.io/arch nodeSelector: it would build for whichever node it lands on", o)
			continue
		}
		arches[arch] = true
		if bc.Spec.Strategy.Type != "Docker" || bc.Spec.Strategy.DockerStrategy == nil {
			t.Errorf("%s: strategy %q, want Docker with a dockerStrategy", o, bc.Spec.Strategy.Type)
			continue
		}
		df := bc.Spec.Strategy.DockerStrategy.DockerfilePath
		if _, err := os.Stat(repo(df)); err != nil || df != "Dockerfile.ubi9" {
			t.Errorf("%s builds %q, want the repository's Dockerfile.ubi9", o, df)
		}
		if bc.Spec.Source.Type != "Git" || bc.Spec.Source.Git == nil || bc.Spec.Source.Git.URI == "" {
			t.Errorf("%s: source %+v, want Git with a uri", o, bc.Spec.Source)
		}
		to := bc.Spec.Output.To
		if to == nil || to.Kind != "ImageStreamTag" || to.Name != is.Metadata.Name+":main-"+arch {
			t.Errorf("%s: output %+v, want ImageStreamTag %s:main-%s", o, to, is.Metadata.Name, arch)
		}
	}
	for _, a := range []string{"amd64", "arm64"} {
		if !arches[a] {
			t.Errorf("no BuildConfig builds for %s", a)
		}
	}
}
