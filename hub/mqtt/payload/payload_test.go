package payload

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/protocol"
	"github.com/fxamacker/cbor/v2"
)

var testNow = time.UnixMilli(1_732_381_200_000)

// pt is a point with its absolute time, for comparing decoded batches.
type pt struct {
	name  string
	at    int64
	value any
	tags  map[string]string
}

func flattenBatch(b *protocol.Batch) []pt {
	var out []pt
	for _, p := range b.Points {
		out = append(out, pt{p.Name, b.BaseTime + p.DT, p.Value, p.Tags})
	}
	return out
}

func checkInvariants(t testing.TB, b *protocol.Batch, lim protocol.Limits) {
	t.Helper()
	if b.Seq != 0 {
		t.Errorf("seq %d, want 0", b.Seq)
	}
	for i, p := range b.Points {
		if p.DT < 0 {
			t.Errorf("point %d: dt %d < 0", i, p.DT)
		}
	}
	check := *b
	check.Seq = 1
	if err := check.Validate(lim); err != nil {
		t.Errorf("decoded batch does not validate: %v", err)
	}
}

func equalPoints(a, b []pt) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].name != b[i].name || a[i].at != b[i].at || a[i].value != b[i].value || len(a[i].tags) != len(b[i].tags) {
			return false
		}
		for k, v := range a[i].tags {
			if b[i].tags[k] != v {
				return false
			}
		}
	}
	return true
}

