package config

import (
	"fmt"
	"strconv"
	"strings"
)

// RedisSentinel configures the spool's Redis as a Sentinel-monitored master
// with replicas (redis.sentinel.*). The service asks the Sentinels for the
// master and asks again after a failover, through go-redis's failover client.
type RedisSentinel struct {
	// MasterName is the name the Sentinels monitor the master under. Setting
	// it (with Addrs) turns Sentinel on.
	MasterName string `yaml:"masterName"`
	// Addrs are the Sentinels' host:port; all of them, so that losing some
	// still leaves one to ask.
	Addrs AddrList `yaml:"addrs"`
	// SecretsFile holds the Sentinels' own password (requirepass in
	// sentinel.conf) under PasswordKey; empty when they need none. The data
	// servers' password is redis.secretsFile's.
	SecretsFile string `yaml:"secretsFile"`
	PasswordKey string `yaml:"passwordKey"`
	// Password is read from SecretsFile by Load.
	Password string `yaml:"-"`
}

// Enabled reports whether Sentinel is configured.
func (s RedisSentinel) Enabled() bool { return s.MasterName != "" || len(s.Addrs) > 0 }

// AddrList is a list of host:port: a YAML sequence in the file, a
// comma-separated list in an environment variable.
type AddrList []string

// UnmarshalText reads a comma-separated list; empty means none.
func (l *AddrList) UnmarshalText(text []byte) error {
	*l = nil
	for a := range strings.SplitSeq(string(text), ",") {
		if a = strings.TrimSpace(a); a != "" {
			*l = append(*l, a)
		}
	}
	return nil
}

// String is the comma-separated form UnmarshalText reads.
func (l AddrList) String() string { return strings.Join(l, ",") }

// setList takes the items of a YAML sequence.
func (l *AddrList) setList(items []string) error {
	*l = nil
	for _, a := range items {
		if a = strings.TrimSpace(a); a == "" {
			return fmt.Errorf("must not hold an empty entry")
		}
		*l = append(*l, a)
	}
	return nil
}

// MinReplicas is redis.minReplicas: a count, or AutoReplicas.
type MinReplicas int

// AutoReplicas ("auto", the default) means 1 when redis.sentinel is
// configured and 0 otherwise: with Sentinel there is a replica to lose an
// acknowledged write to, without it there is usually no replica at all.
const AutoReplicas MinReplicas = -1

// maxMinReplicas bounds redis.minReplicas; a spool with more replicas than
// this to wait for is not a design anyone needs.
const maxMinReplicas = 16

// UnmarshalText reads "auto" or a count.
func (m *MinReplicas) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	if s == "auto" {
		*m = AutoReplicas
		return nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > maxMinReplicas {
		return fmt.Errorf("must be auto or an integer from 0 to %d, got %q", maxMinReplicas, s)
	}
	*m = MinReplicas(n)
	return nil
}

// String is "auto" or the count.
func (m MinReplicas) String() string {
	if m == AutoReplicas {
		return "auto"
	}
	return strconv.Itoa(int(m))
}

// RequiredReplicas is how many replicas must confirm a spooled write before
// it is acknowledged: redis.minReplicas resolved.
func (r Redis) RequiredReplicas() int {
	if r.MinReplicas == AutoReplicas {
		if r.Sentinel.Enabled() {
			return 1
		}
		return 0
	}
	return int(r.MinReplicas)
}

func (r Redis) validateHA(p *problems) {
	s := r.Sentinel
	if s.Enabled() {
		if s.MasterName == "" {
			p.add("redis.sentinel.masterName", "required when redis.sentinel.addrs is set")
		}
		if len(s.Addrs) == 0 {
			p.add("redis.sentinel.addrs", "required when redis.sentinel.masterName is set (the Sentinels' host:port)")
		}
		for _, a := range s.Addrs {
			if !validHostPort(a) {
				p.add("redis.sentinel.addrs", "each entry must be host:port with a port between 1 and 65535, got %q", a)
			}
		}
	}
	if s.SecretsFile != "" && s.PasswordKey == "" {
		p.add("redis.sentinel.passwordKey", "required when redis.sentinel.secretsFile is set")
	}
	if s.SecretsFile != "" && !s.Enabled() {
		p.add("redis.sentinel.secretsFile", "only used with redis.sentinel.masterName and redis.sentinel.addrs")
	}
	if m := r.MinReplicas; m != AutoReplicas && (m < 0 || m > maxMinReplicas) {
		p.add("redis.minReplicas", "must be auto or an integer from 0 to %d, got %d", maxMinReplicas, int(m))
	}
	positive(p, "redis.waitTimeout", r.WaitTimeout)
}
