package payload

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/fleetwire/fleetwire/protocol"
)

// EncodeJSON renders a validated batch in the "json" envelope shape, every
// point with its absolute time in Unix ms, so Decode(FormatJSON) reads it
// back as the same points with the same types: a float64 always carries a
// fraction or an exponent ("12.0"), an int64 never does. The MQTT bridge's
// northbound republishing uses it.
func EncodeJSON(b *protocol.Batch) ([]byte, error) {
	type point struct {
		Name  string            `json:"name"`
		Value json.RawMessage   `json:"value"`
		Time  int64             `json:"time"`
		Tags  map[string]string `json:"tags,omitempty"`
	}
	out := struct {
		Tags   map[string]string `json:"tags,omitempty"`
		Points []point           `json:"points"`
	}{Tags: b.Tags, Points: make([]point, len(b.Points))}
	for i, p := range b.Points {
		v, err := encodeValue(p.Value)
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", p.Name, err)
		}
		out.Points[i] = point{Name: p.Name, Value: v, Time: b.BaseTime + p.DT, Tags: p.Tags}
	}
	return json.Marshal(out)
}

func encodeValue(v any) (json.RawMessage, error) {
	switch v := v.(type) {
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("%v has no JSON form", v)
		}
		s := strconv.FormatFloat(v, 'g', -1, 64)
		if !strings.ContainsAny(s, ".e") {
			s += ".0"
		}
		return json.RawMessage(s), nil
	case int64:
		return json.RawMessage(strconv.FormatInt(v, 10)), nil
	case uint64: // Validate keeps these within int64
		if v > math.MaxInt64 {
			return nil, fmt.Errorf("%d overflows int64", v)
		}
		return json.RawMessage(strconv.FormatUint(v, 10)), nil
	case bool, string:
		return json.Marshal(v)
	}
	return nil, fmt.Errorf("value of type %T", v)
}
