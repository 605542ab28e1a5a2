package payload

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math"
	"strings"
	"testing"

	"github.com/fleetwire/fleetwire/protocol"
)

// encodeBatches are validated batches of every value type, with batch and
// point tags, point times before and after BaseTime and repeated times.
func encodeBatches() map[string]*protocol.Batch {
	return map[string]*protocol.Batch{
		"floats": {Seq: 3, BaseTime: nowMs, Points: []protocol.Point{
			{Name: "f.integral", Value: 12.0},
			{Name: "f.big", DT: 1, Value: 1e21},
			{Name: "f.neg", DT: 2, Value: -0.5},
			{Name: "f.tiny", DT: 3, Value: 5e-324},
			{Name: "f.max", DT: 4, Value: math.MaxFloat64},
			{Name: "f.zero", DT: 5, Value: 0.0},
			{Name: "f.negzero", DT: 5, Value: math.Copysign(0, -1)},
			{Name: "f.pi", DT: 6, Value: math.Pi},
			{Name: "f.e20", DT: 7, Value: 1e20},
			{Name: "f.small", DT: 8, Value: 1e-7},
			{Name: "f.negint", DT: 9, Value: -3.0},
		}},
		"ints": {Seq: 1, BaseTime: nowMs, Tags: map[string]string{"site": "plant-2"}, Points: []protocol.Point{
			{Name: "i.zero", Value: int64(0)},
			{Name: "i.min", DT: 10, Value: int64(math.MinInt64)},
			{Name: "i.max", DT: 10, Value: int64(math.MaxInt64)},
			{Name: "i.neg", DT: -10, Value: int64(-1)},
			{Name: "i.twelve", DT: 20, Value: int64(12)},
		}},
		"mixed with tags": {Seq: 9, BaseTime: 1_000, Tags: map[string]string{"site": "a", "rack": "r 1"}, Points: []protocol.Point{
			{Name: "relay", Value: true, Tags: map[string]string{"ch": "1"}},
			{Name: "relay", DT: 1, Value: false, Tags: map[string]string{"ch": "2"}},
			{Name: "status", DT: 500, Value: "ok"},
			{Name: "status.text", DT: 500, Value: `quote " backslash \ <html> & é ☃ ` + "\n\t\u2028"},
			{Name: "empty", DT: 501, Value: ""},
			{Name: "cpu.usage_percent", DT: 60_000, Value: 12.5, Tags: map[string]string{"core": "0"}},
		}},
		"epoch and far times": {Seq: 1, BaseTime: minUnixMs, Points: []protocol.Point{
			{Name: "first", Value: int64(1)},
			{Name: "epoch", DT: -minUnixMs, Value: int64(2)},
			{Name: "last", DT: maxUnixMs - minUnixMs, Value: int64(3)},
		}},
		"negative times": {Seq: 1, BaseTime: -5_000, Points: []protocol.Point{
			{Name: "a", DT: -1, Value: 1.5},
			{Name: "b", DT: 2_000, Value: 2.5},
		}},
	}
}

func TestEncodeJSONRoundTrip(t *testing.T) {
	for name, b := range encodeBatches() {
		t.Run(name, func(t *testing.T) {
			if err := b.Validate(protocol.DefaultLimits); err != nil {
				t.Fatalf("test batch invalid: %v", err)
			}
			data, err := EncodeJSON(b)
			if err != nil {
				t.Fatalf("EncodeJSON: %v", err)
			}
			if Detect(data) != FormatJSON {
				t.Errorf("Detect(EncodeJSON output) = %s", Detect(data))
			}
			got, err := Decode(FormatJSON, data, testNow, protocol.DefaultLimits)
			if err != nil {
				t.Fatalf("Decode(%s): %v", data, err)
			}
			checkInvariants(t, got, protocol.DefaultLimits)
			checkSameBatch(t, b, got, data)
			// Integral floats keep a fraction, ints never get one.
			for _, p := range b.Points {
				if f, ok := p.Value.(float64); ok && f == math.Trunc(f) && math.Abs(f) < 1e21 {
					if !bytes.Contains(data, []byte(fmt.Sprintf(`"name":%q,"value":%s`, p.Name, encodedFloat(f)))) {
						t.Errorf("%s: float %v not written with a fraction in %s", p.Name, f, data)
					}
				}
			}
		})
	}
}

