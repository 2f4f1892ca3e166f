package deploy_test

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8slabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"kubernaut.ai/datastorage/internal/config"
)

// The service's own image, as the overlays name it after kustomize's images
// transformer; every other container runs a third-party image.
func isServiceImage(image string) bool {
	name, _, _ := strings.Cut(image, ":")
	return name == "ghcr.io/kubernaut-ai/datastorage" || name == "datastorage"
}

func TestEveryOverlayRendersAndDecodesStrictly(t *testing.T) {
	for _, ov := range overlays {
		t.Run(ov.dir, func(t *testing.T) {
			r := render(t, ov.dir)
			if len(r.objects) == 0 {
				t.Fatal("nothing rendered")
			}
			for _, o := range r.objects {
				clusterScoped := o.Kind == "ClusterRole" || o.Kind == "ClusterRoleBinding" || o.Kind == "Namespace"
				if !clusterScoped && o.Namespace != ov.namespace {
					t.Errorf("%s is in namespace %q, want %q", o, o.Namespace, ov.namespace)
				}
			}
			for _, kind := range []string{"Deployment", "Service", "ServiceAccount", "ConfigMap", "ClusterRole",
				"ClusterRoleBinding", "Role", "RoleBinding", "PodDisruptionBudget", "NetworkPolicy", "Job"} {
				if len(r.all(kind)) == 0 {
					t.Errorf("no %s rendered", kind)
				}
			}
			d := r.deployment(t, "datastorage")
			if d.Spec.Replicas == nil || *d.Spec.Replicas != ov.replicas {
				t.Errorf("replicas %v, want %d", d.Spec.Replicas, ov.replicas)
			}
		})
	}
}

// podFiles materialises what a container sees: the files of its ConfigMap
// and Secret volumes under a temporary root, and its environment, with every
// mount path rewritten into that root. Secrets that the overlay does not
// render come from their template in deploy/secrets, if the overlay lists
// them as external.
type podFiles struct {
	root    string
	env     []string
	mounts  map[string]string // mount path → volume name
	rewrite *strings.Replacer
}

func materialise(t *testing.T, r *rendered, external []string, namespace string, spec corev1.PodSpec, c corev1.Container) *podFiles {
	t.Helper()
	p := &podFiles{root: t.TempDir(), mounts: map[string]string{}}
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
	}
	var pairs []string
	var mountPaths []string
	for _, m := range c.VolumeMounts {
		mountPaths = append(mountPaths, m.MountPath)
	}
	// Longest first, so /a/b is rewritten before /a.
	sort.Slice(mountPaths, func(i, j int) bool { return len(mountPaths[i]) > len(mountPaths[j]) })
	for _, mp := range mountPaths {
		pairs = append(pairs, mp, filepath.Join(p.root, mp))
	}
	p.rewrite = strings.NewReplacer(pairs...)

	for _, m := range c.VolumeMounts {
		v, ok := volumes[m.Name]
		if !ok {
			t.Errorf("%s: container %s mounts volume %q, which the pod does not have", r.dir, c.Name, m.Name)
			continue
		}
		p.mounts[m.MountPath] = m.Name
		dir := filepath.Join(p.root, m.MountPath)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		var files map[string][]byte
		switch {
		case v.ConfigMap != nil:
			cm, ok := r.find("ConfigMap", v.ConfigMap.Name)
			if !ok {
				t.Errorf("%s: volume %s: ConfigMap %q is not rendered", r.dir, v.Name, v.ConfigMap.Name)
				continue
			}
			files = map[string][]byte{}
			for k, s := range cm.Typed.(*corev1.ConfigMap).Data {
				// Paths in the configuration point into the pod's mounts.
				files[k] = []byte(p.rewrite.Replace(s))
			}
		case v.Secret != nil:
			optional := v.Secret.Optional != nil && *v.Secret.Optional
			files = secretFiles(t, r, external, v.Secret.SecretName, optional)
		case v.EmptyDir != nil:
		default:
			t.Errorf("%s: volume %s: a kind of volume these tests do not know", r.dir, v.Name)
		}
		for k, data := range files {
			if err := os.WriteFile(filepath.Join(dir, k), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, e := range c.Env {
		val := e.Value
		if e.ValueFrom != nil {
			switch {
			case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace":
				val = namespace
			case e.ValueFrom.SecretKeyRef != nil:
				sel := e.ValueFrom.SecretKeyRef
				val = string(secretFiles(t, r, external, sel.Name, false)[sel.Key])
			default:
				t.Errorf("%s: env %s: a source these tests do not resolve", r.dir, e.Name)
			}
		}
		p.env = append(p.env, e.Name+"="+p.rewrite.Replace(val))
	}
	return p
}

// secretFiles returns a Secret's data: rendered by the overlay, or the
// template of an external Secret.
func secretFiles(t *testing.T, r *rendered, external []string, name string, optional bool) map[string][]byte {
	t.Helper()
	if o, ok := r.find("Secret", name); ok {
		s := o.Typed.(*corev1.Secret)
		out := map[string][]byte{}
		for k, v := range s.Data {
			out[k] = v
		}
		for k, v := range s.StringData {
			out[k] = []byte(v)
		}
		return out
	}
	if !slices.Contains(external, name) {
		if optional {
			return nil
		}
		t.Errorf("%s: Secret %q is neither rendered nor an external Secret of this overlay", r.dir, name)
		return nil
	}
	s := secretTemplate(t, name)
	out := map[string][]byte{}
	for k, v := range s.StringData {
		out[k] = []byte(v)
	}
	return out
}

// checkSigningKey accepts what integrity.signingKeyFile takes: a PKCS #8
// PEM Ed25519 key, or a 32-byte seed in hex. (internal/integrity itself is
// not imported: it brings the store's dependencies into this module.)
func checkSigningKey(data []byte) error {
	if block, _ := pem.Decode(data); block != nil {
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return err
		}
		if _, ok := k.(ed25519.PrivateKey); !ok {
			return fmt.Errorf("a %T, not an Ed25519 key", k)
		}
		return nil
	}
	seed, err := hex.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return fmt.Errorf("neither a PEM key nor a 32-byte hex seed")
	}
	return nil
}

