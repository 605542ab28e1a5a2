package protocol

import (
	"reflect"
	"testing"
)

// FuzzDecodeBatchFast: whatever the fast batch decoder accepts, the general
// decoder accepts too, with an identical result. Seeds: the golden and
// hostile vectors and sample batches.
func FuzzDecodeBatchFast(f *testing.F) {
	for _, n := range []int{1, 10, 100} {
		data, err := Encode(SampleBatch(uint64(n), n))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, h := range hostileInputs() {
		f.Add(h.data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 2 || data[0] != 0x82 || data[1] != byte(TypeBatch) {
			return
		}
		fast, ok := decodeBatchFast(data[2:])
		if n, counted := BatchPoints(data); ok && (!counted || n != len(fast.Points)) {
			t.Fatalf("%x: BatchPoints %d, %v; the batch has %d points", data, n, counted, len(fast.Points))
		}
		if !ok {
			return
		}
		general, err := decodeGeneral(data)
		if err != nil {
			t.Fatalf("fast decoder accepted %x, general refused it: %v", data, err)
		}
		if !reflect.DeepEqual(fast, general) {
			t.Fatalf("%x:\nfast    %#v\ngeneral %#v", data, fast, general)
		}
	})
}

func TestFloat16(t *testing.T) {
	cases := map[uint16]float64{0x0000: 0, 0x3c00: 1, 0xc000: -2, 0x7bff: 65504, 0x0001: 5.960464477539063e-8, 0x03ff: 0.00006097555160522461, 0x3555: 0.333251953125}
	for h, want := range cases {
		if got := float16(h); got != want {
			t.Errorf("float16(%#04x) = %v, want %v", h, got, want)
		}
	}
}