func senmlCBOR(t testing.TB, records ...map[int]any) []byte {
	t.Helper()
	data, err := cbor.Marshal(records)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func protoBatch(t testing.TB, b protocol.Batch) []byte {
	t.Helper()
	data, err := protocol.Encode(&b)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

const nowMs = 1_732_381_200_000

func TestDecodeValid(t *testing.T) {
	rfcTime := int64(1_276_020_076_001)
	tests := []struct {
		name     string
		format   Format
		payload  []byte
		wantTags map[string]string
		want     []pt
	}{
		{
			name:   "json flat tasmota",
			format: FormatJSON,
			payload: []byte(`{"Time":"2024-11-23T17:00:00","ENERGY":{"TotalStartTime":"2024-01-01T00:00:00",
				"Total":12.345,"Yesterday":0.5,"Today":0.125,"Period":0,"Power":12,"ApparentPower":20,
				"ReactivePower":16,"Factor":0.6,"Voltage":231,"Current":0.087},"POWER":"ON"}`),
			want: []pt{
				{"Time", nowMs, "2024-11-23T17:00:00", nil},
				{"ENERGY.TotalStartTime", nowMs, "2024-01-01T00:00:00", nil},
				{"ENERGY.Total", nowMs, 12.345, nil},
				{"ENERGY.Yesterday", nowMs, 0.5, nil},
				{"ENERGY.Today", nowMs, 0.125, nil},
				{"ENERGY.Period", nowMs, int64(0), nil},
				{"ENERGY.Power", nowMs, int64(12), nil},
				{"ENERGY.ApparentPower", nowMs, int64(20), nil},
				{"ENERGY.ReactivePower", nowMs, int64(16), nil},
				{"ENERGY.Factor", nowMs, 0.6, nil},
				{"ENERGY.Voltage", nowMs, int64(231), nil},
				{"ENERGY.Current", nowMs, 0.087, nil},
				{"POWER", nowMs, "ON", nil},
			},
		},
		{
			name:    "json flat scalars",
			format:  FormatJSON,
			payload: []byte(`{"cpu.usage_percent": 12.5, "relay": true, "status": "ok", "big": 1e3}`),
			want: []pt{
				{"cpu.usage_percent", nowMs, 12.5, nil},
				{"relay", nowMs, true, nil},
				{"status", nowMs, "ok", nil},
				{"big", nowMs, 1000.0, nil},
			},
		},
		{
			name:   "json envelope",
			format: FormatJSON,
			payload: []byte(`{"time": 1732381100000, "tags": {"site": "plant-2"}, "points": [
				{"name": "cpu.usage_percent", "value": 12.5},
				{"name": "mem.used", "value": 1024, "time": "2024-11-23T17:00:00.5Z", "tags": {"kind": "rss"}}]}`),
			wantTags: map[string]string{"site": "plant-2"},
			want: []pt{
				{"cpu.usage_percent", 1732381100000, 12.5, nil},
				{"mem.used", 1732381200500, int64(1024), map[string]string{"kind": "rss"}},
			},
		},
		{
			name:   "line protocol",
			format: FormatLine,
			payload: []byte("weather,location=us\\ midwest,station=a\\,1 temperature=82.5,humidity=71i,raining=t,note=\"a \\\"b\\\"\" 1732381100000000000\n" +
				"# comment\n" +
				"uptime value=12u\n"),
			want: []pt{
				{"weather.temperature", 1732381100000, 82.5, map[string]string{"location": "us midwest", "station": "a,1"}},
				{"weather.humidity", 1732381100000, int64(71), map[string]string{"location": "us midwest", "station": "a,1"}},
				{"weather.raining", 1732381100000, true, map[string]string{"location": "us midwest", "station": "a,1"}},
				{"weather.note", 1732381100000, `a "b"`, map[string]string{"location": "us midwest", "station": "a,1"}},
				{"uptime", nowMs, int64(12), nil},
			},
		},
		{
			name:    "senml json rfc 8428 5.1.1",
			format:  FormatSenMLJSON,
			payload: []byte(`[{"n":"urn:dev:ow:10e2073a01080063","u":"Cel","v":23.1}]`),
			want:    []pt{{"urn_dev_ow_10e2073a01080063", nowMs, 23.1, map[string]string{"unit": "Cel"}}},
		},
		{
			name:   "senml json rfc 8428 5.1.2",
			format: FormatSenMLJSON,
			payload: []byte(`[
				{"bn":"urn:dev:ow:10e2073a01080063:","bt":1.276020076001e+09,
				 "bu":"A","bver":5,"n":"voltage","u":"V","v":120.1},
				{"n":"current","t":-5,"v":1.2},
				{"n":"current","t":-4,"v":1.3},
				{"n":"current","v":1.7}]`),
			want: []pt{
				{"urn_dev_ow_10e2073a01080063_voltage", rfcTime, 120.1, map[string]string{"unit": "V"}},
				{"urn_dev_ow_10e2073a01080063_current", rfcTime - 5000, 1.2, map[string]string{"unit": "A"}},
				{"urn_dev_ow_10e2073a01080063_current", rfcTime - 4000, 1.3, map[string]string{"unit": "A"}},
				{"urn_dev_ow_10e2073a01080063_current", rfcTime, 1.7, map[string]string{"unit": "A"}},
			},
		},
		{
			name:    "senml json relative time, base value, vs, vb, s",
			format:  FormatSenMLJSON,
			payload: []byte(`[{"bn":"dev.","bv":10,"n":"a","v":1,"t":-2},{"n":"b","vs":"x"},{"n":"c","vb":false},{"n":"d","s":3.5}]`),
			want: []pt{
				{"dev.a", nowMs - 2000, 11.0, nil},
				{"dev.b", nowMs, "x", nil},
				{"dev.c", nowMs, false, nil},
				{"dev.d", nowMs, 3.5, nil},
			},
		},
		{
			name:   "senml cbor",
			format: FormatSenMLCBOR,
			payload: senmlCBOR(t,
				map[int]any{-2: "urn:dev:ow:10e2073a01080063:", -3: 1.276020076001e+09, 0: "voltage", 1: "V", 2: 120.1},
				map[int]any{0: "current", 6: -5, 2: 2}, // integer v decodes as float
				map[int]any{0: "ok", 4: true},
				map[int]any{0: "state", 3: "on"}),
			want: []pt{
				{"urn_dev_ow_10e2073a01080063_voltage", rfcTime, 120.1, map[string]string{"unit": "V"}},
				{"urn_dev_ow_10e2073a01080063_current", rfcTime - 5000, 2.0, nil},
				{"urn_dev_ow_10e2073a01080063_ok", rfcTime, true, nil},
				{"urn_dev_ow_10e2073a01080063_state", rfcTime, "on", nil},
			},
		},
		{
			name:   "protocol cbor batch rebased",
			format: FormatCBOR,
			payload: protoBatch(t, protocol.Batch{Seq: 7, BaseTime: 1000, Tags: map[string]string{"a": "b"},
				Points: []protocol.Point{{Name: "x", DT: 5, Value: 1.5}, {Name: "y.z", DT: -10, Value: int64(3)}}}),
			wantTags: map[string]string{"a": "b"},
			want: []pt{
				{"x", 1005, 1.5, nil},
				{"y.z", 990, int64(3), nil},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Decode(tt.format, tt.payload, testNow, protocol.DefaultLimits)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			checkInvariants(t, b, protocol.DefaultLimits)
			if got := flattenBatch(b); !equalPoints(got, tt.want) {
				t.Errorf("points\n got %v\nwant %v", got, tt.want)
			}
			if len(b.Tags) != len(tt.wantTags) {
				t.Errorf("batch tags %v, want %v", b.Tags, tt.wantTags)
			}
			for k, v := range tt.wantTags {
				if b.Tags[k] != v {
					t.Errorf("batch tags %v, want %v", b.Tags, tt.wantTags)
				}
			}
		})
	}
}

func TestDecodeInvalid(t *testing.T) {
	many := `{"a":1,"b":2,"c":3,"d":4}`
	deep := strings.Repeat(`{"a":`, MaxJSONDepth+1) + `1` + strings.Repeat(`}`, MaxJSONDepth+1)
	tests := []struct {
		name    string
		format  Format
		payload []byte
		lim     protocol.Limits
		want    string // substring of the error
	}{
		{"empty", FormatJSON, nil, protocol.Limits{}, "empty payload"},
		{"too large", FormatLine, make([]byte, MaxPayloadBytes+1), protocol.Limits{}, "bytes > limit"},
		{"json malformed", FormatJSON, []byte(`{"a":`), protocol.Limits{}, "unexpected EOF"},
		{"json not object", FormatJSON, []byte(`[1,2]`), protocol.Limits{}, "want an object"},
		{"json trailing data", FormatJSON, []byte(`{"a":1} {}`), protocol.Limits{}, "data after the object"},
		{"json empty object", FormatJSON, []byte(`{}`), protocol.Limits{}, "no points"},
		{"json null value", FormatJSON, []byte(`{"a":null}`), protocol.Limits{}, "null"},
		{"json array value", FormatJSON, []byte(`{"a":[1]}`), protocol.Limits{}, "an array"},
		{"json bad name", FormatJSON, []byte(`{"temp °C":1}`), protocol.Limits{}, `"temp °C"`},
		{"json name ends with dot", FormatJSON, []byte(`{"a":{"":1}}`), protocol.Limits{}, `must not end with '.'`},
		{"json duplicate key", FormatJSON, []byte(`{"a":1,"a":2}`), protocol.Limits{}, "duplicate key"},
		{"json duplicate after flatten", FormatJSON, []byte(`{"a.b":1,"a":{"b":2}}`), protocol.Limits{}, "duplicate metric name"},
		{"json deep nesting", FormatJSON, []byte(deep), protocol.Limits{}, "nested deeper"},
		{"json too many points", FormatJSON, []byte(many), protocol.Limits{MaxPoints: 3}, "more than 3 points"},
		{"json int overflow", FormatJSON, []byte(`{"a":9223372036854775808}`), protocol.Limits{}, "does not fit int64"},
		{"json float overflow", FormatJSON, []byte(`{"a":1e400}`), protocol.Limits{}, "not a finite"},
		{"json envelope unknown key", FormatJSON, []byte(`{"points":[],"x":1}`), protocol.Limits{}, "unknown key"},
		{"json envelope no value", FormatJSON, []byte(`{"points":[{"name":"a"}]}`), protocol.Limits{}, "missing value"},
		{"json envelope bad time", FormatJSON, []byte(`{"points":[{"name":"a","value":1,"time":"yesterday"}]}`), protocol.Limits{}, "time"},
		{"json envelope reserved tag", FormatJSON, []byte(`{"tags":{"device":"x"},"points":[{"name":"a","value":1}]}`), protocol.Limits{}, "reserved"},
		{"json envelope tag backslash", FormatJSON, []byte(`{"points":[{"name":"a","value":1,"tags":{"k":"a\\b"}}]}`), protocol.Limits{}, "backslash"},
		{"json long string", FormatJSON, []byte(`{"a":"` + strings.Repeat("x", 11) + `"}`), protocol.Limits{MaxStringLen: 10}, "limit 10"},
		{"line malformed", FormatLine, []byte("cpu usage=\n"), protocol.Limits{}, "entry 1"},
		{"line no fields", FormatLine, []byte("cpu\n"), protocol.Limits{}, "entry 1"},
		{"line dotted measurement", FormatLine, []byte("cpu.x y=1\n"), protocol.Limits{}, "contains '.'"},
		{"line bad name", FormatLine, []byte("cpu us%age=1\n"), protocol.Limits{}, `"cpu.us%age"`},
		{"line uint overflow", FormatLine, []byte("cpu a=18446744073709551615u\n"), protocol.Limits{}, "unsigned value"},
		{"line reserved tag", FormatLine, []byte("cpu,device=x a=1\n"), protocol.Limits{}, "reserved"},
		{"line only comment", FormatLine, []byte("# nothing\n"), protocol.Limits{}, "no points"},
		{"senml json malformed", FormatSenMLJSON, []byte(`[{"n":`), protocol.Limits{}, "senml+json"},
		{"senml json empty", FormatSenMLJSON, []byte(`[]`), protocol.Limits{}, "no points"},
		{"senml json wrong type", FormatSenMLJSON, []byte(`[{"n":"a","v":"1"}]`), protocol.Limits{}, "record 0"},
		{"senml json no value", FormatSenMLJSON, []byte(`[{"n":"a"}]`), protocol.Limits{}, "no value"},
		{"senml json two values", FormatSenMLJSON, []byte(`[{"n":"a","v":1,"vb":true}]`), protocol.Limits{}, "more than one"},
		{"senml json vd", FormatSenMLJSON, []byte(`[{"n":"a","vd":"AAE="}]`), protocol.Limits{}, "vd"},
		{"senml json bad name", FormatSenMLJSON, []byte(`[{"n":"2001:db8::1/temp","v":1}]`), protocol.Limits{}, `"2001:db8::1/temp"`},
		{"senml json must understand", FormatSenMLJSON, []byte(`[{"n":"a","v":1,"foo_":1}]`), protocol.Limits{}, "must-understand"},
		{"senml json bver", FormatSenMLJSON, []byte(`[{"bver":11,"n":"a","v":1}]`), protocol.Limits{}, "bver"},
		{"senml json huge time", FormatSenMLJSON, []byte(`[{"n":"a","v":1,"t":1e300}]`), protocol.Limits{}, "outside years"},
		{"senml json value overflow", FormatSenMLJSON, []byte(`[{"bv":1.7e308,"n":"a","v":1.7e308}]`), protocol.Limits{}, "not finite"},
		{"senml json too many", FormatSenMLJSON, []byte(`[{"n":"a","v":1},{"n":"b","v":1}]`), protocol.Limits{MaxPoints: 1}, "more than 1 points"},
		{"senml cbor malformed", FormatSenMLCBOR, []byte{0x81, 0xa1}, protocol.Limits{}, "senml+cbor"},
		{"senml cbor NaN", FormatSenMLCBOR, senmlCBOR(t, map[int]any{0: "a", 2: math.NaN()}), protocol.Limits{}, "not finite"},
		{"senml cbor Inf time", FormatSenMLCBOR, senmlCBOR(t, map[int]any{0: "a", 2: 1.0, 6: math.Inf(1)}), protocol.Limits{}, "outside years"},
		{"senml cbor wrong type", FormatSenMLCBOR, senmlCBOR(t, map[int]any{0: 5, 2: 1.0}), protocol.Limits{}, "record 0"},
		{"senml cbor deep", FormatSenMLCBOR, []byte{0x81, 0xa1, 0x00, 0x81, 0x81, 0x81, 0x81, 0x81, 0x00}, protocol.Limits{}, "senml+cbor"},
		{"cbor malformed", FormatCBOR, []byte{0x82, 0x03}, protocol.Limits{}, "malformed"},
		{"cbor not a batch", FormatCBOR, protoMsg(t, &protocol.Ack{Seq: 1}), protocol.Limits{}, "want a batch"},
		{"cbor NaN", FormatCBOR, protoBatch(t, protocol.Batch{Seq: 1, Points: []protocol.Point{{Name: "a", Value: math.Inf(1)}}}), protocol.Limits{}, "not finite"},
		{"cbor huge dt", FormatCBOR, protoBatch(t, protocol.Batch{Seq: 1, Points: []protocol.Point{{Name: "a", DT: math.MaxInt64, Value: 1.0}}}), protocol.Limits{}, "out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Decode(tt.format, tt.payload, testNow, tt.lim)
			if err == nil {
				t.Fatalf("Decode succeeded: %+v", b)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func protoMsg(t testing.TB, msg any) []byte {
	t.Helper()
	data, err := protocol.Encode(msg)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestParseFormat(t *testing.T) {
	for _, f := range []Format{FormatCBOR, FormatJSON, FormatLine, FormatSenMLJSON, FormatSenMLCBOR} {
		if got, err := ParseFormat(string(f)); err != nil || got != f {
			t.Errorf("ParseFormat(%q) = %q, %v", f, got, err)
		}
	}
	if _, err := ParseFormat("xml"); !errors.Is(err, ErrUnknownFormat) {
		t.Errorf("ParseFormat(xml) error %v, want ErrUnknownFormat", err)
	}
	if _, err := Decode("xml", []byte("x"), testNow, protocol.Limits{}); !errors.Is(err, ErrUnknownFormat) {
		t.Errorf("Decode(xml) error %v, want ErrUnknownFormat", err)
	}
}
