package protocol

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"
)

// DefaultMaxMessageBytes is the default per-message size limit (both ends).
const DefaultMaxMessageBytes = 1 << 20

// cborMajorMap is CBOR major type 5 (RFC 8949 §3.1), the top 3 bits of an
// item's first byte.
const cborMajorMap = 5

// Decoder limits. They bound what a peer can make the decoder allocate or
// recurse into before any validation runs (SPEC.md "Decoding limits").
const (
	maxNestedLevels  = 8
	maxArrayElements = 100_000
	maxMapPairs      = 1024
)

// Errors returned by Decode. Wrapped errors carry the detail.
var (
	ErrTooLarge    = errors.New("message exceeds size limit")
	ErrMalformed   = errors.New("malformed message")
	ErrUnknownType = errors.New("unknown message type")
	ErrInvalid     = errors.New("invalid message")
)

var (
	decMode cbor.DecMode
	encMode cbor.EncMode
)

func init() {
	var err error
	decMode, err = cbor.DecOptions{
		MaxNestedLevels:  maxNestedLevels,
		MaxArrayElements: maxArrayElements,
		MaxMapPairs:      maxMapPairs,
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		IndefLength:      cbor.IndefLengthForbidden,
		TagsMd:           cbor.TagsForbidden,
		IntDec:           cbor.IntDecConvertSignedOrFail,
		UTF8:             cbor.UTF8RejectInvalid,
		DefaultMapType:   nil,
	}.DecMode()
	if err != nil {
		panic("protocol: dec mode: " + err.Error())
	}
	encMode, err = cbor.EncOptions{
		Sort:          cbor.SortCoreDeterministic,
		ShortestFloat: cbor.ShortestFloat16,
		NaNConvert:    cbor.NaNConvert7e00,
		InfConvert:    cbor.InfConvertFloat16,
		IndefLength:   cbor.IndefLengthForbidden,
		TagsMd:        cbor.TagsForbidden,
	}.EncMode()
	if err != nil {
		panic("protocol: enc mode: " + err.Error())
	}
}

// envelope is the outer 2-element array [type, body] of every message.
type envelope struct {
	_    struct{} `cbor:",toarray"`
	Type Type
	Body cbor.RawMessage
}

// inEnvelope is envelope as read: a wide type field, so that any unsigned
// type number is reported as ErrUnknownType rather than as an overflow.
type inEnvelope struct {
	_    struct{} `cbor:",toarray"`
	Type uint64
	Body cbor.RawMessage
}

// Encode returns the wire form of msg, which must be a pointer to or a value
// of one of the message structs.
func Encode(msg any) ([]byte, error) {
	t, err := typeOf(msg)
	if err != nil {
		return nil, err
	}
	body, err := encMode.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", t, err)
	}
	out, err := encMode.Marshal(envelope{Type: t, Body: body})
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", t, err)
	}
	return out, nil
}

func typeOf(msg any) (Type, error) {
	switch msg.(type) {
	case Hello, *Hello:
		return TypeHello, nil
	case Welcome, *Welcome:
		return TypeWelcome, nil
	case Batch, *Batch:
		return TypeBatch, nil
	case Ack, *Ack:
		return TypeAck, nil
	case Command, *Command:
		return TypeCommand, nil
	case CommandResult, *CommandResult:
		return TypeCommandResult, nil
	}
	return 0, fmt.Errorf("encode: %T is not a protocol message", msg)
}

// Decode parses one message of at most maxBytes bytes (0 means
// DefaultMaxMessageBytes) and returns a pointer to its struct (*Hello,
// *Batch, ...). It does not run the semantic checks of Validate.
func Decode(data []byte, maxBytes int) (any, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxMessageBytes
	}
	if len(data) > maxBytes {
		return nil, fmt.Errorf("%w: %d bytes > %d", ErrTooLarge, len(data), maxBytes)
	}
	// Telemetry is nearly all a hub reads: batches in the common form skip
	// the reflection-based decoder (same result, see decodeBatchFast).
	if len(data) > 2 && data[0] == 0x82 && data[1] == byte(TypeBatch) {
		if b, ok := decodeBatchFast(data[2:]); ok {
			return b, nil
		}
	}
	return decodeGeneral(data)
}

// decodeGeneral is Decode through the reflection-based CBOR decoder, which
// enforces the decoding limits and reports every error.
func decodeGeneral(data []byte) (any, error) {
	var env inEnvelope
	if err := decMode.Unmarshal(data, &env); err != nil {
		return nil, fmt.Errorf("%w: envelope: %v", ErrMalformed, err)
	}
	if env.Type > math.MaxUint8 {
		return nil, fmt.Errorf("%w: %d", ErrUnknownType, env.Type)
	}
	var msg any
	switch Type(env.Type) {
	case TypeHello:
		msg = new(Hello)
	case TypeWelcome:
		msg = new(Welcome)
	case TypeBatch:
		msg = new(Batch)
	case TypeAck:
		msg = new(Ack)
	case TypeCommand:
		msg = new(Command)
	case TypeCommandResult:
		msg = new(CommandResult)
	default:
		return nil, fmt.Errorf("%w: %d", ErrUnknownType, env.Type)
	}
	// A body of another major type (null, say) would decode into a zero
	// struct without error; SPEC.md requires a map.
	if len(env.Body) == 0 || env.Body[0]>>5 != cborMajorMap {
		return nil, fmt.Errorf("%w: %s: body is not a map", ErrMalformed, Type(env.Type))
	}
	if err := decMode.Unmarshal(env.Body, msg); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, Type(env.Type), err)
	}
	return msg, nil
}