// baseSecret returns the rendered name of a Secret the overlay generates
// (with kustomize's hash suffix), or name.
func baseSecret(r *rendered, name string) string {
	for _, o := range r.all("Secret") {
		if baseName(r, "Secret", o.Name) == name {
			return o.Name
		}
	}
	return name
}

// secretTemplate reads deploy/secrets/<name>.yaml strictly.
func secretTemplate(t *testing.T, name string) *corev1.Secret {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("secrets", name+".yaml"))
	if err != nil {
		t.Fatalf("external Secret %s has no template in deploy/secrets: %v", name, err)
	}
	var s corev1.Secret
	if err := decodeYAMLStrict(data, &s); err != nil {
		t.Fatalf("secrets/%s.yaml: %v", name, err)
	}
	if s.Name != name || s.Kind != "Secret" {
		t.Fatalf("secrets/%s.yaml holds %s %s", name, s.Kind, s.Name)
	}
	return &s
}

// loadConfig runs the service's own configuration loader on what the
// container sees: its CONFIG_PATH (or --config) and DATASTORAGE_ variables.
func (p *podFiles) loadConfig(args []string) (config.Config, error) {
	flagPath := ""
	for i, a := range args {
		if (a == "--config" || a == "-config") && i+1 < len(args) {
			flagPath = p.rewrite.Replace(args[i+1])
		}
	}
	return config.Load(config.ResolvePath(flagPath, p.env), p.env)
}

// serviceContainer returns the pod's datastorage container.
func serviceContainer(t *testing.T, spec corev1.PodSpec) corev1.Container {
	t.Helper()
	for _, c := range spec.Containers {
		if isServiceImage(c.Image) {
			return c
		}
	}
	t.Fatal("no container runs the datastorage image")
	return corev1.Container{}
}

