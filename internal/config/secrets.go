package config

import (
	"bytes"
	"fmt"
	"os"

	"gopkg.in/yaml.v3"
)

// readSecrets fills the fields that come only from secret files. Errors
// name the file key or the password key but never the secret itself.
func (c *Config) readSecrets() []error {
	var errs []error
	if d := &c.Database; d.SecretsFile != "" && d.PasswordKey != "" {
		pw, err := readSecret(d.SecretsFile, d.PasswordKey, "database")
		if err != nil {
			errs = append(errs, err)
		}
		d.Password = pw
	}
	if r := &c.Redis; r.SecretsFile != "" && r.PasswordKey != "" {
		pw, err := readSecret(r.SecretsFile, r.PasswordKey, "redis")
		if err != nil {
			errs = append(errs, err)
		}
		r.Password = pw
	}
	if sn := &c.Redis.Sentinel; sn.SecretsFile != "" && sn.PasswordKey != "" {
		pw, err := readSecret(sn.SecretsFile, sn.PasswordKey, "redis.sentinel")
		if err != nil {
			errs = append(errs, err)
		}
		sn.Password = pw
	}
	if path := c.Integrity.HMACKeyFile; path != "" {
		data, err := os.ReadFile(path)
		// Trailing line breaks are dropped because `echo key > file` and
		// editors add one; keeping it would make the same key differ by how
		// the file was written.
		key := bytes.TrimRight(data, "\r\n")
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("config: integrity.hmacKeyFile: %w", err))
		case len(key) == 0:
			errs = append(errs, fmt.Errorf("config: integrity.hmacKeyFile: %s is empty", path))
		default:
			c.Integrity.HMACKey = key
		}
	}
	if path := c.Integrity.SigningKeyFile; path != "" {
		data, err := os.ReadFile(path)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("config: integrity.signingKeyFile: %w", err))
		case len(bytes.TrimSpace(data)) == 0:
			errs = append(errs, fmt.Errorf("config: integrity.signingKeyFile: %s is empty", path))
		default:
			c.Integrity.SigningKey = data
		}
	}
	// The archive's S3 credentials are read by internal/objstore when it
	// opens the target; here they are only checked, so that a missing or
	// empty file stops the start with the key's name.
	for _, f := range []struct{ key, path string }{
		{"archive.s3.accessKeyIdFile", c.Archive.S3.AccessKeyIDFile},
		{"archive.s3.secretAccessKeyFile", c.Archive.S3.SecretAccessKeyFile},
	} {
		if f.path == "" {
			continue
		}
		data, err := os.ReadFile(f.path)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("config: %s: %w", f.key, err))
		case len(bytes.TrimSpace(data)) == 0:
			errs = append(errs, fmt.Errorf("config: %s: %s is empty", f.key, f.path))
		}
	}
	return errs
}

// readSecret returns the value under key in the YAML or JSON map stored in
// path. section ("database", "redis" or "redis.sentinel") prefixes the keys
// named in errors.
func readSecret(path, key, section string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("config: %s.secretsFile: %w", section, err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return "", fmt.Errorf("config: %s.secretsFile: %s is not valid YAML or JSON: %w", section, path, err)
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return "", fmt.Errorf("config: %s.secretsFile: %s must hold a YAML or JSON map", section, path)
	}
	m := doc.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value != key {
			continue
		}
		// Taken from the node rather than decoded so that a password such as
		// 0123 or true stays exactly as written.
		v := m.Content[i+1]
		if v.Kind != yaml.ScalarNode || v.Tag == "!!null" || v.Value == "" {
			return "", fmt.Errorf("config: %s.passwordKey: %q in %s must be a non-empty string", section, key, path)
		}
		return v.Value, nil
	}
	return "", fmt.Errorf("config: %s.passwordKey: no key %q in %s", section, key, path)
}