// Limits bound the content of a batch. Zero fields take the defaults of
// DefaultLimits.
type Limits struct {
	MaxPoints      int // points per batch
	MaxTags        int // tags per point, batch tags and point tags counted together
	MaxNameLen     int // metric name bytes
	MaxTagKeyLen   int
	MaxTagValueLen int
	MaxStringLen   int // string field value bytes
}

// DefaultLimits are the hub's defaults (SPEC.md "Limits").
var DefaultLimits = Limits{
	MaxPoints:      5000,
	MaxTags:        16,
	MaxNameLen:     128,
	MaxTagKeyLen:   64,
	MaxTagValueLen: 256,
	MaxStringLen:   4096,
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.MaxPoints > 0 {
		d.MaxPoints = l.MaxPoints
	}
	if l.MaxTags > 0 {
		d.MaxTags = l.MaxTags
	}
	if l.MaxNameLen > 0 {
		d.MaxNameLen = l.MaxNameLen
	}
	if l.MaxTagKeyLen > 0 {
		d.MaxTagKeyLen = l.MaxTagKeyLen
	}
	if l.MaxTagValueLen > 0 {
		d.MaxTagValueLen = l.MaxTagValueLen
	}
	if l.MaxStringLen > 0 {
		d.MaxStringLen = l.MaxStringLen
	}
	return d
}

// Validate checks a decoded batch against lim. The error names the first
// offending point by index.
func (b *Batch) Validate(lim Limits) error {
	lim = lim.withDefaults()
	if b.Seq == 0 {
		return fmt.Errorf("%w: batch seq must be >= 1", ErrInvalid)
	}
	if len(b.Points) == 0 {
		return fmt.Errorf("%w: batch has no points", ErrInvalid)
	}
	if len(b.Points) > lim.MaxPoints {
		return fmt.Errorf("%w: %d points > limit %d", ErrInvalid, len(b.Points), lim.MaxPoints)
	}
	if err := validateTags(b.Tags, lim); err != nil {
		return fmt.Errorf("%w: batch tags: %v", ErrInvalid, err)
	}
	for i := range b.Points {
		if err := b.Points[i].validate(lim, len(b.Tags)); err != nil {
			return fmt.Errorf("%w: point %d: %v", ErrInvalid, i, err)
		}
	}
	return nil
}

func (p *Point) validate(lim Limits, batchTags int) error {
	if err := ValidName(p.Name, lim.MaxNameLen); err != nil {
		return err
	}
	// The text after the first '.' becomes the InfluxDB field key, which
	// must not be empty (SPEC.md "InfluxDB schema").
	if strings.HasSuffix(p.Name, ".") {
		return fmt.Errorf("name %q: must not end with '.'", truncate(p.Name))
	}
	if len(p.Tags)+batchTags > lim.MaxTags {
		return fmt.Errorf("%d tags > limit %d", len(p.Tags)+batchTags, lim.MaxTags)
	}
	if err := validateTags(p.Tags, lim); err != nil {
		return err
	}
	switch v := p.Value.(type) {
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("%s: value %v is not finite", p.Name, v)
		}
	case int64, bool:
	case uint64:
		// InfluxDB integers are signed 64-bit, and the decoder refuses
		// larger values, so an agent must not send them either.
		if v > math.MaxInt64 {
			return fmt.Errorf("%s: integer value %d > %d", p.Name, v, int64(math.MaxInt64))
		}
	case string:
		if len(v) > lim.MaxStringLen {
			return fmt.Errorf("%s: string value of %d bytes > limit %d", p.Name, len(v), lim.MaxStringLen)
		}
		if !utf8.ValidString(v) {
			return fmt.Errorf("%s: string value is not UTF-8", p.Name)
		}
	case nil:
		return fmt.Errorf("%s: missing value", p.Name)
	default:
		return fmt.Errorf("%s: value of type %T not allowed (float, int, bool or text only)", p.Name, v)
	}
	return nil
}

func validateTags(tags map[string]string, lim Limits) error {
	if len(tags) > lim.MaxTags {
		return fmt.Errorf("%d tags > limit %d", len(tags), lim.MaxTags)
	}
	for k, v := range tags {
		if err := ValidName(k, lim.MaxTagKeyLen); err != nil {
			return fmt.Errorf("tag key: %v", err)
		}
		if k == DeviceTag {
			return errors.New(`tag key "device" is reserved`)
		}
		if len(v) == 0 || len(v) > lim.MaxTagValueLen {
			return fmt.Errorf("tag %s: value length %d not in 1..%d", k, len(v), lim.MaxTagValueLen)
		}
		if !utf8.ValidString(v) {
			return fmt.Errorf("tag %s: value is not UTF-8", k)
		}
		// Line protocol cannot carry these in a tag value unchanged: the
		// InfluxDB client rewrites control characters and a backslash
		// can swallow the separator after it.
		if i := strings.IndexFunc(v, BadTagRune); i >= 0 {
			return fmt.Errorf("tag %s: byte %d of value is a control character or backslash", k, i)
		}
	}
	return nil
}

// ValidName checks a metric name or tag key: 1..max bytes of [A-Za-z0-9_.-],
// starting with a letter or '_'.
func ValidName(s string, max int) error {
	if len(s) == 0 || len(s) > max {
		return fmt.Errorf("name %q: length %d not in 1..%d", truncate(s), len(s), max)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			(i > 0 && (c == '.' || c == '-' || (c >= '0' && c <= '9')))
		if !ok {
			return fmt.Errorf("name %q: byte %d (%q) not allowed", truncate(s), i, c)
		}
	}
	return nil
}

// BadTagRune reports a character a tag value may not hold: a control
// character or a backslash (device labels, stored as tags, follow it too).
func BadTagRune(r rune) bool {
	return r < 0x20 || r == 0x7f || r == '\\'
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
