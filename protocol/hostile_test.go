package protocol

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// hx decodes hex written with optional spaces, for hand-built CBOR.
func hx(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// batchWith builds [3, {1: 1, 4: [{1: "x", 3: <value>}]}]: a batch whose only
// point has the given raw CBOR value.
func batchWith(value []byte) []byte {
	return cat(hx("82 03 a2 01 01 04 81 a2 01 61 78 03"), value)
}

// hostile is a message Decode or Validate must reject.
type hostile struct {
	name    string
	data    []byte
	decodes bool   // Decode succeeds and Batch.Validate rejects
	want    error  // sentinel, errors.Is
	msg     string // substring of the error text
}

func hostileInputs() []hostile {
	deep := batchWith(cat(bytes.Repeat([]byte{0x81}, 10_000), []byte{0x00}))
	ack := hx("82 04 a1 01 18 2a")
	return []hostile{
		{name: "deep_nesting_10000", data: deep, want: ErrMalformed, msg: "exceeded max nested level"},
		{name: "array_header_2e38", data: hx("82 03 a2 01 01 04 9b 00 00 00 40 00 00 00 00"), want: ErrMalformed, msg: "exceeded max number of elements"},
		{name: "map_header_2e38", data: hx("82 03 a2 01 01 03 bb 00 00 00 40 00 00 00 00"), want: ErrMalformed, msg: "exceeded max number of key-value pairs"},
		{name: "text_header_2e38", data: batchWith(hx("7b 00 00 00 40 00 00 00 00")), want: ErrMalformed, msg: "unexpected EOF"},
		{name: "dup_key_body", data: hx("82 04 a2 01 01 01 02"), want: ErrMalformed, msg: "duplicate map key"},
		{name: "dup_key_tags", data: hx("82 03 a2 01 01 03 a2 61 61 61 78 61 61 61 79"), want: ErrMalformed, msg: "duplicate map key"},
		{name: "indef_array", data: hx("82 03 a2 01 01 04 9f a2 01 61 78 03 00 ff"), want: ErrMalformed, msg: "indefinite-length array"},
		{name: "indef_map", data: hx("82 04 bf 01 01 ff"), want: ErrMalformed, msg: "indefinite-length map"},
		{name: "indef_text", data: batchWith(hx("7f 61 61 ff")), want: ErrMalformed, msg: "indefinite-length UTF-8 text string"},
		{name: "indef_bytes", data: hx("82 06 a3 01 61 78 02 61 78 04 5f 41 78 ff"), want: ErrMalformed, msg: "indefinite-length byte string"},
		{name: "indef_envelope", data: hx("9f 04 a1 01 01 ff"), want: ErrMalformed, msg: "indefinite-length array"},
		{name: "tag_epoch_time", data: hx("82 03 a2 01 01 02 c1 1a 69 55 b9 00"), want: ErrMalformed, msg: "CBOR tag"},
		{name: "tag_self_describe", data: cat(hx("d9 d9 f7"), ack), want: ErrMalformed, msg: "CBOR tag"},
		{name: "tag_bignum_value", data: batchWith(hx("c2 41 01")), want: ErrMalformed, msg: "CBOR tag"},
		{name: "trailing_byte", data: cat(ack, hx("00")), want: ErrMalformed, msg: "extraneous data"},
		{name: "trailing_message", data: cat(ack, ack), want: ErrMalformed, msg: "extraneous data"},
		{name: "truncated", data: ack[:len(ack)-1], want: ErrMalformed, msg: "unexpected EOF"},
		{name: "empty", data: nil, want: ErrMalformed, msg: "EOF"},
		{name: "unknown_type_0", data: hx("82 00 a0"), want: ErrUnknownType, msg: "unknown message type: 0"},
		{name: "unknown_type_7", data: hx("82 07 a0"), want: ErrUnknownType, msg: "unknown message type: 7"},
		{name: "unknown_type_300", data: hx("82 19 01 2c a0"), want: ErrUnknownType, msg: "unknown message type: 300"},
		{name: "unknown_type_null_body", data: hx("82 07 f6"), want: ErrUnknownType, msg: "unknown message type: 7"},
		{name: "type_negative", data: hx("82 20 a0"), want: ErrMalformed, msg: "negative integer"},
		{name: "type_text", data: hx("82 61 34 a0"), want: ErrMalformed, msg: "UTF-8 text string"},
		{name: "envelope_3_items", data: hx("83 04 a1 01 01 00"), want: ErrMalformed, msg: "different number of elements"},
		{name: "envelope_map", data: hx("a1 04 a1 01 01"), want: ErrMalformed, msg: "cannot unmarshal map"},
		{name: "body_null", data: hx("82 04 f6"), want: ErrMalformed, msg: "body is not a map"},
		{name: "body_array", data: hx("82 04 81 01"), want: ErrMalformed, msg: "body is not a map"},
		{name: "utf8_name", data: cat(hx("82 03 a2 01 01 04 81 a2 03 00 01 62 ff fe")), want: ErrMalformed, msg: "invalid UTF-8"},
		{name: "utf8_tag_value", data: hx("82 03 a2 01 01 03 a1 61 61 61 c3"), want: ErrMalformed, msg: "invalid UTF-8"},
		{name: "utf8_string_value", data: batchWith(hx("63 ed a0 80")), want: ErrMalformed, msg: "invalid UTF-8"},
		{name: "bytes_as_text", data: hx("82 03 a2 01 01 04 81 a2 03 00 01 41 78"), want: ErrMalformed, msg: "byte string"},
		{name: "int_overflow_value", data: batchWith(hx("1b ff ff ff ff ff ff ff ff")), want: ErrMalformed, msg: "overflows Go's int64"},
		{name: "int_overflow_value_2e63", data: batchWith(hx("1b 80 00 00 00 00 00 00 00")), want: ErrMalformed, msg: "overflows Go's int64"},
		{name: "neg_int_overflow_value", data: batchWith(hx("3b 80 00 00 00 00 00 00 00")), want: ErrMalformed, msg: "overflows Go's int64"},
		{name: "seq_negative", data: hx("82 04 a1 01 20"), want: ErrMalformed, msg: "negative integer"},
		{name: "seq_float", data: hx("82 04 a1 01 f9 3c 00"), want: ErrMalformed, msg: "primitives"},
		{name: "value_nested_map_key", data: batchWith(hx("a1 81 00 00")), want: ErrMalformed, msg: "invalid map key"},
		{name: "nan_f16", data: batchWith(hx("f9 7e 00")), decodes: true, want: ErrInvalid, msg: "not finite"},
		{name: "nan_f64_payload", data: batchWith(hx("fb 7f f8 00 00 00 00 00 01")), decodes: true, want: ErrInvalid, msg: "not finite"},
		{name: "inf_f32", data: batchWith(hx("fa 7f 80 00 00")), decodes: true, want: ErrInvalid, msg: "not finite"},
		{name: "neg_inf_f64", data: batchWith(hx("fb ff f0 00 00 00 00 00 00")), decodes: true, want: ErrInvalid, msg: "not finite"},
		{name: "value_bytes", data: batchWith(hx("41 01")), decodes: true, want: ErrInvalid, msg: "[]uint8 not allowed"},
		{name: "value_array", data: batchWith(hx("81 01")), decodes: true, want: ErrInvalid, msg: "[]interface {} not allowed"},
		{name: "value_map", data: batchWith(hx("a1 01 01")), decodes: true, want: ErrInvalid, msg: "map[interface {}]interface {} not allowed"},
		{name: "value_null", data: batchWith(hx("f6")), decodes: true, want: ErrInvalid, msg: "missing value"},
		{name: "value_undefined", data: batchWith(hx("f7")), decodes: true, want: ErrInvalid, msg: "missing value"},
		{name: "value_simple", data: batchWith(hx("e0")), decodes: true, want: ErrInvalid, msg: "cbor.SimpleValue not allowed"},
		{name: "value_absent", data: hx("82 03 a2 01 01 04 81 a1 01 61 78"), decodes: true, want: ErrInvalid, msg: "missing value"},
		{name: "seq_zero", data: hx("82 03 a2 01 00 04 81 a2 01 61 78 03 00"), decodes: true, want: ErrInvalid, msg: "seq must be >= 1"},
		{name: "no_points", data: hx("82 03 a1 01 01"), decodes: true, want: ErrInvalid, msg: "no points"},
		{name: "device_tag", data: hx("82 03 a3 01 01 03 a1 66 64 65 76 69 63 65 61 78 04 81 a2 01 61 78 03 00"), decodes: true, want: ErrInvalid, msg: `"device" is reserved`},
		{name: "name_trailing_dot", data: hx("82 03 a2 01 01 04 81 a2 01 62 78 2e 03 00"), decodes: true, want: ErrInvalid, msg: "must not end with '.'"},
		{name: "tag_value_newline", data: hx("82 03 a3 01 01 03 a1 61 61 62 61 0a 04 81 a2 01 61 78 03 00"), decodes: true, want: ErrInvalid, msg: "control character or backslash"},
	}
}

func TestDecodeRejectsHostile(t *testing.T) {
	for _, h := range hostileInputs() {
		t.Run(h.name, func(t *testing.T) {
			msg, err := Decode(h.data, 0)
			if h.decodes {
				if err != nil {
					t.Fatalf("decode: %v", err)
				}
				b, ok := msg.(*Batch)
				if !ok {
					t.Fatalf("decoded %T, want *Batch", msg)
				}
				err = b.Validate(Limits{})
			}
			checkErr(t, err, h.want, h.msg)
		})
	}
}

func checkErr(t *testing.T, err, want error, substr string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v (%q)", want, substr)
	}
	if !errors.Is(err, want) {
		t.Fatalf("error %q is not %v", err, want)
	}
	if !strings.Contains(err.Error(), substr) {
		t.Fatalf("error %q does not mention %q", err, substr)
	}
}