func TestServicePodsGetAValidConfiguration(t *testing.T) {
	for _, ov := range overlays {
		t.Run(ov.dir, func(t *testing.T) {
			r := render(t, ov.dir)
			d := r.deployment(t, "datastorage")
			c := serviceContainer(t, d.Spec.Template.Spec)
			if !slices.Equal(c.Args, []string{"serve"}) {
				t.Errorf("the server's args are %q, want [serve] (the config comes from CONFIG_PATH)", c.Args)
			}
			pf := materialise(t, r, ov.external, ov.namespace, d.Spec.Template.Spec, c)
			cfg, err := pf.loadConfig(c.Args)
			if err != nil {
				t.Fatalf("the server would refuse to start with this configuration:\n%v", err)
			}
			if err := cfg.RequireDatabase(); err != nil {
				t.Error(err)
			}
			checkServerPod(t, r, ov.tls, d, c, cfg)
			if cfg.Auth.Mode != ov.authMode {
				t.Errorf("auth.mode %q, want %q", cfg.Auth.Mode, ov.authMode)
			}
			if ov.authMode == "kubernetes" && cfg.Auth.Namespace != ov.namespace {
				t.Errorf("auth.namespace %q, want the Service's namespace %q", cfg.Auth.Namespace, ov.namespace)
			}
			if cfg.Redis.SecretsFile == "" || cfg.Database.SecretsFile == "" {
				t.Error("the database and Redis passwords must come from secret files")
			}
			if len(cfg.Integrity.HMACKey) == 0 {
				t.Error("the hash chains should be keyed (integrity.hmacKeyFile)")
			}
			if len(cfg.Integrity.SigningKey) == 0 {
				t.Error("exports should be signed with a kept key (integrity.signingKeyFile), not one made at each start")
			} else if _, ok := r.find("Secret", baseSecret(r, "datastorage-export-signing")); ok {
				// A key the overlay ships must be one the server accepts.
				if err := checkSigningKey(cfg.Integrity.SigningKey); err != nil {
					t.Errorf("integrity.signingKeyFile: %v", err)
				}
			}

			// The migration Job runs the same image with the same configuration.
			job := r.get(t, "Job", "datastorage-migrate").Typed.(*batchv1.Job)
			jc := serviceContainer(t, job.Spec.Template.Spec)
			if !slices.Equal(jc.Args, []string{"migrate", "up"}) {
				t.Errorf("the Job's args are %q, want [migrate up]", jc.Args)
			}
			if jc.Image != c.Image {
				t.Errorf("the Job runs %s, the Deployment %s", jc.Image, c.Image)
			}
			jf := materialise(t, r, ov.external, ov.namespace, job.Spec.Template.Spec, jc)
			jcfg, err := jf.loadConfig(jc.Args)
			if err != nil {
				t.Fatalf("the migration Job would refuse to start:\n%v", err)
			}
			if jcfg.Database.ConnString() != cfg.Database.ConnString() {
				t.Error("the Job and the Deployment use different databases")
			}
			if job.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyOnFailure && job.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyNever {
				t.Errorf("Job restartPolicy %q", job.Spec.Template.Spec.RestartPolicy)
			}
			if job.Spec.TTLSecondsAfterFinished == nil {
				t.Error("the Job should remove itself (ttlSecondsAfterFinished) so the next apply can recreate it")
			}
			checkSecurity(t, "Job/datastorage-migrate", job.Spec.Template.Spec, true)
			checkResources(t, "Job/datastorage-migrate", job.Spec.Template.Spec)
		})
	}
}

