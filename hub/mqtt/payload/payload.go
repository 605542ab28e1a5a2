package payload

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/fleetwire/fleetwire/protocol"
)

// Format names a payload encoding.
type Format string

// Supported formats; see the package documentation for each one's mapping.
const (
	FormatCBOR      Format = "cbor"
	FormatJSON      Format = "json"
	FormatLine      Format = "line"
	FormatSenMLJSON Format = "senml+json"
	FormatSenMLCBOR Format = "senml+cbor"
	// FormatAuto picks one of the others from the payload's first bytes
	// (see Detect).
	FormatAuto Format = "auto"
)

// MaxPayloadBytes is the largest payload Decode accepts. protocol.Limits
// has no message size field, so the bound is fixed here.
const MaxPayloadBytes = 256 << 10

// MaxJSONDepth bounds object nesting in the flat JSON shape (the top-level
// object is depth 1).
const MaxJSONDepth = 8

// Time bounds: years 1 to 9999 in Unix ms. Keeping every time inside them
// means BaseTime and DT never overflow.
const (
	minUnixMs = -62135596800000
	maxUnixMs = 253402300799999
)

// Errors. Every error Decode returns wraps ErrInvalid, except an unknown
// format, which is the caller's mistake.
var (
	ErrInvalid       = errors.New("invalid payload")
	ErrUnknownFormat = errors.New("unknown payload format")
)

// ParseFormat maps a format name ("auto", "cbor", "json", "line",
// "senml+json", "senml+cbor") to its Format.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case FormatCBOR, FormatJSON, FormatLine, FormatSenMLJSON, FormatSenMLCBOR, FormatAuto:
		return f, nil
	}
	return "", fmt.Errorf("%w: %q", ErrUnknownFormat, s)
}

// Decode parses payload in format into a batch with Seq 0, times relative
// to the earliest point, validated against lim. now is the time of receipt,
// used for points without a time and for relative SenML times.
func Decode(format Format, payload []byte, now time.Time, lim protocol.Limits) (*protocol.Batch, error) {
	if _, err := ParseFormat(string(format)); err != nil {
		return nil, err
	}
	if len(payload) > MaxPayloadBytes {
		return nil, fmt.Errorf("%w: %d bytes > limit %d", ErrInvalid, len(payload), MaxPayloadBytes)
	}
	if len(payload) == 0 {
		return nil, fmt.Errorf("%w: empty payload", ErrInvalid)
	}
	if format == FormatAuto {
		format = Detect(payload)
	}
	b := newBuilder(now, lim)
	var err error
	switch format {
	case FormatCBOR:
		err = decodeCBOR(b, payload)
	case FormatJSON:
		err = decodeJSON(b, payload)
	case FormatLine:
		err = decodeLine(b, payload)
	case FormatSenMLJSON:
		err = decodeSenMLJSON(b, payload)
	case FormatSenMLCBOR:
		err = decodeSenMLCBOR(b, payload)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, format, err)
	}
	return b.batch()
}

// Detect names the format of a payload from its first bytes: a JSON
// object is "json", a JSON array "senml+json"; a CBOR array whose first
// item is a map is "senml+cbor", any other CBOR array the protocol's batch
// ("cbor", an array of type and body); everything else is "line". The
// formats cannot be confused: JSON and line protocol are text starting with
// '{', '[' or a measurement name, CBOR arrays start with bytes 0x80..0x9f.
func Detect(payload []byte) Format {
	text := bytes.TrimLeft(payload, " \t\r\n")
	switch {
	case len(text) > 0 && text[0] == '{':
		return FormatJSON
	case len(text) > 0 && text[0] == '[':
		return FormatSenMLJSON
	case len(payload) > 1 && payload[0]>>5 == 4: // CBOR major type 4: array
		if first := cborArrayItem(payload); first < len(payload) && payload[first]>>5 == 5 { // 5: map
			return FormatSenMLCBOR
		}
		return FormatCBOR
	}
	return FormatLine
}

// cborArrayItem returns the offset of the first item of the CBOR array
// whose head starts data (RFC 8949 §3: the length follows in 0, 1, 2, 4 or
// 8 bytes; 31 is indefinite). Malformed heads give len(data).
func cborArrayItem(data []byte) int {
	switch info := data[0] & 0x1f; {
	case info < 24 || info == 31:
		return 1
	case info <= 27:
		return 1 + 1<<(info-24)
	}
	return len(data)
}

// builder collects points with absolute times and turns them into a batch.
type builder struct {
	now       int64 // Unix ms
	lim       protocol.Limits
	maxPoints int
	tags      map[string]string
	dropped   uint64
	points    []protocol.Point
	times     []int64
}

func newBuilder(now time.Time, lim protocol.Limits) *builder {
	maxPoints := lim.MaxPoints
	if maxPoints <= 0 {
		maxPoints = protocol.DefaultLimits.MaxPoints
	}
	return &builder{now: now.UnixMilli(), lim: lim, maxPoints: maxPoints}
}

// add appends a point at Unix ms t. It refuses points beyond the limit
// early, so a large payload does not build a large batch first.
func (b *builder) add(name string, t int64, v any, tags map[string]string) error {
	if len(b.points) >= b.maxPoints {
		return fmt.Errorf("more than %d points", b.maxPoints)
	}
	if err := checkMs(t); err != nil {
		return fmt.Errorf("%s: %v", name, err)
	}
	b.points = append(b.points, protocol.Point{Name: name, Value: v, Tags: tags})
	b.times = append(b.times, t)
	return nil
}

func checkMs(t int64) error {
	if t < minUnixMs || t > maxUnixMs {
		return fmt.Errorf("time %d ms outside years 1..9999", t)
	}
	return nil
}

// msFromFloat converts a time in Unix ms held as a float, checking range.
func msFromFloat(ms float64) (int64, error) {
	if math.IsNaN(ms) || ms < minUnixMs || ms > maxUnixMs {
		return 0, fmt.Errorf("time %v ms outside years 1..9999", ms)
	}
	return int64(math.Round(ms)), nil
}

func (b *builder) batch() (*protocol.Batch, error) {
	if len(b.points) == 0 {
		return nil, fmt.Errorf("%w: no points", ErrInvalid)
	}
	base := b.times[0]
	for _, t := range b.times {
		base = min(base, t)
	}
	for i := range b.points {
		b.points[i].DT = b.times[i] - base
	}
	out := &protocol.Batch{BaseTime: base, Tags: b.tags, Points: b.points, Dropped: b.dropped}
	// Validate insists on a sequence number; the bridge assigns the real one.
	check := *out
	check.Seq = 1
	if err := check.Validate(b.lim); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return out, nil
}

// decodeCBOR reads the protocol's own batch message.
func decodeCBOR(b *builder, data []byte) error {
	msg, err := protocol.Decode(data, MaxPayloadBytes)
	if err != nil {
		return err
	}
	in, ok := msg.(*protocol.Batch)
	if !ok {
		return fmt.Errorf("message is a %T, want a batch", msg)
	}
	if err := checkMs(in.BaseTime); err != nil {
		return fmt.Errorf("base time: %v", err)
	}
	b.tags, b.dropped = in.Tags, in.Dropped
	for _, p := range in.Points {
		if p.DT < minUnixMs-maxUnixMs || p.DT > maxUnixMs-minUnixMs {
			return fmt.Errorf("%s: dt %d out of range", p.Name, p.DT)
		}
		if err := b.add(p.Name, in.BaseTime+p.DT, p.Value, p.Tags); err != nil {
			return err
		}
	}
	return nil
}
