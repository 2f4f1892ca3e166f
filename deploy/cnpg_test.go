package deploy_test

import (
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// cnpgCluster is the part of CloudNativePG's Cluster (postgresql.cnpg.io/v1)
// that the production overlay uses, written from the operator's API
// reference (cloudnative-pg.io, "API Reference": ClusterSpec, StorageConfiguration,
// BootstrapInitDB, PostgresConfiguration, SynchronousReplicaConfiguration,
// AffinityConfiguration, MonitoringConfiguration). The operator's Go API
// module is not served by the module proxy here, so this small schema of our
// own stands in for it: the strict decoding fails on any field outside it (a
// typo, or a field the overlay starts using: add it here deliberately, from
// the reference), and TestProductionPostgreSQLIsACloudNativePGCluster checks
// the fields the reference marks required and those the service relies on.
type cnpgCluster struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		Instances             int    `json:"instances"`
		ImageName             string `json:"imageName,omitempty"`
		PrimaryUpdateStrategy string `json:"primaryUpdateStrategy,omitempty"`
		PostgreSQL            *struct {
			Parameters  map[string]string `json:"parameters,omitempty"`
			Synchronous *struct {
				Method string `json:"method"`
				Number int    `json:"number"`
			} `json:"synchronous,omitempty"`
		} `json:"postgresql,omitempty"`
		Bootstrap *struct {
			InitDB *struct {
				Database string `json:"database"`
				Owner    string `json:"owner"`
				Secret   *struct {
					Name string `json:"name"`
				} `json:"secret,omitempty"`
			} `json:"initdb,omitempty"`
		} `json:"bootstrap,omitempty"`
		Storage    cnpgStorage                  `json:"storage"`
		WALStorage *cnpgStorage                 `json:"walStorage,omitempty"`
		Resources  *corev1.ResourceRequirements `json:"resources,omitempty"`
		Affinity   *struct {
			EnablePodAntiAffinity *bool  `json:"enablePodAntiAffinity,omitempty"`
			PodAntiAffinityType   string `json:"podAntiAffinityType,omitempty"`
			TopologyKey           string `json:"topologyKey,omitempty"`
		} `json:"affinity,omitempty"`
		Monitoring *struct {
			EnablePodMonitor bool `json:"enablePodMonitor,omitempty"`
		} `json:"monitoring,omitempty"`
	} `json:"spec"`
}

type cnpgStorage struct {
	Size         string  `json:"size"`
	StorageClass *string `json:"storageClass,omitempty"`
}

// operatorSecrets are the Secrets CloudNativePG generates for a Cluster
// named datastorage-pg bootstrapped with owner datastorage, with the keys its
// documentation lists ("Connecting from an application", "Certificates"):
// they are neither rendered nor templated in deploy/secrets, the operator
// makes them.
var operatorSecrets = map[string]map[string][]byte{
	"datastorage-pg-app": {
		"username": []byte("datastorage"),
		"password": []byte("generated-by-the-operator"),
		"dbname":   []byte("datastorage"),
		"host":     []byte("datastorage-pg-rw"),
		"port":     []byte("5432"),
		"uri":      []byte("postgresql://datastorage:generated-by-the-operator@datastorage-pg-rw.kubernaut-system:5432/datastorage"),
		"pgpass":   []byte("datastorage-pg-rw:5432:datastorage:datastorage:generated-by-the-operator\n"),
	},
	"datastorage-pg-ca": {
		"ca.crt": []byte("-----BEGIN CERTIFICATE-----\n(the operator's CA)\n-----END CERTIFICATE-----\n"),
	},
}

