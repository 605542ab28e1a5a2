package protocol

import (
	"bytes"
	"encoding/binary"
	"math"
	"unicode/utf8"
)

// decodeBatchFast decodes the body of a batch message in its common form
// without reflection: definite lengths, the integer keys of Batch and
// Point each at most once, text names and tags, finite numbers, bools and
// text values. Anything else (unknown or repeated keys, null, byte strings,
// nested values, NaN, limits reached, malformed or trailing bytes) returns
// ok=false and the general decoder takes the same bytes, so errors and
// unusual encodings keep its exact behaviour. When ok, the batch equals
// what the general decoder returns (FuzzDecodeBatchFast checks this).
func decodeBatchFast(body []byte) (b *Batch, ok bool) {
	r := fastReader{buf: body}
	n, ok := r.head(majorMap)
	if !ok || n > 5 {
		return nil, false
	}
	b = new(Batch)
	var seen uint8
	for range n {
		k, ok := r.head(majorUint)
		if !ok || k < 1 || k > 5 || seen&(1<<k) != 0 {
			return nil, false
		}
		seen |= 1 << k
		switch k {
		case 1:
			b.Seq, ok = r.head(majorUint)
		case 2:
			b.BaseTime, ok = r.int()
		case 3:
			b.Tags, ok = r.tags()
		case 4:
			b.Points, ok = r.points()
		case 5:
			b.Dropped, ok = r.head(majorUint)
		}
		if !ok {
			return nil, false
		}
	}
	return b, r.i == len(body)
}

// BatchPoints reads how many points an encoded batch message (Encode of
// a Batch) carries, from the length of its points array, without decoding
// the points. ok is false for anything not in the form Encode writes. It
// does not check the rest of the message: use it for accounting (an
// agent pacing its sends), never to accept input.
func BatchPoints(data []byte) (n int, ok bool) {
	if len(data) < 2 || data[0] != 0x82 || data[1] != byte(TypeBatch) {
		return 0, false
	}
	r := fastReader{buf: data[2:]}
	keys, ok := r.head(majorMap)
	if !ok || keys > 5 {
		return 0, false
	}
	for range keys {
		k, ok := r.head(majorUint)
		if !ok {
			return 0, false
		}
		switch k {
		case 1, 5:
			_, ok = r.head(majorUint)
		case 2:
			_, ok = r.int()
		case 3:
			ok = r.skipTags()
		case 4:
			n, ok := r.head(majorArr)
			if !ok || n > maxArrayElements {
				return 0, false
			}
			return int(n), true
		default:
			return 0, false
		}
		if !ok {
			return 0, false
		}
	}
	return 0, true // no points array
}

// CBOR major types (RFC 8949 §3.1).
const (
	majorUint = 0
	majorNeg  = 1
	majorText = 3
	majorArr  = 4
	majorMap  = 5
	majorFlt  = 7
)

type fastReader struct {
	buf []byte
	i   int
	// shared holds the point tag maps decoded so far, by their encoding:
	// points of a batch mostly repeat a few tag sets, and equal encodings
	// share one map (decoded maps are read-only, see Point).
	shared []sharedTags
}

// maxSharedTags bounds the tag sets looked up per batch.
const maxSharedTags = 8

type sharedTags struct {
	raw  []byte
	tags map[string]string
}

// next reads an item head: its major type, additional info and argument.
// Indefinite lengths and reserved values fail.
func (r *fastReader) next() (major, info byte, arg uint64, ok bool) {
	if r.i >= len(r.buf) {
		return 0, 0, 0, false
	}
	c := r.buf[r.i]
	r.i++
	major, info = c>>5, c&0x1f
	var size int
	switch {
	case info < 24:
		return major, info, uint64(info), true
	case info == 24:
		size = 1
	case info == 25:
		size = 2
	case info == 26:
		size = 4
	case info == 27:
		size = 8
	default:
		return 0, 0, 0, false
	}
	if len(r.buf)-r.i < size {
		return 0, 0, 0, false
	}
	p := r.buf[r.i : r.i+size]
	r.i += size
	switch size {
	case 1:
		arg = uint64(p[0])
	case 2:
		arg = uint64(binary.BigEndian.Uint16(p))
	case 4:
		arg = uint64(binary.BigEndian.Uint32(p))
	default:
		arg = binary.BigEndian.Uint64(p)
	}
	return major, info, arg, true
}

// head reads a head of the given major type.
func (r *fastReader) head(major byte) (uint64, bool) {
	m, _, arg, ok := r.next()
	return arg, ok && m == major
}

