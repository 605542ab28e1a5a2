package payload

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/protocol"
)

// TestDetectLongSenMLCBOR: a SenML CBOR pack of 24 records or more has a
// multi-byte array head; auto still finds the first record's map.
func TestDetectLongSenMLCBOR(t *testing.T) {
	for _, n := range []int{1, 23, 24, 255, 256, 300} {
		var buf bytes.Buffer
		switch {
		case n < 24:
			buf.WriteByte(0x80 | byte(n))
		case n < 256:
			buf.Write([]byte{0x98, byte(n)})
		default:
			buf.Write([]byte{0x99, byte(n >> 8), byte(n)})
		}
		for i := range n {
			// {0 (n): "m<i>", 2 (v): i}
			name := fmt.Sprintf("m%d", i)
			buf.Write([]byte{0xa2, 0x00, 0x60 | byte(len(name))})
			buf.WriteString(name)
			buf.Write([]byte{0x02, 0x19, byte(i >> 8), byte(i)})
		}
		if got := Detect(buf.Bytes()); got != FormatSenMLCBOR {
			t.Errorf("%d records: Detect = %s, want senml+cbor", n, got)
			continue
		}
		b, err := Decode(FormatAuto, buf.Bytes(), time.Now(), protocol.Limits{})
		if err != nil || len(b.Points) != n {
			t.Errorf("%d records: Decode(auto) = %v, %v", n, b, err)
		}
	}
}
