package live

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestDecodeClient(t *testing.T) {
	long := strings.Repeat("a", MaxDeviceIDLen)
	ok := map[string]ClientMessage{
		`{"type":"subscribe","topic":"fleet"}`:                            {Type: "subscribe", Topic: "fleet"},
		`{"type":"subscribe","topic":"device","device":"pi-01"}`:          {Type: "subscribe", Topic: "device", Device: "pi-01"},
		`{"type":"unsubscribe","topic":"device","device":"` + long + `"}`: {Type: "unsubscribe", Topic: "device", Device: long},
		`{"type":"ping"}`:   {Type: "ping"},
		` {"type":"ping"} `: {Type: "ping"},
	}
	for in, want := range ok {
		got, err := DecodeClient([]byte(in))
		if err != nil || got != want {
			t.Errorf("DecodeClient(%s) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	bad := []string{
		``, `null`, `[]`, `{}`, `{"type":"subscribe"}`,
		`{"type":"subscribe","topic":"fleet","device":"pi-01"}`,
		`{"type":"subscribe","topic":"device"}`,
		`{"type":"subscribe","topic":"device","device":"` + long + `a"}`,
		`{"type":"subscribe","topic":"device","device":"-pi"}`,
		`{"type":"subscribe","topic":"device","device":"Pi"}`,
		`{"type":"subscribe","topic":"other"}`,
		`{"type":"ping","topic":"fleet"}`,
		`{"type":"ping","extra":1}`,
		`{"type":"ping"}{"type":"ping"}`,
		`{"type":"PING"}`,
		`{"type":"ping"` + strings.Repeat(" ", MaxClientMessageBytes) + `}`,
	}
	for _, in := range bad {
		if _, err := DecodeClient([]byte(in)); !errors.Is(err, ErrInvalid) {
			t.Errorf("DecodeClient(%.60q) err = %v, want ErrInvalid", in, err)
		}
	}
	// At the size limit exactly, padding is fine.
	atLimit := `{"type":"ping"` + strings.Repeat(" ", MaxClientMessageBytes-len(`{"type":"ping"}`)) + `}`
	if _, err := DecodeClient([]byte(atLimit)); err != nil {
		t.Errorf("message of exactly %d bytes: %v", len(atLimit), err)
	}
}

// FuzzDecodeClient: the decoder never panics, and whatever it accepts is
// valid and survives an encode/decode round trip unchanged.
func FuzzDecodeClient(f *testing.F) {
	f.Add([]byte(`{"type":"subscribe","topic":"fleet"}`))
	f.Add([]byte(`{"type":"ping"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeClient(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("accepted an invalid message: %v", err)
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		m2, err := DecodeClient(b)
		if err != nil || m2 != m {
			t.Fatalf("round trip: %+v -> %s -> %+v, %v", m, b, m2, err)
		}
	})
}