// checkServerPod checks the Deployment against the configuration it loads.
func checkServerPod(t *testing.T, r *rendered, tls bool, d *appsv1.Deployment, c corev1.Container, cfg config.Config) {
	t.Helper()
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["api"] != int32(cfg.Server.Port) {
		t.Errorf("container port api is %d, server.port %d", ports["api"], cfg.Server.Port)
	}
	if ports["metrics"] != int32(cfg.Server.MetricsPort) {
		t.Errorf("container port metrics is %d, server.metricsPort %d", ports["metrics"], cfg.Server.MetricsPort)
	}
	if cfg.Server.Host != "0.0.0.0" && cfg.Server.Host != "" && cfg.Server.Host != "::" {
		t.Errorf("server.host %q: a pod must listen on all addresses", cfg.Server.Host)
	}
	wantScheme := corev1.URISchemeHTTP
	if tls {
		wantScheme = corev1.URISchemeHTTPS
		if !cfg.Server.TLS.Enabled() {
			t.Error("TLS is expected but server.tls is not set")
		}
		for _, f := range []string{cfg.Server.TLS.CertFile, cfg.Server.TLS.KeyFile} {
			if _, err := os.Stat(f); err != nil {
				t.Errorf("server.tls file is not mounted from a Secret: %v", err)
			}
		}
	} else if cfg.Server.TLS.Enabled() {
		t.Error("server.tls is set but TLS is not expected in this overlay")
	}
	probe := func(name string, p *corev1.Probe, path string) {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s probe missing or not HTTP", name)
			return
		}
		if p.HTTPGet.Path != path {
			t.Errorf("%s probe path %q, want %q", name, p.HTTPGet.Path, path)
		}
		if port := resolvePort(p.HTTPGet.Port, c); port != int32(cfg.Server.Port) {
			t.Errorf("%s probe port %s is %d, want server.port %d", name, p.HTTPGet.Port.String(), port, cfg.Server.Port)
		}
		scheme := p.HTTPGet.Scheme
		if scheme == "" {
			scheme = corev1.URISchemeHTTP
		}
		if scheme != wantScheme {
			t.Errorf("%s probe scheme %s, want %s", name, scheme, wantScheme)
		}
	}
	probe("readiness", c.ReadinessProbe, "/readyz")
	probe("liveness", c.LivenessProbe, "/healthz")
	if c.StartupProbe != nil {
		probe("startup", c.StartupProbe, "/healthz")
		budget := time.Duration(c.StartupProbe.PeriodSeconds*c.StartupProbe.FailureThreshold) * time.Second
		if budget < 90*time.Second {
			t.Errorf("the startup probe allows %v; migration at start waits up to a minute for PostgreSQL", budget)
		}
	}
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
		t.Error("no preStop hook: the server waits endpointPropagationDelay itself")
	}

	spec := d.Spec.Template.Spec
	grace := time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
	need := cfg.Server.ShutdownTimeout.Duration + cfg.Server.EndpointPropagationDelay.Duration
	if grace <= need {
		t.Errorf("terminationGracePeriodSeconds %v must exceed shutdownTimeout + endpointPropagationDelay = %v", grace, need)
	}
	checkSecurity(t, "Deployment/datastorage", spec, true)
	checkResources(t, "Deployment/datastorage", spec)

	// The Service reaches the ports by name, and selects only these pods.
	svc := r.get(t, "Service", "data-storage-service").Typed.(*corev1.Service)
	want := map[string]int32{"api": int32(cfg.Server.Port), "metrics": int32(cfg.Server.MetricsPort)}
	for _, sp := range svc.Spec.Ports {
		if got := resolvePort(sp.TargetPort, c); got != want[sp.Name] {
			t.Errorf("Service port %s targets %d, want %d", sp.Name, got, want[sp.Name])
		}
	}
	if len(svc.Spec.Ports) != 2 {
		t.Errorf("the Service has %d ports, want api and metrics", len(svc.Spec.Ports))
	}
	podLabels := k8slabels.Set(d.Spec.Template.Labels)
	if !k8slabels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
		t.Error("the Service does not select the Deployment's pods")
	}
	job := r.get(t, "Job", "datastorage-migrate").Typed.(*batchv1.Job)
	if k8slabels.SelectorFromSet(svc.Spec.Selector).Matches(k8slabels.Set(job.Spec.Template.Labels)) {
		t.Error("the Service also selects the migration Job's pod")
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || !sel.Matches(podLabels) {
		t.Errorf("the Deployment's selector does not match its pods: %v", err)
	}
	if sel.Matches(k8slabels.Set(job.Spec.Template.Labels)) {
		t.Error("the Deployment's selector also matches the migration Job's pod")
	}
	if sa := spec.ServiceAccountName; sa == "" {
		t.Error("no serviceAccountName")
	} else if _, ok := r.find("ServiceAccount", sa); !ok {
		t.Errorf("ServiceAccount %s is not rendered", sa)
	}
}

func resolvePort(p intstr.IntOrString, c corev1.Container) int32 {
	if p.Type == intstr.Int {
		return p.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	return -1
}

// checkSecurity checks a pod's security settings. strict is for the
// service's own pods; third-party images get what they can run with.
func checkSecurity(t *testing.T, what string, spec corev1.PodSpec, strict bool) {
	t.Helper()
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Errorf("%s: pod securityContext.runAsNonRoot must be true", what)
	}
	if psc != nil && psc.RunAsUser != nil && *psc.RunAsUser == 0 {
		t.Errorf("%s: runAsUser 0", what)
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: pod seccompProfile must be RuntimeDefault", what)
	}
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		t.Errorf("%s: host namespaces are not for this service", what)
	}
	for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		sc := c.SecurityContext
		where := what + " container " + c.Name
		if sc == nil {
			t.Errorf("%s: no securityContext", where)
			continue
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("%s: allowPrivilegeEscalation must be false", where)
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Errorf("%s: privileged", where)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("%s: readOnlyRootFilesystem must be true", where)
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
			t.Errorf("%s: capabilities must drop ALL and add none", where)
		}
		if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
			t.Errorf("%s: runAsUser 0", where)
		}
		if strict && (sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot) {
			t.Errorf("%s: runAsNonRoot must be true", where)
		}
		if strict && (sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault) {
			t.Errorf("%s: seccompProfile must be RuntimeDefault", where)
		}
	}
}