func (r *fastReader) int() (int64, bool) {
	m, _, arg, ok := r.next()
	if !ok || arg > math.MaxInt64 {
		return 0, false
	}
	switch m {
	case majorUint:
		return int64(arg), true
	case majorNeg:
		return -1 - int64(arg), true
	}
	return 0, false
}

func (r *fastReader) text() (string, bool) {
	n, ok := r.head(majorText)
	if !ok || n > uint64(len(r.buf)-r.i) {
		return "", false
	}
	b := r.buf[r.i : r.i+int(n)]
	r.i += int(n)
	if !utf8.Valid(b) {
		return "", false
	}
	return string(b), true
}

func (r *fastReader) tags() (map[string]string, bool) {
	n, ok := r.head(majorMap)
	if !ok || n > maxMapPairs || n > uint64(len(r.buf)-r.i) {
		return nil, false
	}
	m := make(map[string]string, n)
	for range n {
		k, ok := r.text()
		if !ok {
			return nil, false
		}
		if _, dup := m[k]; dup {
			return nil, false
		}
		if m[k], ok = r.text(); !ok {
			return nil, false
		}
	}
	return m, true
}

// pointTags reads a point's tag map, reusing the map of an earlier point
// with the same encoding (the bytes were checked when it was decoded).
func (r *fastReader) pointTags() (map[string]string, bool) {
	start := r.i
	if r.skipTags() {
		raw := r.buf[start:r.i]
		for _, s := range r.shared {
			if bytes.Equal(s.raw, raw) {
				return s.tags, true
			}
		}
	}
	r.i = start
	m, ok := r.tags()
	if ok && len(r.shared) < maxSharedTags {
		r.shared = append(r.shared, sharedTags{r.buf[start:r.i], m})
	}
	return m, ok
}

// skipTags moves past a map of text pairs without checking its content.
func (r *fastReader) skipTags() bool {
	n, ok := r.head(majorMap)
	if !ok || n > maxMapPairs {
		return false
	}
	for range 2 * n {
		l, ok := r.head(majorText)
		if !ok || l > uint64(len(r.buf)-r.i) {
			return false
		}
		r.i += int(l)
	}
	return true
}

func (r *fastReader) points() ([]Point, bool) {
	n, ok := r.head(majorArr)
	// Every point takes at least one byte: a count beyond the remaining
	// bytes is malformed, and must not size an allocation.
	if !ok || n > maxArrayElements || n > uint64(len(r.buf)-r.i) {
		return nil, false
	}
	points := make([]Point, n)
	for i := range points {
		if !r.point(&points[i]) {
			return nil, false
		}
	}
	return points, true
}

func (r *fastReader) point(p *Point) bool {
	n, ok := r.head(majorMap)
	if !ok || n > 4 {
		return false
	}
	var seen uint8
	for range n {
		k, ok := r.head(majorUint)
		if !ok || k < 1 || k > 4 || seen&(1<<k) != 0 {
			return false
		}
		seen |= 1 << k
		switch k {
		case 1:
			p.Name, ok = r.text()
		case 2:
			p.DT, ok = r.int()
		case 3:
			p.Value, ok = r.value()
		case 4:
			p.Tags, ok = r.pointTags()
		}
		if !ok {
			return false
		}
	}
	return true
}

// value reads a point value: an integer (int64), a finite float of any
// width (float64), a bool or text.
func (r *fastReader) value() (any, bool) {
	start := r.i
	m, info, arg, ok := r.next()
	if !ok {
		return nil, false
	}
	switch m {
	case majorUint, majorNeg:
		r.i = start
		return r.int()
	case majorText:
		r.i = start
		return r.text()
	case majorFlt:
		var f float64
		switch info {
		case 20:
			return false, true
		case 21:
			return true, true
		case 25:
			if arg&0x7c00 == 0x7c00 { // infinity or NaN
				return nil, false
			}
			f = float16(uint16(arg))
		case 26:
			f = float64(math.Float32frombits(uint32(arg)))
		case 27:
			f = math.Float64frombits(arg)
		default:
			return nil, false
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, false
		}
		return f, true
	}
	return nil, false
}

// float16 converts a finite (exponent not all ones) IEEE 754 half-precision value (RFC 8949
// Appendix D).
func float16(h uint16) float64 {
	exp, frac := int(h>>10)&0x1f, float64(h&0x3ff)
	var f float64
	if exp == 0 {
		f = math.Ldexp(frac, -24)
	} else {
		f = math.Ldexp(frac+1024, exp-25)
	}
	if h&0x8000 != 0 {
		f = -f
	}
	return f
}
