package influx

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/protocol"
)

// DeviceTag is the tag every stored point carries with its device ID.
const DeviceTag = protocol.DeviceTag

// DefaultField is the field key of a point whose name has no '.'.
const DefaultField = "value"

// errUnrepresentable marks a point line protocol cannot carry unchanged; it
// is dead-lettered without being sent.
var errUnrepresentable = errors.New("not representable in line protocol")

// AppendLineProtocol appends b's points to dst as InfluxDB line protocol
// (millisecond timestamps, one '\n'-terminated line per point) following the
// schema in protocol/SPEC.md "InfluxDB schema":
//
//   - name "cpu.usage_percent" -> measurement "cpu", field "usage_percent"
//     (split at the first '.'); a name without '.' -> measurement = name,
//     field "value";
//   - tags: batch tags, overridden by point tags, overridden by device
//     labels, and always device=<DeviceID>; sorted by key;
//   - time: BaseTime + DT, Unix milliseconds;
//   - value: float64, int64, bool and string as is; uint64 as int64 (InfluxDB
//     integers are signed; values above MaxInt64 become float64, which
//     Validate forbids anyway).
//
// Points that cannot be written unchanged (see appendPoint) are left out;
// the error lists them. It is for benchmarks and tools: the sink renders
// through the same code.
func AppendLineProtocol(dst []byte, b *hub.IngestBatch) ([]byte, error) {
	var e encoder
	e.buf = dst
	e.appendBatch(b)
	var errs []error
	for _, r := range e.refused {
		errs = append(errs, fmt.Errorf("point %d: %s", r.index, r.err))
	}
	return e.buf, errors.Join(errs...)
}

// tag is one key=value pair of a point's tag set. src orders the sources
// of StoredTags by precedence (a higher src wins on the same key).
type tag struct {
	k, v string
	src  uint8
}

// Tag sources, in increasing precedence (SPEC.md "InfluxDB schema").
const (
	srcBatch uint8 = iota
	srcPoint
	srcLabel
	srcDevice
)

// refusal is a point the encoder left out.
type refusal struct {
	device string
	index  int    // the point's index in its batch
	line   string // a readable rendering for the dead letter
	err    string
}

// encoder renders batches into one reusable buffer. Line i ends at
// ends[i]; devices[i] sent it. Not safe for concurrent use: the sink keeps
// a pool of them.
type encoder struct {
	buf     []byte
	ends    []int
	devices []string
	refused []refusal

	base    []tag  // the batch's tag set for points without own tags, sorted
	baseSeg []byte // base rendered: ",k=v,k=v"
	baseErr error  // why base cannot be rendered, if it cannot
	point   []tag  // scratch: one point's own tags, sorted
	merged  []tag  // scratch: base merged with point

	// segs caches the rendered tag sets of this batch's point tag maps, by
	// map identity: Decode shares one map between points with equal tags.
	segs []tagSeg
}

// maxTagSegs bounds the tag sets cached per batch.
const maxTagSegs = 8

type tagSeg struct {
	tags unsafe.Pointer // the map
	seg  []byte
	err  error
}

func (e *encoder) reset() {
	e.buf = e.buf[:0]
	e.ends = e.ends[:0]
	clear(e.devices) // let device IDs of past writes be collected
	e.devices = e.devices[:0]
	e.refused = e.refused[:0]
}

// line returns line i, '\n' included.
func (e *encoder) line(i int) []byte {
	start := 0
	if i > 0 {
		start = e.ends[i-1]
	}
	return e.buf[start:e.ends[i]]
}

// span returns lines [from, to) as one request body.
func (e *encoder) span(from, to int) []byte {
	start := 0
	if from > 0 {
		start = e.ends[from-1]
	}
	return e.buf[start:e.ends[to-1]]
}