// The production overlay runs PostgreSQL as a CloudNativePG Cluster of three
// instances with synchronous replication, and the service writes to its -rw
// service and reads from its -ro service with the operator's credentials.
func TestProductionPostgreSQLIsACloudNativePGCluster(t *testing.T) {
	r := render(t, "overlays/production")
	o := r.get(t, "Cluster", "datastorage-pg")
	c := o.Typed.(*cnpgCluster)
	spec := c.Spec
	if spec.Instances != 3 {
		t.Errorf("instances %d, want 3 (a primary and two hot standbys)", spec.Instances)
	}
	if spec.Storage.Size == "" {
		t.Error("storage.size is required")
	}
	if spec.Bootstrap == nil || spec.Bootstrap.InitDB == nil ||
		spec.Bootstrap.InitDB.Database != "datastorage" || spec.Bootstrap.InitDB.Owner != "datastorage" {
		t.Errorf("bootstrap.initdb must create database datastorage owned by datastorage: %+v", spec.Bootstrap)
	}
	if spec.Monitoring == nil || !spec.Monitoring.EnablePodMonitor {
		t.Error("monitoring.enablePodMonitor: the cluster's replication must be watched")
	}
	if spec.PostgreSQL == nil || spec.PostgreSQL.Synchronous == nil || spec.PostgreSQL.Synchronous.Number < 1 ||
		spec.PostgreSQL.Synchronous.Number >= spec.Instances {
		t.Error("postgresql.synchronous.number between 1 and instances-1: an acknowledged event must survive a failover, and one standby down must not stop writes")
	} else if m := spec.PostgreSQL.Synchronous.Method; m != "any" && m != "first" {
		t.Errorf("postgresql.synchronous.method %q, want any or first", m)
	}
	if spec.PostgreSQL == nil || spec.PostgreSQL.Parameters["hot_standby_feedback"] != "on" {
		t.Error("hot_standby_feedback on: exports read from the standbys must not be cancelled by recovery conflicts")
	}
	if spec.Affinity == nil || spec.Affinity.PodAntiAffinityType != "required" {
		t.Error("affinity.podAntiAffinityType required: two instances on one node fail together")
	}

	// The service's configuration points at the Cluster's services.
	for _, w := range []struct {
		name string
		spec corev1.PodSpec
	}{
		{"Deployment/datastorage", r.deployment(t, "datastorage").Spec.Template.Spec},
		{"Job/datastorage-migrate", r.get(t, "Job", "datastorage-migrate").Typed.(*batchv1.Job).Spec.Template.Spec},
	} {
		ctr := w.spec.Containers[0]
		pf := materialise(t, r, []string{"datastorage-pg-app", "datastorage-pg-ca", "datastorage-redis",
			"datastorage-integrity", "datastorage-export-signing", "datastorage-tls"}, "kubernaut-system", w.spec, ctr)
		cfg, err := pf.loadConfig(ctr.Args)
		if err != nil {
			t.Fatalf("%s: %v", w.name, err)
		}
		rw, err := url.Parse(cfg.Database.URL)
		if err != nil || rw.Hostname() != "datastorage-pg-rw" {
			t.Errorf("%s: database.url must name the Cluster's -rw service: %q", w.name, cfg.Database.URL)
		} else {
			q := rw.Query()
			if q.Get("target_session_attrs") != "read-write" {
				t.Errorf("%s: database.url without target_session_attrs=read-write", w.name)
			}
			if q.Get("sslmode") != "verify-full" || !strings.HasPrefix(q.Get("sslrootcert"), pf.root) {
				t.Errorf("%s: database.url must verify the server against the operator's CA (mounted): %q", w.name, cfg.Database.URL)
			}
		}
		ro, err := url.Parse(cfg.Database.ReplicaURL)
		if err != nil || ro.Hostname() != "datastorage-pg-ro" {
			t.Errorf("%s: database.replicaUrl must name the Cluster's -ro service: %q", w.name, cfg.Database.ReplicaURL)
		}
		if cfg.Database.Password != string(operatorSecrets["datastorage-pg-app"]["password"]) {
			t.Errorf("%s: the password must come from the operator's Secret datastorage-pg-app", w.name)
		}
		if ca := filepath.Join(pf.root, "/etc/datastorage/secrets/db-ca/ca.crt"); ca != rw.Query().Get("sslrootcert") {
			t.Errorf("%s: sslrootcert %q is not the mounted CA %s", w.name, rw.Query().Get("sslrootcert"), ca)
		}
	}
}