// TestDecodeHugeHeadersAllocateLittle: a header declaring 2^38 items must
// be refused from its declared length, before anything that size exists.
func TestDecodeHugeHeadersAllocateLittle(t *testing.T) {
	for _, name := range []string{"array_header_2e38", "map_header_2e38", "text_header_2e38"} {
		data := hostileByName(t, name)
		const runs = 200
		perRun := allocBytes(func() {
			for range runs {
				if _, err := Decode(data, 0); err == nil {
					t.Fatalf("%s decoded", name)
				}
			}
		}) / runs
		t.Logf("%s: %d bytes allocated per decode", name, perRun)
		if perRun > 16<<10 {
			t.Errorf("%s: %d bytes allocated per decode, want < 16 KiB", name, perRun)
		}
	}
}

// TestDecodeHostileMemoryFlat decodes 1000 hostile messages and checks the
// live heap did not grow: nothing the decoder builds outlives a failure.
func TestDecodeHostileMemoryFlat(t *testing.T) {
	inputs := hostileInputs()
	var total uint64
	before := liveHeap()
	for i := range 1000 {
		h := inputs[i%len(inputs)]
		total += allocBytes(func() { _, _ = Decode(h.data, 0) })
	}
	growth := int64(liveHeap()) - int64(before)
	t.Logf("1000 hostile decodes: %d KiB allocated in all, live heap %+d KiB", total>>10, growth>>10)
	if growth > 1<<20 {
		t.Errorf("live heap grew %d bytes over 1000 hostile decodes, want < 1 MiB", growth)
	}
	if total > 64<<20 {
		t.Errorf("1000 hostile decodes allocated %d bytes, want < 64 MiB", total)
	}
}