// appendBatch renders every point of b. The tag set shared by the points
// without own tags is merged, checked and rendered once per batch.
func (e *encoder) appendBatch(b *hub.IngestBatch) {
	batch := b.Batch
	e.base = e.base[:0]
	for k, v := range batch.Tags {
		e.base = append(e.base, tag{k, v, srcBatch})
	}
	for k, v := range b.Labels {
		e.base = append(e.base, tag{k, v, srcLabel})
	}
	e.base = append(e.base, tag{DeviceTag, b.DeviceID, srcDevice})
	e.base = sortTags(e.base)
	e.baseSeg, e.baseErr = appendTags(e.baseSeg[:0], e.base)
	for i := range e.segs {
		e.segs[i].tags = nil // the maps may be collected and their addresses reused
	}
	e.segs = e.segs[:0]
	for i := range batch.Points {
		start := len(e.buf)
		err := e.appendPoint(&batch.Points[i], batch.BaseTime)
		if err != nil {
			e.buf = e.buf[:start]
			e.refused = append(e.refused, refusal{device: b.DeviceID, index: i,
				line: readableLine(b, i), err: err.Error()})
			continue
		}
		e.ends = append(e.ends, len(e.buf))
		e.devices = append(e.devices, b.DeviceID)
	}
}

// appendPoint renders one line. On error e.buf holds a partial line the
// caller truncates.
func (e *encoder) appendPoint(p *protocol.Point, baseTime int64) error {
	measurement, field := protocol.SplitName(p.Name)
	if strings.HasPrefix(measurement, "#") {
		// A line starting with '#' is a comment: it would vanish silently.
		return fmt.Errorf("measurement %q: %w", measurement, errUnrepresentable)
	}
	var err error
	if e.buf, err = appendKey(e.buf, measurement, false); err != nil {
		return fmt.Errorf("measurement: %w", err)
	}
	seg, err := e.tagSegment(p.Tags)
	if err != nil {
		return err
	}
	e.buf = append(e.buf, seg...)
	e.buf = append(e.buf, ' ')
	if e.buf, err = appendKey(e.buf, field, true); err != nil {
		return fmt.Errorf("field key: %w", err)
	}
	e.buf = append(e.buf, '=')
	if e.buf, err = appendValue(e.buf, p.Value); err != nil {
		return fmt.Errorf("%s: %w", p.Name, err)
	}
	e.buf = append(e.buf, ' ')
	e.buf = strconv.AppendInt(e.buf, baseTime+p.DT, 10)
	e.buf = append(e.buf, '\n')
	return nil
}

// tagSegment returns the rendered tag set of a point with the given own
// tags.
func (e *encoder) tagSegment(own map[string]string) ([]byte, error) {
	if len(own) == 0 {
		return e.baseSeg, e.baseErr
	}
	id := reflect.ValueOf(own).UnsafePointer()
	for i := range e.segs {
		if e.segs[i].tags == id {
			return e.segs[i].seg, e.segs[i].err
		}
	}
	var s tagSeg
	if len(e.segs) < cap(e.segs) {
		s.seg = e.segs[:len(e.segs)+1][len(e.segs)].seg[:0] // reuse its buffer
	}
	s.tags = id
	s.seg, s.err = appendTags(s.seg, e.pointTags(own))
	if len(e.segs) < maxTagSegs {
		e.segs = append(e.segs, s)
	}
	return s.seg, s.err
}

// pointTags merges a point's own tags into the batch's sorted base set:
// a point tag overrides a batch tag but not a label or the device tag.
func (e *encoder) pointTags(own map[string]string) []tag {
	e.point = e.point[:0]
	for k, v := range own {
		e.point = append(e.point, tag{k, v, srcPoint})
	}
	e.point = sortTags(e.point)
	out := e.merged[:0]
	base, pt := e.base, e.point
	for len(base) > 0 || len(pt) > 0 {
		switch {
		case len(pt) == 0 || (len(base) > 0 && base[0].k < pt[0].k):
			out, base = append(out, base[0]), base[1:]
		case len(base) == 0 || pt[0].k < base[0].k:
			out, pt = append(out, pt[0]), pt[1:]
		default: // same key: the higher source wins
			t := pt[0]
			if base[0].src > t.src {
				t = base[0]
			}
			out, base, pt = append(out, t), base[1:], pt[1:]
		}
	}
	e.merged = out
	return out
}

// sortTags sorts ts by key and keeps, for each key, the tag with the highest
// source.
func sortTags(ts []tag) []tag {
	slices.SortFunc(ts, func(a, b tag) int {
		if c := strings.Compare(a.k, b.k); c != 0 {
			return c
		}
		return int(b.src) - int(a.src)
	})
	return slices.CompactFunc(ts, func(a, b tag) bool { return a.k == b.k })
}