func encodedFloat(f float64) string {
	v, _ := encodeValue(f)
	return string(v)
}

func TestEncodeJSONValueForms(t *testing.T) {
	for _, tc := range []struct {
		v    any
		want string
	}{
		{12.0, "12.0"},
		{-3.0, "-3.0"},
		{0.0, "0.0"},
		{math.Copysign(0, -1), "-0.0"},
		{1e21, "1e+21"},
		{-0.5, "-0.5"},
		{5e-324, "5e-324"},
		{int64(12), "12"},
		{int64(math.MinInt64), "-9223372036854775808"},
		{true, "true"},
		{"a\"b", `"a\"b"`},
	} {
		got, err := encodeValue(tc.v)
		if err != nil || string(got) != tc.want {
			t.Errorf("encodeValue(%#v) = %s, %v; want %s", tc.v, got, err, tc.want)
		}
	}
}

// checkSameBatch compares points (names, values with their types, absolute
// times, tags) and batch tags.
func checkSameBatch(t testing.TB, want, got *protocol.Batch, data []byte) {
	t.Helper()
	w, g := flattenBatch(want), flattenBatch(got)
	if !equalPoints(w, g) {
		t.Fatalf("points differ after EncodeJSON/Decode\n want %s\n got  %s\n json %s", fmtPoints(w), fmtPoints(g), data)
	}
	if !maps.Equal(want.Tags, got.Tags) {
		t.Fatalf("batch tags %v, want %v (json %s)", got.Tags, want.Tags, data)
	}
}

func fmtPoints(ps []pt) string {
	var sb strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&sb, "{%s @%d %T(%#v) %v} ", p.name, p.at, p.value, p.value, p.tags)
	}
	return sb.String()
}

func TestEncodeJSONRefuses(t *testing.T) {
	for name, v := range map[string]any{
		"NaN":    math.NaN(),
		"+Inf":   math.Inf(1),
		"-Inf":   math.Inf(-1),
		"nil":    nil,
		"int":    12,
		"[]byte": []byte("x"),
	} {
		b := &protocol.Batch{Seq: 1, BaseTime: nowMs, Points: []protocol.Point{{Name: "ok", Value: 1.5}, {Name: "bad", DT: 1, Value: v}}}
		if data, err := EncodeJSON(b); err == nil {
			t.Errorf("%s: EncodeJSON = %s, want an error", name, data)
		} else if !strings.Contains(err.Error(), "bad") {
			t.Errorf("%s: error %q does not name the point", name, err)
		}
	}
}

func TestDetectFormats(t *testing.T) {
	batch := protoBatch(t, protocol.Batch{Seq: 1, BaseTime: nowMs, Points: []protocol.Point{{Name: "x", Value: 1.5}}})
	senml := senmlCBOR(t, map[int]any{0: "temp", 2: 21.5})
	for _, tc := range []struct {
		name string
		in   []byte
		want Format
	}{
		{"json object", []byte(`{"a":1}`), FormatJSON},
		{"json object after space", []byte(" \t\r\n{\"a\":1}"), FormatJSON},
		{"json only a brace", []byte("{"), FormatJSON},
		{"json array", []byte(`[{"n":"a","v":1}]`), FormatSenMLJSON},
		{"json array after space", []byte("\n  [{\"n\":\"a\",\"v\":1}]"), FormatSenMLJSON},
		{"cbor batch", batch, FormatCBOR},
		{"cbor ack", protoMsg(t, &protocol.Ack{Seq: 1}), FormatCBOR},
		{"senml cbor", senml, FormatSenMLCBOR},
		{"senml cbor, indefinite map", []byte{0x81, 0xbf, 0x00, 0x61, 'a', 0x02, 0x01, 0xff}, FormatSenMLCBOR},
		{"senml cbor, indefinite array", []byte{0x9f, 0xa2, 0x00, 0x61, 'a', 0x02, 0x01, 0xff}, FormatSenMLCBOR},
		// 24 records and more: the array's length takes extra bytes before the first map.
		{"senml cbor, 24 records", append([]byte{0x98, 0x18}, bytes.Repeat([]byte{0xa0}, 24)...), FormatSenMLCBOR},
		{"senml cbor, 256 records", append([]byte{0x99, 0x01, 0x00}, bytes.Repeat([]byte{0xa0}, 256)...), FormatSenMLCBOR},
		{"cbor array, 24 ints", append([]byte{0x98, 0x18}, bytes.Repeat([]byte{0x01}, 24)...), FormatCBOR},
		{"cbor array, length head cut short", []byte{0x99, 0x01}, FormatCBOR},
		{"cbor array, reserved length", []byte{0x9c, 0xa0}, FormatCBOR},
		{"cbor array of ints", []byte{0x82, 0x01, 0x02}, FormatCBOR},
		{"line protocol", []byte("cpu,host=a usage=1.5 1732381100000000000\n"), FormatLine},
		{"line protocol, leading space", []byte("  cpu usage=1.5\n"), FormatLine},
		{"empty", []byte{}, FormatLine},
		{"nil", nil, FormatLine},
		{"one CBOR array byte", []byte{0x81}, FormatLine},
		{"one byte", []byte("x"), FormatLine},
		{"only space", []byte("   "), FormatLine},
		{"cbor map", []byte{0xa1, 0x00, 0x01}, FormatLine},
	} {
		if got := Detect(tc.in); got != tc.want {
			t.Errorf("%s: Detect(% x) = %s, want %s", tc.name, tc.in, got, tc.want)
		}
	}
}

