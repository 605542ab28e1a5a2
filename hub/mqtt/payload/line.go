package payload

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/influxdata/line-protocol/v2/lineprotocol"
)

// decodeLine reads InfluxDB line protocol with nanosecond timestamps.
func decodeLine(b *builder, data []byte) error {
	dec := lineprotocol.NewDecoderWithBytes(data)
	now := time.UnixMilli(b.now)
	for line := 1; dec.Next(); line++ {
		if err := decodeLineEntry(b, dec, now); err != nil {
			return fmt.Errorf("entry %d: %v", line, err)
		}
	}
	return dec.Err()
}

func decodeLineEntry(b *builder, dec *lineprotocol.Decoder, now time.Time) error {
	m, err := dec.Measurement()
	if err != nil {
		return err
	}
	meas := string(m)
	// "a.b,f=1" would be stored as measurement "a", field "b.f" (SPEC.md
	// section 7), not where the sender put it.
	if strings.Contains(meas, ".") {
		return fmt.Errorf("measurement %q contains '.'", meas)
	}
	tags, err := lineTags(dec)
	if err != nil {
		return err
	}
	fields, err := lineFields(dec, meas)
	if err != nil {
		return err
	}
	t, err := dec.Time(lineprotocol.Nanosecond, now)
	if err != nil {
		return err
	}
	for _, f := range fields {
		if err := b.add(f.name, t.UnixMilli(), f.value, tags); err != nil {
			return err
		}
	}
	return nil
}

func lineTags(dec *lineprotocol.Decoder) (map[string]string, error) {
	var tags map[string]string
	for {
		k, v, err := dec.NextTag()
		if err != nil || k == nil {
			return tags, err
		}
		if tags == nil {
			tags = map[string]string{}
		}
		tags[string(k)] = string(v)
	}
}

// lineField is one field of a line, already named as a metric.
type lineField struct {
	name  string
	value any
}

// lineFields names the fields "measurement.field", or just "measurement"
// for the field "value" (the inverse of protocol.SplitName).
func lineFields(dec *lineprotocol.Decoder, meas string) ([]lineField, error) {
	var fields []lineField
	for {
		k, v, err := dec.NextField()
		if err != nil || k == nil {
			return fields, err
		}
		name := meas + "." + string(k)
		if string(k) == "value" {
			name = meas
		}
		val, err := lineValue(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", name, err)
		}
		fields = append(fields, lineField{name, val})
	}
}

func lineValue(v lineprotocol.Value) (any, error) {
	switch v.Kind() {
	case lineprotocol.Int:
		return v.IntV(), nil
	case lineprotocol.Uint:
		if v.UintV() > math.MaxInt64 {
			return nil, fmt.Errorf("unsigned value %d > %d", v.UintV(), int64(math.MaxInt64))
		}
		return int64(v.UintV()), nil
	case lineprotocol.Float:
		return v.FloatV(), nil
	case lineprotocol.Bool:
		return v.BoolV(), nil
	case lineprotocol.String:
		return v.StringV(), nil
	}
	return nil, fmt.Errorf("unsupported field kind %v", v.Kind())
}
