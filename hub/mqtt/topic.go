package mqtt

import (
	"errors"
	"fmt"
	"strings"

	"github.com/fleetwire/fleetwire/hub/store"
)

// DevicePlaceholder is the topic level a template's device id takes.
const DevicePlaceholder = "{device}"

// Template is a topic with one level that is the device id, such as
// "fleetwire/{device}/telemetry". It gives the subscription filter (that
// level as '+'), the topic of one device, and the device of a topic.
type Template struct {
	raw    string
	levels []string
	dev    int // index of the device level
}

// ParseTemplate checks a topic template: levels separated by '/', exactly
// one of them "{device}", no wildcards, no empty levels, no NUL.
func ParseTemplate(s string) (Template, error) {
	if s == "" {
		return Template{}, errors.New("empty topic template")
	}
	if len(s) > 1024 {
		return Template{}, fmt.Errorf("topic template %q: longer than 1024 bytes", s[:32]+"...")
	}
	t := Template{raw: s, levels: strings.Split(s, "/"), dev: -1}
	for i, l := range t.levels {
		switch {
		case l == DevicePlaceholder:
			if t.dev >= 0 {
				return Template{}, fmt.Errorf("topic template %q: %s appears twice", s, DevicePlaceholder)
			}
			t.dev = i
		case l == "":
			return Template{}, fmt.Errorf("topic template %q: empty level", s)
		case strings.ContainsAny(l, "+#\x00{}"):
			return Template{}, fmt.Errorf("topic template %q: level %q holds a wildcard, NUL or brace", s, l)
		}
	}
	if t.dev < 0 {
		return Template{}, fmt.Errorf("topic template %q: no %s level", s, DevicePlaceholder)
	}
	if strings.HasPrefix(s, "$") {
		return Template{}, fmt.Errorf("topic template %q: topics starting with $ are the broker's", s)
	}
	return t, nil
}

// MustTemplate is ParseTemplate for constants.
func MustTemplate(s string) Template {
	t, err := ParseTemplate(s)
	if err != nil {
		panic(err)
	}
	return t
}

// String returns the template as written.
func (t Template) String() string { return t.raw }

// Filter is the subscription filter: the device level as '+'.
func (t Template) Filter() string { return t.with("+") }

// Topic is the topic of one device.
func (t Template) Topic(deviceID string) string { return t.with(deviceID) }

func (t Template) with(dev string) string {
	levels := append([]string(nil), t.levels...)
	levels[t.dev] = dev
	return strings.Join(levels, "/")
}

// Match reports whether topic has the template's shape and returns the
// text at the device level, unchecked (see Device).
func (t Template) Match(topic string) (string, bool) {
	if strings.Count(topic, "/") != len(t.levels)-1 {
		return "", false
	}
	var dev string
	for i, l := range strings.Split(topic, "/") {
		if i == t.dev {
			dev = l
		} else if l != t.levels[i] {
			return "", false
		}
	}
	return dev, true
}

// Overlaps reports whether some topic could match both templates, so a
// message published to one would be read back by a subscription to the
// other (the northbound topic must never feed the bridge its own output).
func (t Template) Overlaps(o Template) bool {
	if len(t.levels) != len(o.levels) {
		return false
	}
	for i := range t.levels {
		if i == t.dev || i == o.dev {
			continue
		}
		if t.levels[i] != o.levels[i] {
			return false
		}
	}
	return true
}

// errBadDevice marks a topic whose device level is not a device id.
var errBadDevice = errors.New("not a device id")

// deviceOf returns the device id a topic names under t, checked against the
// registry's id rules, so "..", upper case or an empty level never reach
// the store.
func deviceOf(t Template, topic string) (string, bool, error) {
	dev, ok := t.Match(topic)
	if !ok {
		return "", false, nil
	}
	if err := store.ValidDeviceID(dev); err != nil {
		return "", true, fmt.Errorf("%w: %q", errBadDevice, dev)
	}
	return dev, true, nil
}
