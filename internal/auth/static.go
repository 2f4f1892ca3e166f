package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"

	"gopkg.in/yaml.v3"
)

// Static authorizes bearer tokens listed in a YAML file (auth.mode static):
//
//	tokens:
//	  - name: gateway                # the caller's identity
//	    token: "long-random-secret"
//	    verbs: [get, create]         # any of get, create, update
//	  - name: alice
//	    token: "another-secret"
//	    verbs: [get, update]
//	    user: true                   # a person: events record actor_type user
//
// Names and tokens must be unique, every entry needs at least one verb, and
// unknown keys are errors. `tokens: []` is valid and refuses everybody; an
// empty file is not (it is more likely a half-written rotation).
//
// The file is re-read when it changes (looked at no more often than
// ReloadOptions.Interval, on requests), so tokens are added, rotated and
// revoked without a restart; `tokens: []` revokes every token. A file that
// fails to load (deleted, unreadable, empty, invalid) keeps the previous
// tokens: a half-written rotation must not lock every caller out. The
// failure is logged and, with ReloadOptions.Metrics, counted and shown by a
// gauge that the DataStorageAuthFileReloadFailing alert watches.
//
// Presented tokens are compared with every listed token in constant time,
// through their SHA-256 digests, so neither the position of a match nor the
// length of the real tokens shows in the response time.
type Static struct {
	files  *watchedFiles
	tokens atomic.Pointer[[]staticToken]
}

type staticToken struct {
	digest [sha256.Size]byte
	id     Identity
	verbs  []Verb
}

// NewStatic loads the token file at path. An unreadable or invalid file is
// an error: the service must not start without the tokens it was given.
func NewStatic(path string, opts ReloadOptions) (*Static, error) {
	s := &Static{}
	s.files = newWatchedFiles("token file", "token_file", []string{path}, opts, func(c [][]byte) error {
		tokens, err := parseTokenFile(c[0])
		if err != nil {
			return err
		}
		s.tokens.Store(&tokens)
		return nil
	})
	if err := s.files.initial(); err != nil {
		return nil, fmt.Errorf("auth: token file %s: %w", path, err)
	}
	return s, nil
}

// Reload re-reads the token file now, whatever the interval. It reports
// whether the tokens changed; on error the previous tokens stay in force.
func (s *Static) Reload() (bool, error) { return s.files.reload() }

// Authorize implements the static mode: the token must be listed, and
// listed with verb.
func (s *Static) Authorize(_ context.Context, token string, verb Verb) (Identity, error) {
	s.files.maybeReload()
	if token == "" {
		return Identity{}, fmt.Errorf("%w: no bearer token", ErrUnauthenticated)
	}
	tokens := *s.tokens.Load()
	digest := sha256.Sum256([]byte(token))
	match := -1
	for i := range tokens {
		eq := subtle.ConstantTimeCompare(digest[:], tokens[i].digest[:])
		match = subtle.ConstantTimeSelect(eq, i, match)
	}
	if match < 0 {
		return Identity{}, fmt.Errorf("%w: the bearer token is not in the token file", ErrUnauthenticated)
	}
	t := tokens[match]
	if !slices.Contains(t.verbs, verb) {
		return t.id, fmt.Errorf("%w: token %q may not use verb %s", ErrForbidden, t.id.Name, verb)
	}
	return t.id, nil
}

type tokenFile struct {
	Tokens *[]tokenEntry `yaml:"tokens"`
}

type tokenEntry struct {
	Name  string   `yaml:"name"`
	Token string   `yaml:"token"`
	Verbs []string `yaml:"verbs"`
	User  bool     `yaml:"user"`
}

func parseTokenFile(data []byte) ([]staticToken, error) {
	var f tokenFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the file is empty (write `tokens: []` to refuse every caller)")
		}
		return nil, err
	}
	if f.Tokens == nil {
		return nil, errors.New("no `tokens` key (write `tokens: []` to refuse every caller)")
	}
	var errs []error
	names := map[string]bool{}
	digests := map[[sha256.Size]byte]bool{}
	out := make([]staticToken, 0, len(*f.Tokens))
	for i, e := range *f.Tokens {
		where := fmt.Sprintf("tokens[%d]", i)
		if e.Name != "" {
			where += fmt.Sprintf(" (%s)", e.Name)
		}
		fail := func(format string, a ...any) { errs = append(errs, fmt.Errorf(where+": "+format, a...)) }
		switch {
		case strings.TrimSpace(e.Name) == "":
			fail("name is required")
		case names[e.Name]:
			fail("name is used twice")
		}
		names[e.Name] = true
		// Tokens never appear in messages.
		token := strings.TrimSpace(e.Token)
		digest := sha256.Sum256([]byte(token))
		switch {
		case token == "":
			fail("token is required")
		case token != e.Token:
			fail("token has leading or trailing white space")
		case digests[digest]:
			fail("token is the same as an earlier entry's")
		}
		digests[digest] = true
		verbs, err := parseVerbs(e.Verbs)
		switch {
		case err != nil:
			fail("%v", err)
		case len(verbs) == 0:
			fail("verbs: at least one of get, create, update is required")
		}
		out = append(out, staticToken{digest: digest, id: Identity{Name: e.Name, User: e.User}, verbs: verbs})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}
