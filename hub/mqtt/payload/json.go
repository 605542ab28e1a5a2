package payload

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// member is one key/value pair of a JSON object, in document order.
type member struct {
	key string
	raw json.RawMessage
}

// objectMembers reads a JSON object's members in order, refusing duplicate
// keys (encoding/json would keep the last one silently).
func objectMembers(data []byte) ([]member, error) {
	m, err := readMembers(data)
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return m, err
}

func readMembers(data []byte) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil {
		return nil, err
	} else if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("want an object, got %s", describe(data))
	}
	var out []member
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key := tok.(string) // object keys are always strings
		if seen[key] {
			return nil, fmt.Errorf("duplicate key %q", key)
		}
		seen[key] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, err
		}
		out = append(out, member{key, raw})
	}
	if _, err := dec.Token(); err != nil { // closing '}'
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the object")
	}
	return out, nil
}

func describe(raw []byte) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

func decodeJSON(b *builder, data []byte) error {
	members, err := objectMembers(data)
	if err != nil {
		return err
	}
	for _, m := range members {
		if m.key == "points" && describe(m.raw) == "an array" {
			return decodeEnvelope(b, members)
		}
	}
	return flatten(b, "", members, 1, map[string]bool{})
}

type jsonPoint struct {
	Name  string            `json:"name"`
	Value json.RawMessage   `json:"value"`
	Time  json.RawMessage   `json:"time"`
	Tags  map[string]string `json:"tags"`
}

func decodeEnvelope(b *builder, members []member) error {
	t := b.now
	var points []json.RawMessage
	for _, m := range members {
		var err error
		switch m.key {
		case "time":
			t, err = jsonTime(m.raw)
		case "tags":
			err = strictUnmarshal(m.raw, &b.tags)
		case "points":
			err = json.Unmarshal(m.raw, &points)
		default:
			err = errors.New("unknown key (want time, tags, points)")
		}
		if err != nil {
			return fmt.Errorf("%s: %v", m.key, err)
		}
	}
	for i, raw := range points {
		if err := envelopePoint(b, raw, t); err != nil {
			return fmt.Errorf("point %d: %v", i, err)
		}
	}
	return nil
}

func envelopePoint(b *builder, raw json.RawMessage, t int64) error {
	var p jsonPoint
	if err := strictUnmarshal(raw, &p); err != nil {
		return err
	}
	if p.Value == nil {
		return fmt.Errorf("%q: missing value", p.Name)
	}
	v, err := jsonValue(p.Value)
	if err != nil {
		return fmt.Errorf("%q: %v", p.Name, err)
	}
	if p.Time != nil {
		if t, err = jsonTime(p.Time); err != nil {
			return fmt.Errorf("%q: time: %v", p.Name, err)
		}
	}
	return b.add(p.Name, t, v, p.Tags)
}

func strictUnmarshal(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// flatten adds the members of a flat-shape object, prefixing names.
func flatten(b *builder, prefix string, members []member, depth int, seen map[string]bool) error {
	if depth > MaxJSONDepth {
		return fmt.Errorf("%s: nested deeper than %d", strings.TrimSuffix(prefix, "."), MaxJSONDepth)
	}
	for _, m := range members {
		name := prefix + m.key
		if describe(m.raw) == "an object" {
			inner, err := objectMembers(m.raw)
			if err != nil {
				return fmt.Errorf("%q: %v", name, err)
			}
			if err := flatten(b, name+".", inner, depth+1, seen); err != nil {
				return err
			}
			continue
		}
		if seen[name] {
			return fmt.Errorf("duplicate metric name %q after flattening", name)
		}
		seen[name] = true
		v, err := jsonValue(m.raw)
		if err != nil {
			return fmt.Errorf("%q: %v", name, err)
		}
		if err := b.add(name, b.now, v, nil); err != nil {
			return err
		}
	}
	return nil
}

// jsonValue converts a JSON scalar: integral numbers to int64, other
// numbers to float64, booleans and strings as they are.
func jsonValue(raw json.RawMessage) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	switch v := v.(type) {
	case bool, string:
		return v, nil
	case json.Number:
		return jsonNumber(v)
	}
	return nil, fmt.Errorf("value is %s, want a number, boolean or string", describe(raw))
}

func jsonNumber(n json.Number) (any, error) {
	if !strings.ContainsAny(string(n), ".eE") {
		i, err := n.Int64()
		if err != nil {
			return nil, fmt.Errorf("integer %s does not fit int64", n)
		}
		return i, nil
	}
	f, err := n.Float64()
	if err != nil || math.IsInf(f, 0) {
		return nil, fmt.Errorf("number %s is not a finite float64", n)
	}
	return f, nil
}

// jsonTime reads an integer of Unix ms or an RFC 3339 string.
func jsonTime(raw json.RawMessage) (int64, error) {
	v, err := jsonValue(raw)
	if err != nil {
		return 0, err
	}
	switch v := v.(type) {
	case int64:
		return v, checkMs(v)
	case string:
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return 0, err
		}
		return t.UnixMilli(), checkMs(t.UnixMilli())
	}
	return 0, errors.New("want integer Unix ms or an RFC 3339 string")
}