func checkResources(t *testing.T, what string, spec corev1.PodSpec) {
	t.Helper()
	for _, c := range spec.Containers {
		for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, okReq := c.Resources.Requests[res]
			lim, okLim := c.Resources.Limits[res]
			if !okReq || !okLim {
				t.Errorf("%s container %s: %s request and limit must both be set", what, c.Name, res)
				continue
			}
			if req.Cmp(lim) > 0 {
				t.Errorf("%s container %s: %s request %s exceeds the limit %s", what, c.Name, res, req.String(), lim.String())
			}
		}
	}
}

// workloads returns every pod template of a rendering.
func workloads(r *rendered) map[string]corev1.PodSpec {
	out := map[string]corev1.PodSpec{}
	for _, o := range r.objects {
		switch w := o.Typed.(type) {
		case *appsv1.Deployment:
			out[o.String()] = w.Spec.Template.Spec
		case *appsv1.StatefulSet:
			out[o.String()] = w.Spec.Template.Spec
		case *batchv1.Job:
			out[o.String()] = w.Spec.Template.Spec
		}
	}
	return out
}

func TestEveryImageIsPinnedAndEveryPodLocked(t *testing.T) {
	for _, ov := range overlays {
		t.Run(ov.dir, func(t *testing.T) {
			r := render(t, ov.dir)
			for what, spec := range workloads(r) {
				checkSecurity(t, what, spec, false)
				checkResources(t, what, spec)
				for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
					name, tag, digest := splitImage(c.Image)
					switch {
					case digest != "":
					case tag == "":
						t.Errorf("%s container %s: image %q has no tag", what, c.Name, c.Image)
					case tag == "latest" || tag == "main" || tag == "master":
						t.Errorf("%s container %s: image %q uses a moving tag", what, c.Name, c.Image)
					}
					if name == "" {
						t.Errorf("%s container %s: no image", what, c.Name)
					}
					if c.ImagePullPolicy == corev1.PullAlways {
						t.Errorf("%s container %s: imagePullPolicy Always with a pinned tag only adds a dependency on the registry", what, c.Name)
					}
				}
			}
		})
	}
}

// splitImage splits name[:tag][@digest]; a registry port is not a tag.
func splitImage(image string) (name, tag, digest string) {
	name, digest, _ = strings.Cut(image, "@")
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name, tag = name[:i], name[i+1:]
	}
	return name, tag, digest
}

func TestDisruptionScalingAndMonitoring(t *testing.T) {
	for _, ov := range overlays {
		t.Run(ov.dir, func(t *testing.T) {
			r := render(t, ov.dir)
			d := r.deployment(t, "datastorage")
			podLabels := k8slabels.Set(d.Spec.Template.Labels)

			pdb := r.get(t, "PodDisruptionBudget", "datastorage").Typed.(*policyv1.PodDisruptionBudget)
			sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
			if err != nil || !sel.Matches(podLabels) {
				t.Errorf("the PodDisruptionBudget does not select the server pods: %v", err)
			}
			if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() < 1 {
				t.Error("the PodDisruptionBudget must allow one pod at a time to go (maxUnavailable ≥ 1), or node drains block")
			}

			hpas := r.all("HorizontalPodAutoscaler")
			if ov.replicas > 1 {
				if len(hpas) != 1 {
					t.Fatalf("want one HorizontalPodAutoscaler, have %d", len(hpas))
				}
				h := hpas[0].Typed.(*autoscalingv2.HorizontalPodAutoscaler)
				ref := h.Spec.ScaleTargetRef
				if ref.Kind != "Deployment" || ref.Name != d.Name || ref.APIVersion != "apps/v1" {
					t.Errorf("the HPA scales %+v", ref)
				}
				if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas != *d.Spec.Replicas || h.Spec.MaxReplicas < *h.Spec.MinReplicas {
					t.Errorf("HPA replicas %v…%d, Deployment %d", h.Spec.MinReplicas, h.Spec.MaxReplicas, *d.Spec.Replicas)
				}
				cpu := false
				for _, m := range h.Spec.Metrics {
					cpu = cpu || m.Resource != nil && m.Resource.Name == corev1.ResourceCPU
				}
				if !cpu {
					t.Error("the HPA does not scale on CPU")
				}
			} else if len(hpas) > 0 {
				t.Error("a single-replica overlay should not autoscale")
			}

			sms := r.all("ServiceMonitor")
			if ov.dir == "overlays/dev" {
				if len(sms)+len(r.all("PrometheusRule")) > 0 {
					t.Error("the dev overlay (kind) has no Prometheus Operator")
				}
				return
			}
			if len(sms) != 1 || len(r.all("PrometheusRule")) != 1 {
				t.Fatalf("want one ServiceMonitor and one PrometheusRule")
			}
			sm := sms[0].Typed.(*serviceMonitor)
			svc := r.get(t, "Service", "data-storage-service").Typed.(*corev1.Service)
			smSel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
			if err != nil || !smSel.Matches(k8slabels.Set(svc.Labels)) {
				t.Errorf("the ServiceMonitor does not select the Service: %v", err)
			}
			if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "metrics" || sm.Spec.Endpoints[0].Path != "/metrics" {
				t.Errorf("ServiceMonitor endpoints %+v, want port metrics, path /metrics", sm.Spec.Endpoints)
			}
			if s := sm.Spec.Endpoints[0].Scheme; s != "" && s != "http" {
				t.Errorf("metrics are plain HTTP, the ServiceMonitor says %s", s)
			}
		})
	}
}

