package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"kubernaut.ai/datastorage/internal/auth"
	"kubernaut.ai/datastorage/internal/config"
	"kubernaut.ai/datastorage/internal/httpapi"
)

// apiSecurity builds what guards the API port: the authorizer of auth.mode
// (nil for none) and the TLS configuration (nil for plain HTTP). Token
// file, certificate and Kubernetes settings are checked here, at start, so a
// mistake stops the service instead of refusing every request.
func apiSecurity(cfg config.Config, environ []string, log *slog.Logger, reg prometheus.Registerer) (httpapi.Authorizer, *tls.Config, error) {
	reload := auth.ReloadOptions{Log: log, Metrics: auth.NewReloadMetrics(reg)}
	authz, err := newAuthorizer(cfg.Auth, environ, reload)
	if err != nil {
		return nil, nil, err
	}
	var tlsCfg *tls.Config
	if t := cfg.Server.TLS; t.Enabled() {
		certs, err := auth.NewCertReloader(t.CertFile, t.KeyFile, reload)
		if err != nil {
			return nil, nil, fmt.Errorf("server.tls: %w", err)
		}
		tlsCfg = certs.ServerConfig()
		log.Info("API port serves HTTPS", "cert_file", t.CertFile, "key_file", t.KeyFile, "min_version", "TLS 1.2")
	}
	return authz, tlsCfg, nil
}

func newAuthorizer(cfg config.Auth, environ []string, reload auth.ReloadOptions) (httpapi.Authorizer, error) {
	log := reload.Log
	switch cfg.Mode {
	case "static":
		s, err := auth.NewStatic(cfg.TokenFile, reload)
		if err != nil {
			return nil, fmt.Errorf("auth.tokenFile: %w", err)
		}
		log.Info("API authentication: static tokens", "token_file", cfg.TokenFile)
		return s, nil
	case "kubernetes":
		cluster, err := auth.LoadCluster(lookupEnv(environ))
		if err != nil {
			return nil, fmt.Errorf("auth.mode kubernetes: %w", err)
		}
		k, err := auth.NewKubernetes(auth.KubernetesOptions{Cluster: cluster, Namespace: cfg.Namespace})
		if err != nil {
			return nil, fmt.Errorf("auth.mode kubernetes: %w", err)
		}
		log.Info("API authentication: Kubernetes TokenReview and SubjectAccessReview",
			"api_server", cluster.Server, "from", cluster.Source, "namespace", cfg.Namespace,
			"resource", auth.ServiceResource+"/"+auth.ServiceName)
		return k, nil
	default:
		log.Warn("API authentication is off (auth.mode none): every caller may read and write")
		return nil, nil
	}
}

// apiRateLimit converts server.rateLimit.
func apiRateLimit(c config.RateLimit) httpapi.RateLimit {
	return httpapi.RateLimit{RequestsPerSecond: float64(c.RequestsPerSecond), Burst: c.Burst}
}

// lookupEnv reads variables from environ (later entries win, as in a real
// environment), so that tests control what the command sees.
func lookupEnv(environ []string) func(string) string {
	return func(name string) string {
		v := ""
		for _, kv := range environ {
			if rest, ok := strings.CutPrefix(kv, name+"="); ok {
				v = rest
			}
		}
		return v
	}
}
