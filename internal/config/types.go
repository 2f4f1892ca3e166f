package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration read from a Go duration string such as "90s"
// or "1h30m". The embedded field is the accessor: d.Duration.
type Duration struct {
	time.Duration
}

// UnmarshalText parses a Go duration string. Bare numbers other than 0 are
// refused because the unit they were meant in cannot be known.
func (d *Duration) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	if s != "0" && isDigits(s) {
		return fmt.Errorf("must be a duration with a unit, e.g. %q or %q, got %s", s+"s", s+"ms", s)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf(`must be a duration such as "90s" or "1h30m", got %q`, s)
	}
	d.Duration = v
	return nil
}

// ByteSize is a size in bytes. It is read from a plain number of bytes or a
// number with a unit: B, KiB, MiB, GiB (powers of 1024) or KB, MB, GB
// (powers of 1000); units are case-insensitive.
type ByteSize int64

// Byte size units.
const (
	KiB ByteSize = 1 << 10
	MiB ByteSize = 1 << 20
	GiB ByteSize = 1 << 30
)

// UnmarshalText parses a size such as "16MiB", "10MB" or "1048576".
func (b *ByteSize) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	digits := len(s) - len(strings.TrimLeft(s, "0123456789"))
	num, unit := s[:digits], strings.ToLower(strings.TrimSpace(s[digits:]))
	mult := unitSize(unit)
	if num == "" || mult == 0 {
		return fmt.Errorf(`must be a size such as "16MiB", "512KiB", "10MB" or a number of bytes, got %q`, s)
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n > math.MaxInt64/int64(mult) {
		return fmt.Errorf("must be a size that fits in 63 bits, got %q", s)
	}
	*b = ByteSize(n) * mult
	return nil
}

// String formats the size with the largest binary unit that divides it
// exactly, so values read from "16MiB" print back the same way.
func (b ByteSize) String() string {
	for _, u := range []struct {
		size ByteSize
		name string
	}{{GiB, "GiB"}, {MiB, "MiB"}, {KiB, "KiB"}} {
		if b != 0 && b%u.size == 0 {
			return strconv.FormatInt(int64(b/u.size), 10) + u.name
		}
	}
	return strconv.FormatInt(int64(b), 10) + "B"
}

// unitSize returns the bytes in one unit (lower case), or 0 for an unknown
// unit.
func unitSize(unit string) ByteSize {
	switch unit {
	case "", "b":
		return 1
	case "kb":
		return 1000
	case "mb":
		return 1000 * 1000
	case "gb":
		return 1000 * 1000 * 1000
	case "kib":
		return KiB
	case "mib":
		return MiB
	case "gib":
		return GiB
	default:
		return 0
	}
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
