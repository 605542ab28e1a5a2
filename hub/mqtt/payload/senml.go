package payload

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/fxamacker/cbor/v2"
)

// senmlRecord is one SenML record (RFC 8428 §4), with the JSON labels of
// §5 and the CBOR labels of §6. Pointers tell absent from zero.
type senmlRecord struct {
	BaseName    *string  `json:"bn" cbor:"-2,keyasint"`
	BaseTime    *float64 `json:"bt" cbor:"-3,keyasint"`
	BaseUnit    *string  `json:"bu" cbor:"-4,keyasint"`
	BaseValue   *float64 `json:"bv" cbor:"-5,keyasint"`
	BaseSum     *float64 `json:"bs" cbor:"-6,keyasint"`
	BaseVersion *int64   `json:"bver" cbor:"-1,keyasint"`
	Name        *string  `json:"n" cbor:"0,keyasint"`
	Unit        *string  `json:"u" cbor:"1,keyasint"`
	Value       *float64 `json:"v" cbor:"2,keyasint"`
	StringValue *string  `json:"vs" cbor:"3,keyasint"`
	BoolValue   *bool    `json:"vb" cbor:"4,keyasint"`
	Sum         *float64 `json:"s" cbor:"5,keyasint"`
	Time        *float64 `json:"t" cbor:"6,keyasint"`
	UpdateTime  *float64 `json:"ut" cbor:"7,keyasint"`
	DataValue   *string  `json:"vd" cbor:"8,keyasint"`
}

// senmlBase holds the base values in force (RFC 8428 §4.1: a base field
// applies to the records after it until the next one sets it again).
type senmlBase struct {
	name, unit       string
	time, value, sum float64
}

// senmlSupportedVersion is the SenML version RFC 8428 defines.
const senmlSupportedVersion = 10

// relativeLimit: times below 2^28 s are relative to now (RFC 8428 §4.5.3).
const relativeLimit = 1 << 28

func (base *senmlBase) apply(b *builder, r *senmlRecord) error {
	if r.BaseVersion != nil && (*r.BaseVersion < 1 || *r.BaseVersion > senmlSupportedVersion) {
		return fmt.Errorf("bver %d not supported (max %d)", *r.BaseVersion, senmlSupportedVersion)
	}
	setString(&base.name, r.BaseName)
	setString(&base.unit, r.BaseUnit)
	setFloat(&base.time, r.BaseTime)
	setFloat(&base.value, r.BaseValue)
	setFloat(&base.sum, r.BaseSum)
	if r.DataValue != nil {
		return errors.New("vd (data value) is not supported")
	}
	name := base.name
	if r.Name != nil {
		name += *r.Name
	}
	name = senmlName(name)
	value, err := base.pickValue(r)
	if err != nil {
		return fmt.Errorf("%q: %v", name, err)
	}
	at, err := base.at(b, r)
	if err != nil {
		return fmt.Errorf("%q: %v", name, err)
	}
	return b.add(name, at, value, base.tags(r))
}

// at resolves the record's time to Unix ms: bt+t seconds, relative to the
// time of receipt below 2^28 (RFC 8428 §4.5.3).
func (base *senmlBase) at(b *builder, r *senmlRecord) (int64, error) {
	t := base.time
	if r.Time != nil {
		t += *r.Time
	}
	ms := t * 1000
	if t < relativeLimit {
		ms += float64(b.now)
	}
	return msFromFloat(ms)
}

// tags holds the record's unit (u, else bu) as the tag "unit".
func (base *senmlBase) tags(r *senmlRecord) map[string]string {
	unit := base.unit
	if r.Unit != nil {
		unit = *r.Unit
	}
	if unit == "" {
		return nil
	}
	return map[string]string{"unit": unit}
}