func TestRBAC(t *testing.T) {
	for _, ov := range overlays {
		t.Run(ov.dir, func(t *testing.T) {
			r := render(t, ov.dir)
			d := r.deployment(t, "datastorage")
			sa := d.Spec.Template.Spec.ServiceAccountName

			// The server may create TokenReviews and SubjectAccessReviews, bound
			// to its service account in its namespace.
			can := map[string]bool{}
			for _, o := range r.all("ClusterRoleBinding") {
				b := o.Typed.(*rbacv1.ClusterRoleBinding)
				bound := false
				for _, s := range b.Subjects {
					if s.Kind == "ServiceAccount" && s.Name == sa {
						bound = true
						if s.Namespace != ov.namespace && ov.namespace != "" {
							t.Errorf("ClusterRoleBinding %s binds %s in namespace %q, want %q", b.Name, sa, s.Namespace, ov.namespace)
						}
					}
				}
				if !bound || b.RoleRef.Kind != "ClusterRole" {
					continue
				}
				cr := r.get(t, "ClusterRole", b.RoleRef.Name).Typed.(*rbacv1.ClusterRole)
				for _, rule := range cr.Rules {
					for _, g := range rule.APIGroups {
						for _, res := range rule.Resources {
							for _, v := range rule.Verbs {
								can[v+" "+res+"."+g] = true
							}
						}
					}
				}
			}
			for _, want := range []string{"create tokenreviews.authentication.k8s.io", "create subjectaccessreviews.authorization.k8s.io"} {
				if !can[want] {
					t.Errorf("the server's service account may not %s", want)
				}
			}
			if len(can) != 2 {
				t.Errorf("the server needs exactly those two permissions, has %v", sortedKeys(can))
			}

			// The callers' Roles name the Service that auth.mode kubernetes
			// authorizes against, with the contract's verbs.
			svc := r.get(t, "Service", "data-storage-service")
			verbs := map[string][]string{}
			for _, o := range r.all("Role") {
				role := o.Typed.(*rbacv1.Role)
				for _, rule := range role.Rules {
					if !slices.Equal(rule.Resources, []string{"services"}) || !slices.Equal(rule.ResourceNames, []string{svc.Name}) {
						t.Errorf("Role %s: rule %+v does not name services/%s", role.Name, rule, svc.Name)
					}
					verbs[role.Name] = append(verbs[role.Name], rule.Verbs...)
				}
			}
			if !slices.Equal(verbs["data-storage-writer"], []string{"get", "create"}) {
				t.Errorf("data-storage-writer verbs %v", verbs["data-storage-writer"])
			}
			if !slices.Equal(verbs["data-storage-auditor"], []string{"get", "update"}) {
				t.Errorf("data-storage-auditor verbs %v", verbs["data-storage-auditor"])
			}
			for _, o := range r.all("RoleBinding") {
				b := o.Typed.(*rbacv1.RoleBinding)
				if _, ok := r.find("Role", b.RoleRef.Name); !ok || b.RoleRef.Kind != "Role" {
					t.Errorf("RoleBinding %s refers to %s %s, which is not rendered", b.Name, b.RoleRef.Kind, b.RoleRef.Name)
				}
			}
		})
	}
}

