package catalog

import (
	"errors"
	"fmt"
	"strings"
)

// Version is a parsed semantic version MAJOR.MINOR.PATCH[-PRERELEASE]
// (CONTRACT §15.1: no leading v, no build metadata).
type Version struct {
	Major, Minor, Patch uint64
	// Prerelease holds the dot-separated pre-release identifiers; empty for
	// a stable version.
	Prerelease []string
}

// maxNumericDigits bounds every numeric part, so the sortable key of
// VersionKey has fixed-width fields. Ten digits is far beyond any real
// version and keeps the key short.
const maxNumericDigits = 10

// ParseVersion parses s as a semantic version. Its errors say what is wrong
// in words a registration's field error can carry.
func ParseVersion(s string) (Version, error) {
	var v Version
	if s == "" {
		return v, errors.New("must not be empty")
	}
	if strings.HasPrefix(s, "v") || strings.HasPrefix(s, "V") {
		return v, errors.New("must not start with v: MAJOR.MINOR.PATCH[-PRERELEASE]")
	}
	if strings.Contains(s, "+") {
		return v, errors.New("build metadata (+…) is not allowed")
	}
	core, pre, hasPre := strings.Cut(s, "-")
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return v, errors.New("must be MAJOR.MINOR.PATCH[-PRERELEASE]")
	}
	nums := [3]*uint64{&v.Major, &v.Minor, &v.Patch}
	for i, p := range parts {
		n, err := numeric(p)
		if err != nil {
			return v, fmt.Errorf("%s part: %w", [3]string{"major", "minor", "patch"}[i], err)
		}
		*nums[i] = n
	}
	if hasPre {
		if pre == "" {
			return v, errors.New("pre-release after - must not be empty")
		}
		for _, id := range strings.Split(pre, ".") {
			if id == "" {
				return v, errors.New("pre-release identifiers must not be empty")
			}
			for _, c := range id {
				if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-') {
					return v, fmt.Errorf("pre-release identifier %q may hold only [0-9A-Za-z-]", id)
				}
			}
			if allDigits(id) {
				if _, err := numeric(id); err != nil {
					return v, fmt.Errorf("pre-release identifier %q: %w", id, err)
				}
			}
			v.Prerelease = append(v.Prerelease, id)
		}
	}
	return v, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func numeric(s string) (uint64, error) {
	switch {
	case !allDigits(s):
		return 0, errors.New("must be a non-negative integer")
	case len(s) > 1 && s[0] == '0':
		return 0, errors.New("must not have leading zeros")
	case len(s) > maxNumericDigits:
		return 0, fmt.Errorf("must have at most %d digits", maxNumericDigits)
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		n = n*10 + uint64(s[i]-'0')
	}
	return n, nil
}

// String is the version's text form.
func (v Version) String() string {
	s := fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch)
	if len(v.Prerelease) > 0 {
		s += "-" + strings.Join(v.Prerelease, ".")
	}
	return s
}

// Key is the version's sortable key: byte order of keys (COLLATE "C" in
// PostgreSQL) is semantic-version precedence, so lists, keyset cursors and
// the choice of the latest version all order in SQL by one column.
//
// Layout: the three numbers zero-padded to 10 digits; then "1" for a stable
// version (it outranks every pre-release of the same numbers) or "0"
// followed by each pre-release identifier and a "!" terminator. A numeric
// identifier is "0", its length as two digits and its digits (so it orders
// numerically and below every alphanumeric one); an alphanumeric identifier
// is "1" and its text (ASCII order). "!" sorts below every identifier byte,
// so "alpha" < "alpha.1" and "alpha" < "alpha1", and a shorter list of equal
// identifiers sorts first, as SemVer 2.0.0 §11 requires.
func (v Version) Key() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%010d%010d%010d", v.Major, v.Minor, v.Patch)
	if len(v.Prerelease) == 0 {
		b.WriteByte('1')
		return b.String()
	}
	b.WriteByte('0')
	for _, id := range v.Prerelease {
		if allDigits(id) {
			fmt.Fprintf(&b, "0%02d%s", len(id), id)
		} else {
			b.WriteByte('1')
			b.WriteString(id)
		}
		b.WriteByte('!')
	}
	return b.String()
}

// Compare returns -1, 0 or +1 as v has lower, equal or higher precedence than w.
func (v Version) Compare(w Version) int { return strings.Compare(v.Key(), w.Key()) }
