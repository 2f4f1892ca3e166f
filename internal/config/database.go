package config

import (
	"net/url"
	"strconv"
	"strings"
)

// ConnString returns the connection string for pgx: URL as given, or a
// keyword/value DSN built from the parts with every value quoted. The
// password from SecretsFile is added only when the string carries none, so
// a password written into URL deliberately is respected. It returns "" when
// no database is configured (see Config.RequireDatabase). MaxConns and
// ConnectTimeout are not included; the caller applies them to the parsed
// pgx config.
func (d Database) ConnString() string {
	switch {
	case d.URL != "":
		return d.urlWithPassword()
	case d.Host != "":
		port, sslMode := d.Port, d.SSLMode
		if port == 0 {
			port = defaultPGPort
		}
		if sslMode == "" {
			sslMode = defaultSSLMode
		}
		parts := []string{
			"host=" + quoteDSN(d.Host),
			"port=" + strconv.Itoa(port),
			"dbname=" + quoteDSN(d.Name),
			"user=" + quoteDSN(d.User),
		}
		if d.Password != "" {
			parts = append(parts, "password="+quoteDSN(d.Password))
		}
		parts = append(parts, "sslmode="+quoteDSN(sslMode))
		return strings.Join(parts, " ")
	default:
		return ""
	}
}

// ReplicaConnString returns ReplicaURL with the password from SecretsFile
// added as ConnString adds it to URL (the standby has the primary's roles),
// or "" when no standby is configured.
func (d Database) ReplicaConnString() string {
	if d.ReplicaURL == "" {
		return ""
	}
	return d.withPassword(d.ReplicaURL)
}

func (d Database) urlWithPassword() string { return d.withPassword(d.URL) }

func (d Database) withPassword(conn string) string {
	if d.Password == "" {
		return conn
	}
	if !isPostgresURL(conn) {
		if dsnHasKey(conn, "password") {
			return conn
		}
		return conn + " password=" + quoteDSN(d.Password)
	}
	u, err := url.Parse(conn)
	if err != nil {
		return conn // Load has rejected it already; pgx will say why
	}
	if _, ok := u.User.Password(); ok || u.Query().Has("password") {
		return conn
	}
	if u.User != nil {
		u.User = url.UserPassword(u.User.Username(), d.Password)
	} else {
		// Without a user in the URL, userinfo would have to carry an empty
		// user name, which pgx would then use instead of its default.
		q := u.Query()
		q.Set("password", d.Password)
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// usesParts reports whether any of the host/port/name/user/sslMode keys is
// set.
func (d Database) usesParts() bool {
	return d.Host != "" || d.Port != 0 || d.Name != "" || d.User != "" || d.SSLMode != ""
}

// fillPartDefaults applies the port and SSL mode defaults, which exist only
// for the parts form: with a URL they would conflict with it.
func (d *Database) fillPartDefaults() {
	if d.URL != "" || !d.usesParts() {
		return
	}
	if d.Port == 0 {
		d.Port = defaultPGPort
	}
	if d.SSLMode == "" {
		d.SSLMode = defaultSSLMode
	}
}

func isPostgresURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// quoteDSN quotes a keyword/value DSN value the way libpq reads it: in
// single quotes, with backslash and single quote escaped by a backslash.
func quoteDSN(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	return "'" + r.Replace(s) + "'"
}

// dsnHasKey reports whether the keyword/value DSN sets key. It follows the
// libpq quoting rules so that a value such as application_name='password=x'
// is not mistaken for the key.
func dsnHasKey(dsn, key string) bool {
	s := dsn
	for {
		s = strings.TrimLeft(s, " \t\n\r\v\f")
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			return false
		}
		if strings.TrimSpace(s[:eq]) == key {
			return true
		}
		s = strings.TrimLeft(s[eq+1:], " \t\n\r\v\f")
		quoted := strings.HasPrefix(s, "'")
		if quoted {
			s = s[1:]
		}
		i := 0
		for ; i < len(s); i++ {
			c := s[i]
			if c == '\\' {
				i++
				continue
			}
			if (quoted && c == '\'') || (!quoted && strings.IndexByte(" \t\n\r\v\f", c) >= 0) {
				break
			}
		}
		if i >= len(s) {
			return false
		}
		s = s[i+1:]
	}
}
