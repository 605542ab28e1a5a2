package config

import (
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// redacted replaces a secret that has a value. An empty secret prints as
// "" so --print-config still shows that it is missing.
const redacted = "***"

// Print writes cfg (a config struct or a pointer to one) as YAML, with the
// keys Load reads, in field order: durations as "10s", ByteSize as "64MiB".
// Secrets print as "***": fields tagged `secret:"true"`, and fields or map
// entries whose key is token, password or secret or ends in _token,
// _password or _secret.
func Print(w io.Writer, cfg any) error {
	rv := reflect.ValueOf(cfg)
	for rv.Kind() == reflect.Pointer && !rv.IsNil() {
		rv = rv.Elem()
	}
	if rv.Kind() != reflect.Struct {
		return errNotStruct
	}
	node, err := toNode(rv)
	if err != nil {
		return err
	}
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(node); err != nil {
		return fmt.Errorf("config: print: %w", err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("config: print: %w", err)
	}
	return nil
}

// toNode converts a value to a YAML node, walking structs by their keys.
func toNode(v reflect.Value) (*yaml.Node, error) {
	if !v.IsValid() {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}, nil
	}
	switch v.Type() {
	case durationType:
		return str(time.Duration(v.Int()).String()), nil
	case byteSizeType:
		return str(ByteSize(v.Int()).String()), nil
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return toNode(reflect.Value{})
		}
		return toNode(v.Elem())
	case reflect.Struct:
		if isNested(v.Type()) {
			return structNode(v)
		}
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() != reflect.Uint8 {
			return seqNode(v)
		}
	case reflect.Map:
		return mapNode(v)
	}
	n := &yaml.Node{}
	if err := n.Encode(v.Interface()); err != nil {
		return nil, fmt.Errorf("config: print %s: %w", v.Type(), err)
	}
	return n, nil
}

func structNode(v reflect.Value) (*yaml.Node, error) {
	m := &yaml.Node{Kind: yaml.MappingNode}
	if err := appendFields(m, v); err != nil {
		return nil, err
	}
	return m, nil
}

// appendFields adds v's fields to mapping m, flattening `,squash` fields.
func appendFields(m *yaml.Node, v reflect.Value) error {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name, squash, ok := fieldKey(f)
		if !ok {
			continue
		}
		fv := v.Field(i)
		if squash {
			for fv.Kind() == reflect.Pointer && !fv.IsNil() {
				fv = fv.Elem()
			}
			if fv.Kind() == reflect.Struct {
				if err := appendFields(m, fv); err != nil {
					return err
				}
				continue
			}
		}
		val, err := valueNode(fv, name, f.Tag.Get("secret") == "true")
		if err != nil {
			return err
		}
		m.Content = append(m.Content, str(name), val)
	}
	return nil
}

// valueNode converts one keyed value, redacting it if it is a secret.
func valueNode(v reflect.Value, key string, secretTag bool) (*yaml.Node, error) {
	if secretTag || isSecretName(key) {
		if v.IsZero() {
			return str(""), nil
		}
		n := str(redacted)
		n.Style = yaml.DoubleQuotedStyle // a bare * would start a YAML alias
		return n, nil
	}
	return toNode(v)
}

func seqNode(v reflect.Value) (*yaml.Node, error) {
	s := &yaml.Node{Kind: yaml.SequenceNode}
	scalars := true
	for i := range v.Len() {
		n, err := toNode(v.Index(i))
		if err != nil {
			return nil, err
		}
		scalars = scalars && n.Kind == yaml.ScalarNode
		s.Content = append(s.Content, n)
	}
	// Short lists of plain values read best on one line: disks: [/, /data].
	if scalars {
		s.Style = yaml.FlowStyle
	}
	return s, nil
}

// mapNode writes entries sorted by key so the output is stable.
func mapNode(v reflect.Value) (*yaml.Node, error) {
	m := &yaml.Node{Kind: yaml.MappingNode}
	keys := v.MapKeys()
	slices.SortFunc(keys, func(a, b reflect.Value) int {
		return strings.Compare(fmt.Sprint(a.Interface()), fmt.Sprint(b.Interface()))
	})
	for _, k := range keys {
		name := fmt.Sprint(k.Interface())
		val, err := valueNode(v.MapIndex(k), strings.ToLower(name), false)
		if err != nil {
			return nil, err
		}
		m.Content = append(m.Content, str(name), val)
	}
	if len(keys) == 0 {
		m.Style = yaml.FlowStyle
	}
	return m, nil
}

// isSecretName reports whether a key conventionally holds a credential.
func isSecretName(key string) bool {
	for _, s := range []string{"token", "password", "secret"} {
		if key == s || strings.HasSuffix(key, "_"+s) {
			return true
		}
	}
	return false
}

// str is a plain string scalar; the encoder quotes it when YAML needs that.
func str(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
}
