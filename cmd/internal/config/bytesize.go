package config

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"strconv"
	"strings"
	"unicode"
)

// ByteSize is a size in bytes that config files, environment variables and
// flags may write with a unit: "64MiB", "512KiB", "1GB", "1.5GiB" or a bare
// integer of bytes. Binary units (KiB, MiB, GiB, TiB) are powers of 1024,
// decimal units (KB, MB, GB, TB) powers of 1000; unit case is ignored.
type ByteSize int64

// byteUnits lists every accepted unit. The single-letter forms ("K", "M")
// are left out on purpose: whether they mean 1000 or 1024 depends on the
// tool the reader last used, and a spool bound should not be a guess.
var byteUnits = map[string]int64{
	"":    1,
	"b":   1,
	"kb":  1000,
	"mb":  1000 * 1000,
	"gb":  1000 * 1000 * 1000,
	"tb":  1000 * 1000 * 1000 * 1000,
	"kib": 1 << 10,
	"mib": 1 << 20,
	"gib": 1 << 30,
	"tib": 1 << 40,
}

// ParseByteSize parses a size such as "64MiB", "1GB", "4096" or "1.5 KiB".
// The result must be a whole, non-negative number of bytes that fits in an
// int64.
func ParseByteSize(s string) (ByteSize, error) {
	in := strings.TrimSpace(s)
	i := strings.IndexFunc(in, func(r rune) bool { return !unicode.IsDigit(r) && r != '.' })
	if i < 0 {
		i = len(in)
	}
	num, unit := in[:i], strings.ToLower(strings.TrimSpace(in[i:]))
	mult, ok := byteUnits[unit]
	if num == "" || !ok {
		return 0, fmt.Errorf("byte size %q: want a number with an optional unit B, KB, MB, GB, TB, KiB, MiB, GiB or TiB", s)
	}
	// big.Rat keeps "1.5GiB" exact and catches overflow without float
	// rounding surprises near MaxInt64.
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, fmt.Errorf("byte size %q: bad number %q", s, num)
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	if !r.IsInt() {
		return 0, fmt.Errorf("byte size %q: not a whole number of bytes", s)
	}
	n := r.Num()
	if !n.IsInt64() {
		return 0, fmt.Errorf("byte size %q: too large", s)
	}
	return ByteSize(n.Int64()), nil
}

// String formats the size with the largest unit that divides it exactly,
// preferring binary units: 64<<20 is "64MiB", 1e9 is "1GB", 1000001 is
// "1000001B". ParseByteSize reads every output back to the same value.
func (b ByteSize) String() string {
	n := int64(b)
	if n == 0 {
		return "0B"
	}
	if n == math.MinInt64 {
		return strconv.FormatInt(n, 10) + "B"
	}
	for _, u := range []struct {
		name string
		size int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
		{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}} {
		if n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

// MarshalText implements encoding.TextMarshaler with String's format.
func (b ByteSize) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseByteSize.
func (b *ByteSize) UnmarshalText(text []byte) error {
	v, err := ParseByteSize(string(text))
	if err != nil {
		return err
	}
	*b = v
	return nil
}

var byteSizeType = reflect.TypeFor[ByteSize]()

// errNegativeSize is returned when a plain number decodes to a negative size.
var errNegativeSize = errors.New("byte size must not be negative")

// byteSizeHook is a mapstructure decode hook: strings become ByteSize via
// ParseByteSize; numbers (YAML `max_bytes: 1048576`) pass through to the
// default integer decoding.
func byteSizeHook(from, to reflect.Type, data any) (any, error) {
	if to != byteSizeType {
		return data, nil
	}
	switch v := data.(type) {
	case string:
		return ParseByteSize(v)
	case int:
		if v < 0 {
			return nil, errNegativeSize
		}
	case int64:
		if v < 0 {
			return nil, errNegativeSize
		}
	}
	return data, nil
}