// appendTags renders ",k=v" for each tag. Like the InfluxDB client, it
// leaves out tags with an empty key or value (line protocol cannot carry an
// empty tag value; Validate refuses them anyway).
func appendTags(dst []byte, ts []tag) ([]byte, error) {
	var err error
	for _, t := range ts {
		if t.k == "" || t.v == "" {
			continue
		}
		dst = append(dst, ',')
		if dst, err = appendKey(dst, t.k, true); err != nil {
			return dst, fmt.Errorf("tag key: %w", err)
		}
		dst = append(dst, '=')
		if dst, err = appendKey(dst, t.v, true); err != nil {
			return dst, fmt.Errorf("tag %s: value: %w", t.k, err)
		}
	}
	return dst, nil
}

// appendKey appends a measurement (equals false), tag key, tag value or
// field key (equals true) with ',' and ' ' escaped, and '=' too where the
// line protocol needs it. InfluxDB (1.8 models/points.go, and 2.x) only
// unescapes those: a backslash before any other byte stays as is, so a
// backslash could swallow the separator after it, and a newline ends the
// line even when escaped. Both, and every other control character, are
// refused rather than stored altered.
func appendKey(dst []byte, s string, equals bool) ([]byte, error) {
	if s == "" {
		return dst, fmt.Errorf("empty: %w", errUnrepresentable)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ',' || c == ' ' || (equals && c == '='):
			dst = append(dst, '\\', c)
		case c < 0x20 || c == '\\':
			return dst, fmt.Errorf("%q: byte %d (%q): %w", s, i, c, errUnrepresentable)
		default:
			dst = append(dst, c)
		}
	}
	return dst, nil
}

// appendValue renders a field value. Floats are written in full ('f'
// format, shortest exact), integers with the 'i' suffix; a uint64 is an
// integer when it fits in int64 (InfluxDB 1.8 refuses the 'u' suffix).
func appendValue(dst []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case float64:
		return appendFloat(dst, v)
	case int64:
		return append(strconv.AppendInt(dst, v, 10), 'i'), nil
	case uint64:
		if v > math.MaxInt64 {
			return appendFloat(dst, float64(v))
		}
		return append(strconv.AppendInt(dst, int64(v), 10), 'i'), nil
	case bool:
		return strconv.AppendBool(dst, v), nil
	case string:
		return appendString(dst, v), nil
	case int:
		return append(strconv.AppendInt(dst, int64(v), 10), 'i'), nil
	case float32:
		return appendFloat(dst, float64(v))
	}
	return dst, fmt.Errorf("value of type %T: %w", v, errUnrepresentable)
}

func appendFloat(dst []byte, f float64) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return dst, fmt.Errorf("value %v: %w", f, errUnrepresentable)
	}
	return strconv.AppendFloat(dst, f, 'f', -1, 64), nil
}

// appendString renders a string field: quoted, with '"' and '\' escaped,
// which is all InfluxDB unescapes; other bytes, newlines included, are
// allowed as is inside the quotes.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for {
		i := strings.IndexAny(s, `"\`)
		if i < 0 {
			break
		}
		dst = append(dst, s[:i]...)
		dst = append(dst, '\\', s[i])
		s = s[i+1:]
	}
	dst = append(dst, s...)
	return append(dst, '"')
}

// readableLine describes a refused point for its dead letter: line
// protocol in spirit, with the bytes that made it unrepresentable quoted
// Go-style.
func readableLine(b *hub.IngestBatch, i int) string {
	p := &b.Batch.Points[i]
	tags := protocol.StoredTags(b.Batch.Tags, p.Tags, b.Labels, b.DeviceID)
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var sb strings.Builder
	sb.WriteString(strconv.Quote(p.Name))
	for _, k := range keys {
		fmt.Fprintf(&sb, ",%s=%s", strconv.Quote(k), strconv.Quote(tags[k]))
	}
	fmt.Fprintf(&sb, " %#v %d\n", p.Value, b.Batch.BaseTime+p.DT)
	return sb.String()
}
