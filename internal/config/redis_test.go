package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRedisSentinelFromFileAndEnvironment(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secrets := filepath.Join(dir, "sentinel.yaml")
	require.NoError(t, os.WriteFile(secrets, []byte("sentinelpw: s3cret\n"), 0o600))

	cfg, err := loadYAML(t, "redis:\n  sentinel:\n    masterName: spool\n    addrs: [a:26379, b:26379]\n    secretsFile: "+secrets+"\n    passwordKey: sentinelpw\n")
	require.NoError(t, err)
	assert.Equal(t, AddrList{"a:26379", "b:26379"}, cfg.Redis.Sentinel.Addrs)
	assert.Equal(t, "s3cret", cfg.Redis.Sentinel.Password)
	assert.Equal(t, 1, cfg.Redis.RequiredReplicas(), "auto is 1 with Sentinel")

	cfg, err = Load("", []string{
		"DATASTORAGE_REDIS_SENTINEL_MASTER_NAME=spool",
		"DATASTORAGE_REDIS_SENTINEL_ADDRS=a:26379, b:26379,c:26379",
		"DATASTORAGE_REDIS_MIN_REPLICAS=0",
	})
	require.NoError(t, err)
	assert.Equal(t, AddrList{"a:26379", "b:26379", "c:26379"}, cfg.Redis.Sentinel.Addrs)
	assert.Equal(t, 0, cfg.Redis.RequiredReplicas(), "an explicit 0 turns WAIT off even with Sentinel")

	cfg, err = Load("", nil)
	require.NoError(t, err)
	assert.Equal(t, 0, cfg.Redis.RequiredReplicas(), "auto is 0 without Sentinel")
	cfg, err = Load("", []string{"DATASTORAGE_REDIS_MINREPLICAS=2"})
	require.NoError(t, err)
	assert.Equal(t, 2, cfg.Redis.RequiredReplicas(), "a plain master with replicas may wait for them too")
}

// TestRedisSentinelErrorsNameTheKey checks each refusal names its key.
func TestRedisSentinelErrorsNameTheKey(t *testing.T) {
	t.Parallel()
	for name, tt := range map[string]struct {
		yaml string
		env  []string
		want string
	}{
		"addrs without name":  {yaml: "redis:\n  sentinel:\n    addrs: [a:1]\n", want: "config: redis.sentinel.masterName: required when redis.sentinel.addrs is set"},
		"name without addrs":  {yaml: "redis:\n  sentinel:\n    masterName: m\n", want: "config: redis.sentinel.addrs: required when redis.sentinel.masterName is set"},
		"bad addr":            {yaml: "redis:\n  sentinel:\n    masterName: m\n    addrs: [a:1, nope]\n", want: `config: redis.sentinel.addrs: each entry must be host:port with a port between 1 and 65535, got "nope"`},
		"empty entry":         {yaml: "redis:\n  sentinel:\n    masterName: m\n    addrs: [a:1, '']\n", want: "config: redis.sentinel.addrs: must not hold an empty entry (line 4)"},
		"addrs scalar number": {yaml: "redis:\n  sentinel:\n    addrs: {a: 1}\n", want: "config: redis.sentinel.addrs: must be a list of host:port (line 3)"},
		"min replicas word":   {yaml: "redis:\n  minReplicas: some\n", want: `config: redis.minReplicas: must be auto or an integer from 0 to 16, got "some" (line 2)`},
		"min replicas large":  {env: []string{"DATASTORAGE_REDIS_MINREPLICAS=17"}, want: `DATASTORAGE_REDIS_MINREPLICAS (redis.minReplicas): must be auto or an integer from 0 to 16, got "17"`},
		"min replicas neg":    {yaml: "redis:\n  minReplicas: -1\n", want: `config: redis.minReplicas: must be auto or an integer from 0 to 16, got "-1"`},
		"wait timeout":        {yaml: "redis:\n  waitTimeout: 0s\n", want: "config: redis.waitTimeout: must be greater than 0"},
		"secrets without key": {yaml: "redis:\n  sentinel:\n    masterName: m\n    addrs: [a:1]\n    secretsFile: /x\n    passwordKey: ''\n", want: "config: redis.sentinel.passwordKey: required when redis.sentinel.secretsFile is set"},
		"secrets without use": {yaml: "redis:\n  sentinel:\n    secretsFile: /x\n", want: "config: redis.sentinel.secretsFile: only used with redis.sentinel.masterName"},
		"missing secret file": {yaml: "redis:\n  sentinel:\n    masterName: m\n    addrs: [a:1]\n    secretsFile: /nonexistent/s.yaml\n", want: "config: redis.sentinel.secretsFile: open /nonexistent/s.yaml"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := loadYAML(t, tt.yaml, tt.env...)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}