// FuzzEncodeJSON: whatever Decode accepts in any format, EncodeJSON renders
// and Decode(FormatJSON) reads back as the same points.
func FuzzEncodeJSON(f *testing.F) {
	for _, s := range []string{
		`{"cpu.usage_percent": 12.5, "relay": true, "status": "ok", "n": 12, "f": 12.0, "big": 1e21, "neg": -0}`,
		`{"Time":"2024-11-23T17:00:00","ENERGY":{"Total":12.3,"Power":12,"Voltage":231}}`,
		`{"time":"2024-11-23T17:00:00Z","tags":{"site":"a"},"points":[{"name":"a.b","value":1,"time":1732381100000,"tags":{"k":"v"}},{"name":"c","value":"<&>\u2028"}]}`,
		`{"points":[{"name":"min","value":-9223372036854775808,"time":-62135596800000},{"name":"max","value":9223372036854775807,"time":253402300799999}]}`,
		`{"a":5e-324,"b":-0.5,"c":1.7976931348623157e308}`,
		"weather,location=us\\ midwest temperature=82.5,humidity=71i,raining=t,note=\"x\" 1732381100000000000\n",
		"uptime value=12u\n# comment\ncpu usage=1\n",
		`[{"bn":"urn:dev:ow:10e2073a01080063:","bt":1.276020076001e+09,"bu":"A","bver":5,"n":"voltage","u":"V","v":120.1},{"n":"current","t":-5,"v":1.2}]`,
		`[{"bn":"dev.","bv":10,"n":"a","v":1,"t":-2},{"n":"b","vs":"x"},{"n":"c","vb":false},{"n":"d","s":3.5}]`,
	} {
		f.Add([]byte(s))
	}
	f.Add(senmlCBOR(f,
		map[int]any{-2: "urn:dev:ow:10e2073a01080063:", -3: 1.276020076001e+09, 0: "voltage", 1: "V", 2: 120.1},
		map[int]any{0: "current", 6: -5, 2: 2},
		map[int]any{0: "ok", 4: true},
		map[int]any{0: "state", 3: "on", 5: 1.5}))
	f.Add(protoBatch(f, protocol.Batch{Seq: 7, BaseTime: 1000, Tags: map[string]string{"a": "b"}, Dropped: 2,
		Points: []protocol.Point{{Name: "x", DT: 5, Value: 1.5}, {Name: "y.z", DT: -10, Value: int64(3)}, {Name: "s", Value: "on"},
			{Name: "f", DT: 1, Value: 12.0, Tags: map[string]string{"t": "u"}}, {Name: "i", Value: int64(math.MinInt64)}}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := Decode(FormatAuto, data, testNow, fuzzLimits)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		enc, err := EncodeJSON(b)
		if err != nil {
			t.Fatalf("EncodeJSON of a decoded batch: %v\n batch %+v", err, b)
		}
		got, err := Decode(FormatJSON, enc, testNow, fuzzLimits)
		if err != nil {
			t.Fatalf("Decode(EncodeJSON(batch)): %v\n json %s", err, enc)
		}
		checkSameBatch(t, b, got, enc)
	})
}
