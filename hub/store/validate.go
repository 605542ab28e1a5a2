package store

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/protocol"
)

// Limits on what an operator can store; labels become InfluxDB tags, so
// they follow the wire protocol's tag rules.
const (
	MaxIDLen         = 64
	MaxLabels        = 32
	MaxLabelKeyLen   = 64
	MaxLabelValueLen = 256
	// ReservedLabel is the tag the hub adds to every point itself.
	ReservedLabel = "device"
)

// ValidDeviceID checks a device id: 1..64 bytes of [a-z0-9][a-z0-9._-]*.
func ValidDeviceID(id string) error {
	if len(id) == 0 || len(id) > MaxIDLen {
		return fmt.Errorf("%w: device id length %d not in 1..%d", hub.ErrInvalidInput, len(id), MaxIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			(i > 0 && (c == '.' || c == '_' || c == '-'))
		if !ok {
			return fmt.Errorf("%w: device id %q: byte %d (%q) not allowed (use [a-z0-9][a-z0-9._-]*)", hub.ErrInvalidInput, id, i, c)
		}
	}
	return nil
}

// ValidLabels checks a device's labels.
func ValidLabels(labels map[string]string) error {
	if len(labels) > MaxLabels {
		return fmt.Errorf("%w: %d labels > limit %d", hub.ErrInvalidInput, len(labels), MaxLabels)
	}
	for k, v := range labels {
		if err := protocol.ValidName(k, MaxLabelKeyLen); err != nil {
			return fmt.Errorf("%w: label key: %v", hub.ErrInvalidInput, err)
		}
		if k == ReservedLabel {
			return fmt.Errorf("%w: label key %q is reserved", hub.ErrInvalidInput, k)
		}
		if len(v) == 0 || len(v) > MaxLabelValueLen {
			return fmt.Errorf("%w: label %s: value length %d not in 1..%d", hub.ErrInvalidInput, k, len(v), MaxLabelValueLen)
		}
		if !utf8.ValidString(v) {
			return fmt.Errorf("%w: label %s: value is not UTF-8", hub.ErrInvalidInput, k)
		}
		// Labels become InfluxDB tags: the same characters as the
		// protocol's tag values are refused (line protocol cannot carry a
		// control character or a trailing backslash unchanged).
		if i := strings.IndexFunc(v, protocol.BadTagRune); i >= 0 {
			return fmt.Errorf("%w: label %s: byte %d of value is a control character or backslash", hub.ErrInvalidInput, k, i)
		}
	}
	return nil
}
