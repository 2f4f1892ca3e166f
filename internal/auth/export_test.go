package auth

// CacheSize returns the number of tokens k remembers.
func CacheSize(k *Kubernetes) int { return k.cache.size() }

// InCluster reads a service account mounted at dir.
func InCluster(getenv func(string) string, dir string) (Cluster, error) {
	return inCluster(getenv, dir)
}
