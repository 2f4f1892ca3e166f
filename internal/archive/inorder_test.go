package archive

import (
	"context"
	"errors"
	"math/big"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestInOrderConsumesInIndexOrder: the results of parallel work reach the
// consumer in index order, whatever order the workers finish in.
func TestInOrderConsumesInIndexOrder(t *testing.T) {
	t.Parallel()
	const n = 200
	var got []int
	err := inOrder(context.Background(), n, 4, func(i int) (int, error) {
		if i%7 == 0 {
			// Make the early indexes slower than the later ones.
			s := 0
			for k := range 20000 {
				s += k
			}
			_ = s
		}
		return i * i, nil
	}, func(i, v int) error {
		require.Equal(t, i*i, v)
		got = append(got, i)
		return nil
	})
	require.NoError(t, err)
	require.Len(t, got, n)
	for i, v := range got {
		require.Equal(t, i, v)
	}
}

// TestInOrderStopsAtTheFirstError: an error of the work or of the consumer
// ends the run with that error, and nothing after it is consumed.
func TestInOrderStopsAtTheFirstError(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	last := -1
	err := inOrder(context.Background(), 100, 3, func(i int) (int, error) {
		if i == 40 {
			return 0, boom
		}
		return i, nil
	}, func(i, _ int) error { last = i; return nil })
	require.ErrorIs(t, err, boom)
	assert.Equal(t, 39, last)

	err = inOrder(context.Background(), 100, 3, func(i int) (int, error) { return i, nil },
		func(i, _ int) error {
			if i == 10 {
				return boom
			}
			return nil
		})
	require.ErrorIs(t, err, boom)
}

// TestSumsAreSignedSumsAndXor: Sums reads the first and second 8 bytes of
// a hash as signed big-endian integers, as PostgreSQL's
// ('x' || hex)::bit(64)::bigint does, sums the first in 128 bits (no
// overflow) and XORs the second.
func TestSumsAreSignedSumsAndXor(t *testing.T) {
	t.Parallel()
	d := NewDigest()
	neg := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 0, 0, 0, 0, 3}  // -2, 3
	big1 := []byte{0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 5} // max int64, 5
	d.Add(big1)
	d.Add(big1)
	d.Add(neg)
	want := new(big.Int).Mul(big.NewInt(1<<62-1+1<<62), big.NewInt(2))
	want.Sub(want, big.NewInt(2))
	s := d.Sums()
	assert.Equal(t, int64(3), s.Count)
	assert.Equal(t, want.String(), s.Sum, "beyond 64 bits, and a negative term")
	assert.Equal(t, int64(3), s.Xor, "5 XOR 5 XOR 3")

	short := NewDigest()
	short.Add([]byte{0x01}) // padded on the right: 0x0100000000000000
	assert.Equal(t, "72057594037927936", short.Sums().Sum)

	all := NewDigest()
	for range 4 {
		all.Add(neg)
	}
	assert.Equal(t, "-8", all.Sums().Sum)
}
