package protocol

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to Decode. A rejection must carry one of
// the package's sentinels; an accepted message must re-encode to a fixed
// point (encode, decode, encode gives the same bytes) and Validate must not
// panic. Seeds: testdata/fuzz/FuzzDecode (golden vectors, hostile inputs).
func FuzzDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := Decode(data, 0)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownType) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error without a sentinel: %v", err)
			}
			return
		}
		checkEqual := true
		if b, ok := msg.(*Batch); ok {
			// Only a valid batch holds nothing but finite scalars, which
			// DeepEqual can compare (NaN != NaN).
			checkEqual = b.Validate(Limits{}) == nil
			_ = b.Validate(Limits{MaxPoints: 1, MaxTags: 1, MaxNameLen: 1, MaxTagKeyLen: 1, MaxTagValueLen: 1, MaxStringLen: 1})
		}
		enc1, err := Encode(msg)
		if err != nil {
			t.Fatalf("re-encode %T: %v", msg, err)
		}
		// The re-encoding can be longer than the input (an absent point
		// value is written as null), so allow for it.
		msg2, err := Decode(enc1, max(len(enc1), DefaultMaxMessageBytes))
		if err != nil {
			t.Fatalf("decode of re-encoding %x: %v", enc1, err)
		}
		if checkEqual && !reflect.DeepEqual(emptyToNil(msg), emptyToNil(msg2)) {
			t.Fatalf("round trip changed the message:\n%#v\n%#v", msg, msg2)
		}
		enc2, err := Encode(msg2)
		if err != nil {
			t.Fatalf("second re-encode: %v", err)
		}
		if !bytes.Equal(enc1, enc2) {
			t.Fatalf("encoding not stable:\n%x\n%x", enc1, enc2)
		}
	})
}

// emptyToNil sets empty maps and slices in a message struct, and in its
// points, to nil: omitempty drops them on the wire, so they come back nil.
func emptyToNil(msg any) any {
	v := reflect.ValueOf(msg).Elem()
	clearEmpty(v)
	if b, ok := msg.(*Batch); ok {
		for i := range b.Points {
			clearEmpty(reflect.ValueOf(&b.Points[i]).Elem())
		}
	}
	return msg
}

func clearEmpty(v reflect.Value) {
	for i := range v.NumField() {
		f := v.Field(i)
		switch f.Kind() {
		case reflect.Map, reflect.Slice:
			if f.Len() == 0 && f.CanSet() {
				f.SetZero()
			}
		case reflect.Struct:
			clearEmpty(f)
		}
	}
}
