package payload

import (
	"errors"
	"testing"

	"github.com/fleetwire/fleetwire/protocol"
)

// fuzzLimits are small so that the fuzzer reaches the limits.
var fuzzLimits = protocol.Limits{MaxPoints: 20, MaxTags: 4, MaxNameLen: 32, MaxStringLen: 64}

// fuzzDecode checks what every format promises: no panic, errors wrap
// ErrInvalid, and a decoded batch re-validates within the limits.
func fuzzDecode(t *testing.T, format Format, data []byte) {
	b, err := Decode(format, data, testNow, fuzzLimits)
	if err != nil {
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("error %v does not wrap ErrInvalid", err)
		}
		return
	}
	if len(b.Points) == 0 || len(b.Points) > fuzzLimits.MaxPoints {
		t.Fatalf("%d points, limit %d", len(b.Points), fuzzLimits.MaxPoints)
	}
	checkInvariants(t, b, fuzzLimits)
}

func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{
		`{"cpu.usage_percent": 12.5, "relay": true, "status": "ok"}`,
		`{"Time":"2024-11-23T17:00:00","ENERGY":{"Total":12.3,"Power":12,"Voltage":231}}`,
		`{"time":"2024-11-23T17:00:00Z","tags":{"site":"a"},"points":[{"name":"a.b","value":1,"time":1732381100000,"tags":{"k":"v"}}]}`,
		`{"a":{"b":{"c":{"d":1e3}}}}`,
		`{"a":null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) { fuzzDecode(t, FormatJSON, data) })
}

func FuzzDecodeLine(f *testing.F) {
	for _, s := range []string{
		"weather,location=us\\ midwest temperature=82.5,humidity=71i,raining=t,note=\"x\" 1732381100000000000\n",
		"uptime value=12u\n# comment\ncpu usage=1\n",
		"cpu.x y=1\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) { fuzzDecode(t, FormatLine, data) })
}

func FuzzDecodeSenMLJSON(f *testing.F) {
	for _, s := range []string{
		`[{"n":"urn:dev:ow:10e2073a01080063","u":"Cel","v":23.1}]`,
		`[{"bn":"urn:dev:ow:10e2073a01080063:","bt":1.276020076001e+09,"bu":"A","bver":5,"n":"voltage","u":"V","v":120.1},{"n":"current","t":-5,"v":1.2}]`,
		`[{"bn":"dev.","bv":10,"n":"a","v":1,"t":-2},{"n":"b","vs":"x"},{"n":"c","vb":false},{"n":"d","s":3.5}]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) { fuzzDecode(t, FormatSenMLJSON, data) })
}

func FuzzDecodeSenMLCBOR(f *testing.F) {
	f.Add(senmlCBOR(f,
		map[int]any{-2: "urn:dev:ow:10e2073a01080063:", -3: 1.276020076001e+09, 0: "voltage", 1: "V", 2: 120.1},
		map[int]any{0: "current", 6: -5, 2: 2},
		map[int]any{0: "ok", 4: true},
		map[int]any{0: "state", 3: "on", 5: 1.5}))
	f.Add([]byte{0x81, 0xa1, 0x00, 0x81})
	f.Fuzz(func(t *testing.T, data []byte) { fuzzDecode(t, FormatSenMLCBOR, data) })
}

func FuzzDecodeCBOR(f *testing.F) {
	f.Add(protoBatch(f, protocol.Batch{Seq: 7, BaseTime: 1000, Tags: map[string]string{"a": "b"},
		Points: []protocol.Point{{Name: "x", DT: 5, Value: 1.5}, {Name: "y.z", DT: -10, Value: int64(3)}, {Name: "s", Value: "on"}}}))
	f.Add(protoMsg(f, &protocol.Ack{Seq: 1}))
	f.Fuzz(func(t *testing.T, data []byte) { fuzzDecode(t, FormatCBOR, data) })
}