func hostileByName(t *testing.T, name string) []byte {
	t.Helper()
	for _, h := range hostileInputs() {
		if h.name == name {
			return h.data
		}
	}
	t.Fatalf("no hostile input %s", name)
	return nil
}

func allocBytes(f func()) uint64 {
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	f()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestDecodeSizeLimit: a message exactly at the limit decodes, one byte
// more is ErrTooLarge, for the default and for an explicit limit.
func TestDecodeSizeLimit(t *testing.T) {
	for _, limit := range []int{0, 64, DefaultMaxMessageBytes, 4 << 20} {
		eff := limit
		if eff == 0 {
			eff = DefaultMaxMessageBytes
		}
		at := resultOfSize(t, eff)
		if _, err := Decode(at, limit); err != nil {
			t.Errorf("limit %d: message of exactly %d bytes: %v", limit, len(at), err)
		}
		over := resultOfSize(t, eff+1)
		_, err := Decode(over, limit)
		checkErr(t, err, ErrTooLarge, fmt.Sprintf("%d bytes > %d", eff+1, eff))
	}
}

// resultOfSize returns a valid command_result message of exactly n bytes,
// padding its stdout.
func resultOfSize(t *testing.T, n int) []byte {
	t.Helper()
	pad := n
	for range 4 { // the stdout length header grows with pad; converge
		r := &CommandResult{ID: "c", State: "output", Stdout: make([]byte, max(pad, 1))}
		data, err := Encode(r)
		if err != nil {
			t.Fatal(err)
		}
		if len(data) == n {
			return data
		}
		pad += n - len(data)
	}
	t.Fatalf("cannot build a %d-byte message", n)
	return nil
}

// TestDecodeStructuralLimits: each decoder limit at its edge and one past.
func TestDecodeStructuralLimits(t *testing.T) {
	t.Run("nesting", func(t *testing.T) {
		// envelope(1) body(2) points(3) point(4): 4 arrays in the value
		// reach level 8.
		if _, err := Decode(batchWith(cat(bytes.Repeat([]byte{0x81}, 4), []byte{0x00})), 0); err != nil {
			t.Errorf("nesting 8: %v", err)
		}
		_, err := Decode(batchWith(cat(bytes.Repeat([]byte{0x81}, 5), []byte{0x00})), 0)
		checkErr(t, err, ErrMalformed, "exceeded max nested level 8")
	})
	t.Run("array_elements", func(t *testing.T) {
		points := func(n int) []byte {
			return cat(hx("82 03 a2 01 01 04 9a"), be32(n), bytes.Repeat(hx("a1 03 00"), n))
		}
		msg, err := Decode(points(maxArrayElements), 0)
		if err != nil {
			t.Fatalf("%d points: %v", maxArrayElements, err)
		}
		if n := len(msg.(*Batch).Points); n != maxArrayElements {
			t.Fatalf("decoded %d points", n)
		}
		_, err = Decode(points(maxArrayElements+1), 0)
		checkErr(t, err, ErrMalformed, "exceeded max number of elements 100000")
	})
	t.Run("map_pairs", func(t *testing.T) {
		tags := func(n int) []byte {
			b := cat(hx("82 03 a2 01 01 03 b9"), be32(n)[2:])
			for i := range n {
				b = cat(b, hx("65"), fmt.Appendf(nil, "k%04d", i), hx("61 76"))
			}
			return b
		}
		msg, err := Decode(tags(maxMapPairs), 0)
		if err != nil {
			t.Fatalf("%d tags: %v", maxMapPairs, err)
		}
		if n := len(msg.(*Batch).Tags); n != maxMapPairs {
			t.Fatalf("decoded %d tags", n)
		}
		_, err = Decode(tags(maxMapPairs+1), 0)
		checkErr(t, err, ErrMalformed, "exceeded max number of key-value pairs 1024")
	})
}

func be32(n int) []byte {
	return []byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
}