func TestNetworkPolicy(t *testing.T) {
	for _, ov := range overlays {
		t.Run(ov.dir, func(t *testing.T) {
			r := render(t, ov.dir)
			d := r.deployment(t, "datastorage")
			c := serviceContainer(t, d.Spec.Template.Spec)
			np := r.get(t, "NetworkPolicy", "datastorage").Typed.(*networkingv1.NetworkPolicy)
			sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
			if err != nil || !sel.Matches(k8slabels.Set(d.Spec.Template.Labels)) {
				t.Fatalf("the NetworkPolicy does not select the server pods: %v", err)
			}
			job := r.get(t, "Job", "datastorage-migrate").Typed.(*batchv1.Job)
			if !sel.Matches(k8slabels.Set(job.Spec.Template.Labels)) {
				t.Error("the NetworkPolicy should cover the migration Job too (its egress to PostgreSQL)")
			}
			if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
				t.Errorf("policyTypes %v, want Ingress and Egress", np.Spec.PolicyTypes)
			}
			ingress := map[int32]string{}
			for _, rule := range np.Spec.Ingress {
				for _, p := range rule.Ports {
					port := resolvePort(*p.Port, c)
					for _, peer := range rule.From {
						if peer.NamespaceSelector != nil {
							ingress[port] += fmt.Sprint(peer.NamespaceSelector.MatchLabels) + " "
						} else if peer.PodSelector != nil {
							ingress[port] += "same-namespace "
						}
					}
				}
			}
			if !strings.Contains(ingress[8080], "kubernaut-system") || !strings.Contains(ingress[8080], "same-namespace") {
				t.Errorf("the API port should be open to the platform namespace and this one: %q", ingress[8080])
			}
			if !strings.Contains(ingress[9090], "monitoring") {
				t.Errorf("the metrics port should be open to monitoring: %q", ingress[9090])
			}
			if len(ingress) != 2 {
				t.Errorf("ingress opens ports %v, want only 8080 and 9090", sortedKeys(mapKeys(ingress)))
			}
			egress := map[string]bool{}
			for _, rule := range np.Spec.Egress {
				for _, p := range rule.Ports {
					egress[fmt.Sprintf("%s/%d", *p.Protocol, p.Port.IntValue())] = true
				}
			}
			for _, want := range []string{"UDP/53", "TCP/53", "TCP/5432", "TCP/6379", "TCP/443", "TCP/6443"} {
				if !egress[want] {
					t.Errorf("egress to %s is not allowed", want)
				}
			}
		})
	}
}

func mapKeys(m map[int32]string) map[string]bool {
	out := map[string]bool{}
	for k := range m {
		out[strconv.Itoa(int(k))] = true
	}
	return out
}

func TestDevOverlayRunsItsOwnPostgresAndRedis(t *testing.T) {
	const dir = "overlays/dev"
	r := render(t, dir)
	var ext []string
	for _, ov := range overlays {
		if ov.dir == dir {
			ext = ov.external
		}
	}
	d := r.deployment(t, "datastorage")
	c := serviceContainer(t, d.Spec.Template.Spec)
	cfg, err := materialise(t, r, ext, "datastorage-dev", d.Spec.Template.Spec, c).loadConfig(c.Args)
	if err != nil {
		t.Fatal(err)
	}

	pg := r.get(t, "StatefulSet", "datastorage-postgres").Typed.(*appsv1.StatefulSet)
	if *pg.Spec.Replicas != 1 || len(pg.Spec.VolumeClaimTemplates) != 1 {
		t.Error("PostgreSQL: one instance with a PersistentVolumeClaim")
	}
	pgSvc := r.get(t, "Service", "datastorage-postgres").Typed.(*corev1.Service)
	if cfg.Database.Host != pgSvc.Name || cfg.Database.Port != int(pgSvc.Spec.Ports[0].Port) {
		t.Errorf("database %s:%d, the PostgreSQL Service is %s:%d", cfg.Database.Host, cfg.Database.Port, pgSvc.Name, pgSvc.Spec.Ports[0].Port)
	}
	if !k8slabels.SelectorFromSet(pgSvc.Spec.Selector).Matches(k8slabels.Set(pg.Spec.Template.Labels)) {
		t.Error("the PostgreSQL Service does not select its pod")
	}
	pgEnv := materialise(t, r, ext, "datastorage-dev", withClaims(pg), pg.Spec.Template.Spec.Containers[0]).env
	if !slices.Contains(pgEnv, "POSTGRES_PASSWORD="+cfg.Database.Password) {
		t.Error("the PostgreSQL password differs from the one the service uses")
	}
	if !slices.Contains(pgEnv, "POSTGRES_USER="+cfg.Database.User) || !slices.Contains(pgEnv, "POSTGRES_DB="+cfg.Database.Name) {
		t.Errorf("PostgreSQL user/database differ from database.user/name: %v", pgEnv)
	}

	redis := r.get(t, "StatefulSet", "datastorage-redis").Typed.(*appsv1.StatefulSet)
	rc := redis.Spec.Template.Spec.Containers[0]
	args := strings.Join(rc.Args, " ")
	for _, want := range []string{"--appendonly yes", "--appendfsync everysec"} {
		if !strings.Contains(args, want) {
			t.Errorf("Redis must run with %s (AOF persistence), args: %s", want, args)
		}
	}
	if len(redis.Spec.VolumeClaimTemplates) != 1 {
		t.Error("Redis: the AOF needs a PersistentVolumeClaim")
	}
	redisSvc := r.get(t, "Service", "datastorage-redis").Typed.(*corev1.Service)
	if want := fmt.Sprintf("%s:%d", redisSvc.Name, redisSvc.Spec.Ports[0].Port); cfg.Redis.Addr != want {
		t.Errorf("redis.addr %s, the Redis Service is %s", cfg.Redis.Addr, want)
	}
	redisEnv := materialise(t, r, ext, "datastorage-dev", withClaims(redis), rc).env
	if !slices.Contains(redisEnv, "REDIS_PASSWORD="+cfg.Redis.Password) || !strings.Contains(args, "--requirepass $(REDIS_PASSWORD)") {
		t.Error("the Redis password differs from the one the service uses")
	}
	if _, ok := r.find("Namespace", "datastorage-dev"); !ok {
		t.Error("the dev overlay creates its namespace")
	}
}

