package catalog

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestVersionKeyOrdersBySemverPrecedence(t *testing.T) {
	// SemVer 2.0.0 §11's example, plus numeric parts of different widths.
	ordered := []string{"0.9.99", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
		"1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.2.0", "1.9.0", "1.10.0", "1.10.1-0", "1.10.1-1a", "1.10.1-a",
		"1.10.1-a-b", "1.10.1", "10.0.0", "9999999999.0.0"}
	shuffled := slices.Clone(ordered)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	slices.SortFunc(shuffled, func(a, b string) int {
		va, err := ParseVersion(a)
		require.NoError(t, err, a)
		vb, err := ParseVersion(b)
		require.NoError(t, err, b)
		return va.Compare(vb)
	})
	assert.Equal(t, ordered, shuffled)
	for _, s := range ordered {
		v, err := ParseVersion(s)
		require.NoError(t, err)
		assert.Equal(t, s, v.String())
	}
}

func TestParseVersionRefuses(t *testing.T) {
	for _, s := range []string{"", "v1.0.0", "1.0", "1.0.0.0", "1.0.0+b", "01.0.0", "1.00.0", "1.0.0-", "1.0.0-a..b",
		"1.0.0-01", "1.0.0-a_b", "-1.0.0", "1.0.x", "12345678901.0.0"} {
		_, err := ParseVersion(s)
		assert.Error(t, err, s)
	}
}
