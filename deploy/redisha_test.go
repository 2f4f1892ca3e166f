package deploy_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	k8slabels "k8s.io/apimachinery/pkg/labels"
)

const productionNS = "kubernaut-system"

// TestProductionRedisWithSentinel checks the production overlay's spool Redis: three servers
// and three Sentinels in StatefulSets behind headless Services, and a service configuration
// that finds the master through exactly those Sentinels and waits for a replica.
func TestProductionRedisWithSentinel(t *testing.T) {
	r := render(t, "overlays/production")
	var ext []string
	for _, ov := range overlays {
		if ov.dir == "overlays/production" {
			ext = ov.external
		}
	}
	d := r.deployment(t, "datastorage")
	c := serviceContainer(t, d.Spec.Template.Spec)
	cfg, err := materialise(t, r, ext, productionNS, d.Spec.Template.Spec, c).loadConfig(c.Args)
	if err != nil {
		t.Fatal(err)
	}

	servers := r.get(t, "StatefulSet", "datastorage-redis").Typed.(*appsv1.StatefulSet)
	sentinels := r.get(t, "StatefulSet", "datastorage-redis-sentinel").Typed.(*appsv1.StatefulSet)
	for _, sts := range []*appsv1.StatefulSet{servers, sentinels} {
		if sts.Spec.Replicas == nil || *sts.Spec.Replicas != 3 {
			t.Errorf("%s: want 3 replicas", sts.Name)
		}
		svc := r.get(t, "Service", sts.Spec.ServiceName).Typed.(*corev1.Service)
		if svc.Spec.ClusterIP != corev1.ClusterIPNone || !svc.Spec.PublishNotReadyAddresses {
			t.Errorf("%s: the governing Service must be headless and publish pods before they are ready (stable names at bootstrap)", sts.Name)
		}
		if !k8slabels.SelectorFromSet(svc.Spec.Selector).Matches(k8slabels.Set(sts.Spec.Template.Labels)) {
			t.Errorf("%s: its Service does not select its pods", sts.Name)
		}
		if _, ok := r.find("PodDisruptionBudget", sts.Name); !ok {
			t.Errorf("%s: no PodDisruptionBudget (a drain could take two of three at once)", sts.Name)
		}
	}
	if len(servers.Spec.VolumeClaimTemplates) != 1 {
		t.Error("the Redis servers need a PersistentVolumeClaim for their AOF")
	}

	// The service asks every Sentinel pod, by its stable name, for the master the Sentinels
	// monitor; it waits for one replica.
	s := cfg.Redis.Sentinel
	if s.MasterName != "datastorage" {
		t.Errorf("redis.sentinel.masterName %q, the Sentinels monitor datastorage", s.MasterName)
	}
	sentinelSvc := r.get(t, "Service", "datastorage-redis-sentinel").Typed.(*corev1.Service)
	var want []string
	for i := range 3 {
		want = append(want, fmt.Sprintf("datastorage-redis-sentinel-%d.%s.%s.svc.cluster.local:%d", i, sentinelSvc.Name, productionNS, sentinelSvc.Spec.Ports[0].Port))
	}
	if !slices.Equal([]string(s.Addrs), want) {
		t.Errorf("redis.sentinel.addrs %v, want the three Sentinel pods %v", s.Addrs, want)
	}
	if cfg.Redis.RequiredReplicas() != 1 {
		t.Errorf("redis.minReplicas resolves to %d, want 1", cfg.Redis.RequiredReplicas())
	}

	// The start scripts, run with stand-ins for hostname, redis-cli and redis-server.
	pw := cfg.Redis.Password
	first := runStartScript(t, r, ext, servers, "datastorage-redis-0", "")
	for _, want := range []string{"--appendonly yes", "--appendfsync everysec", "--requirepass " + pw, "--masterauth " + pw,
		"--replica-announce-ip datastorage-redis-0.datastorage-redis.kubernaut-system.svc.cluster.local"} {
		if !strings.Contains(first, want) {
			t.Errorf("redis pod 0 at first start: redis-server %s lacks %q", first, want)
		}
	}
	if strings.Contains(first, "--replicaof") {
		t.Errorf("redis pod 0 at first start (no Sentinel answers) must be the master: %s", first)
	}
	if second := runStartScript(t, r, ext, servers, "datastorage-redis-1", ""); !strings.Contains(second,
		"--replicaof datastorage-redis-0.datastorage-redis.kubernaut-system.svc.cluster.local 6379") {
		t.Errorf("redis pod 1 at first start must replicate pod 0: %s", second)
	}
	// After a failover pod 0 comes back as a replica of the master the Sentinels name.
	promoted := "datastorage-redis-2.datastorage-redis.kubernaut-system.svc.cluster.local"
	if again := runStartScript(t, r, ext, servers, "datastorage-redis-0", promoted); !strings.Contains(again, "--replicaof "+promoted+" 6379") {
		t.Errorf("redis pod 0 after a failover must replicate the master the Sentinels name: %s", again)
	}

	conf := runStartScript(t, r, ext, sentinels, "datastorage-redis-sentinel-1", "")
	for _, want := range []string{
		"sentinel monitor " + s.MasterName + " datastorage-redis-0.datastorage-redis.kubernaut-system.svc.cluster.local 6379 2",
		"sentinel auth-pass " + s.MasterName + " " + pw,
		"sentinel resolve-hostnames yes",
		"sentinel announce-ip datastorage-redis-sentinel-1.datastorage-redis-sentinel.kubernaut-system.svc.cluster.local",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("sentinel.conf lacks %q:\n%s", want, conf)
		}
	}

	np := r.get(t, "NetworkPolicy", "datastorage")
	if !strings.Contains(fmt.Sprint(np.Typed), "26379") {
		t.Error("the service's NetworkPolicy must let it reach the Sentinels on 26379")
	}
}

// runStartScript runs a StatefulSet's start script as pod `pod` would, with the files the pod
// mounts, and stand-ins on PATH: hostname prints pod, redis-cli answers master (nothing when
// ""), redis-server records its arguments. It returns redis-server's arguments for a server,
// or the sentinel.conf it was started with for a Sentinel.
func runStartScript(t *testing.T, r *rendered, ext []string, sts *appsv1.StatefulSet, pod, master string) string {
	t.Helper()
	c := sts.Spec.Template.Spec.Containers[0]
	files := materialise(t, r, ext, productionNS, withClaims(sts), c)
	bin := t.TempDir()
	out := filepath.Join(t.TempDir(), "args")
	stub := map[string]string{
		"hostname":     "echo " + pod,
		"timeout":      `shift; exec "$@"`,
		"redis-cli":    `[ -n "$FAKE_MASTER" ] && printf '%s\n6379\n' "$FAKE_MASTER"; exit 0`,
		"redis-server": `for a in "$@"; do printf '%s ' "$a"; done > "$FAKE_OUT"; [ -f "$1" ] && cat "$1" >> "$FAKE_OUT"; exit 0`,
	}
	for name, body := range stub {
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	args := slices.Clone(c.Command)
	for i, a := range args {
		args[i] = files.rewrite.Replace(a)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(slices.Clone(files.env), "PATH="+bin+":"+os.Getenv("PATH"), "FAKE_MASTER="+master, "FAKE_OUT="+out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s start script: %v\n%s", pod, err, b)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("%s start script did not exec redis-server: %v", pod, err)
	}
	// Paths inside the pod read as the pod sees them.
	return strings.ReplaceAll(string(got), files.root, "")
}