// withClaims is a StatefulSet's pod spec with its volume claims as volumes
// (what the pods get once the claims are bound).
func withClaims(sts *appsv1.StatefulSet) corev1.PodSpec {
	spec := *sts.Spec.Template.Spec.DeepCopy()
	for _, c := range sts.Spec.VolumeClaimTemplates {
		spec.Volumes = append(spec.Volumes, corev1.Volume{Name: c.Name, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	}
	return spec
}

func TestProductionOverlay(t *testing.T) {
	r := render(t, "overlays/production")
	if n := len(r.all("Secret")); n > 0 {
		t.Errorf("production renders %d Secret objects; Secrets are created apart", n)
	}
	// Redis and its Sentinels are the overlay's own (redisha_test.go); nothing else is.
	for _, o := range r.all("StatefulSet") {
		if o.Name != "datastorage-redis" && o.Name != "datastorage-redis-sentinel" {
			t.Errorf("production renders StatefulSet %s", o.Name)
		}
	}
	cm, ok := r.find("ConfigMap", "datastorage-dashboard")
	if !ok {
		t.Fatal("the Grafana dashboard ConfigMap is missing")
	}
	dash := cm.Typed.(*corev1.ConfigMap)
	if dash.Labels["grafana_dashboard"] != "1" || dash.Data["datastorage.json"] == "" {
		t.Error("the dashboard ConfigMap needs the grafana_dashboard label and the dashboard")
	}
	raw, err := os.ReadFile("grafana/datastorage.json")
	if err != nil {
		t.Fatal(err)
	}
	if dash.Data["datastorage.json"] != string(raw) {
		t.Error("the dashboard ConfigMap differs from grafana/datastorage.json")
	}
}

// TestSecretTemplates checks deploy/secrets against what the pods mount:
// every external Secret has a template with the keys the pods read.
func TestSecretTemplates(t *testing.T) {
	entries, err := os.ReadDir("secrets")
	if err != nil {
		t.Fatal(err)
	}
	templates := map[string]*corev1.Secret{}
	for _, e := range entries {
		name := strings.TrimSuffix(e.Name(), ".yaml")
		templates[name] = secretTemplate(t, name)
	}
	r := render(t, "overlays/production")
	used := map[string]bool{}
	for what, spec := range workloads(r) {
		vols := map[string]corev1.Volume{}
		for _, v := range spec.Volumes {
			vols[v.Name] = v
			if v.Secret == nil {
				continue
			}
			used[v.Secret.SecretName] = true
			if templates[v.Secret.SecretName] == nil {
				t.Errorf("%s mounts Secret %s, which has no template in deploy/secrets", what, v.Secret.SecretName)
			}
		}
	}
	for name, s := range templates {
		if !used[name] {
			t.Errorf("secrets/%s.yaml is a template of a Secret no pod uses", name)
		}
		for k, v := range s.StringData {
			if !strings.Contains(v, "REPLACE") {
				t.Errorf("secrets/%s.yaml: %s should hold an obvious placeholder", name, k)
			}
		}
	}
	if tls := templates["datastorage-tls"]; tls == nil || tls.Type != corev1.SecretTypeTLS {
		t.Error("datastorage-tls must be of type kubernetes.io/tls")
	}
}