// pickValue picks the record's value: v (+bv), vs, vb, else s (+bs).
func (base *senmlBase) pickValue(r *senmlRecord) (any, error) {
	n := 0
	for _, set := range []bool{r.Value != nil, r.StringValue != nil, r.BoolValue != nil} {
		if set {
			n++
		}
	}
	switch {
	case n > 1:
		return nil, errors.New("more than one of v, vs, vb")
	case r.Value != nil:
		return base.value + *r.Value, nil
	case r.StringValue != nil:
		return *r.StringValue, nil
	case r.BoolValue != nil:
		return *r.BoolValue, nil
	case r.Sum != nil:
		return base.sum + *r.Sum, nil
	}
	return nil, errors.New("record has no value (v, vs, vb or s)")
}

func setString(dst, src *string) {
	if src != nil {
		*dst = *src
	}
}

func setFloat(dst, src *float64) {
	if src != nil {
		*dst = *src
	}
}

// senmlName maps names beginning with "urn:" (RFC 8428 §4.5.1 suggests
// URN-style base names) to valid metric names: every byte outside
// [A-Za-z0-9_.-] becomes '_'. Other names are left for Validate to judge.
func senmlName(s string) string {
	if len(s) < 4 || !strings.EqualFold(s[:4], "urn:") {
		return s
	}
	out := []byte(s)
	for i, c := range out {
		ok := c == '_' || c == '.' || c == '-' || (c >= 'a' && c <= 'z') ||
			(c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
		if !ok {
			out[i] = '_'
		}
	}
	return string(out)
}

// mustUnderstand reports a label ending in '_' (RFC 8428 §4.4), which a
// receiver that does not know it must refuse.
func mustUnderstand(label string) bool {
	return strings.HasSuffix(label, "_")
}

func decodeSenMLJSON(b *builder, data []byte) error {
	var records []json.RawMessage
	if err := json.Unmarshal(data, &records); err != nil {
		return err
	}
	base := &senmlBase{}
	for i, raw := range records {
		var labels map[string]json.RawMessage
		if err := json.Unmarshal(raw, &labels); err != nil {
			return fmt.Errorf("record %d: %v", i, err)
		}
		for l := range labels {
			if mustUnderstand(l) {
				return fmt.Errorf("record %d: unknown must-understand label %q", i, l)
			}
		}
		var r senmlRecord
		dec := json.NewDecoder(bytes.NewReader(raw))
		if err := dec.Decode(&r); err != nil {
			return fmt.Errorf("record %d: %v", i, err)
		}
		if err := base.apply(b, &r); err != nil {
			return fmt.Errorf("record %d: %v", i, err)
		}
	}
	return nil
}

// senmlDecMode bounds what a SenML CBOR pack can make the decoder do: a
// pack is an array of flat maps, so two levels suffice.
var senmlDecMode = func() cbor.DecMode {
	m, err := cbor.DecOptions{
		MaxNestedLevels:  4,
		MaxArrayElements: 100_000,
		MaxMapPairs:      64,
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		IndefLength:      cbor.IndefLengthForbidden,
		TagsMd:           cbor.TagsForbidden,
		UTF8:             cbor.UTF8RejectInvalid,
	}.DecMode()
	if err != nil {
		panic("payload: senml dec mode: " + err.Error())
	}
	return m
}()

func decodeSenMLCBOR(b *builder, data []byte) error {
	var records []cbor.RawMessage
	if err := senmlDecMode.Unmarshal(data, &records); err != nil {
		return err
	}
	base := &senmlBase{}
	for i, raw := range records {
		var labels map[any]cbor.RawMessage
		if err := senmlDecMode.Unmarshal(raw, &labels); err != nil {
			return fmt.Errorf("record %d: %v", i, err)
		}
		for l := range labels {
			if s, ok := l.(string); ok && mustUnderstand(s) {
				return fmt.Errorf("record %d: unknown must-understand label %q", i, s)
			}
		}
		var r senmlRecord
		if err := senmlDecMode.Unmarshal(raw, &r); err != nil {
			return fmt.Errorf("record %d: %v", i, err)
		}
		if err := base.apply(b, &r); err != nil {
			return fmt.Errorf("record %d: %v", i, err)
		}
	}
	return nil
}
