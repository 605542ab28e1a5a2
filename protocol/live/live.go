// Package live defines the JSON messages of the dashboard's live stream
// (GET /v1/live, browser <-> hub). It does no I/O. Client messages are small
// and strictly validated because they come from a browser the hub does not
// trust; hub messages are built by the hub and only encoded.
package live

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// MaxClientMessageBytes is the largest client message the hub reads. A
// subscribe with a 64-byte device id is under 100 bytes.
const MaxClientMessageBytes = 4 << 10

// MaxDeviceIDLen matches the registry's device id rule (hub/store).
const MaxDeviceIDLen = 64

// Client -> hub message types.
const (
	TypeSubscribe   = "subscribe"
	TypeUnsubscribe = "unsubscribe"
	TypePing        = "ping"
)

// Hub -> client message types.
const (
	TypeHello       = "hello"
	TypePong        = "pong"
	TypePoints      = "points"
	TypeFleet       = "fleet"
	TypeDeviceState = "device_state"
	TypeError       = "error"
)

// Topics a client may subscribe to.
const (
	TopicFleet  = "fleet"  // coalesced summary of every device
	TopicDevice = "device" // every point of one device
)

// ErrInvalid wraps every decode and validation failure.
var ErrInvalid = errors.New("invalid live message")

// ClientMessage is a message from the browser. Topic and Device are set
// only for subscribe/unsubscribe; Device only for TopicDevice.
type ClientMessage struct {
	Type   string `json:"type"`
	Topic  string `json:"topic,omitempty"`
	Device string `json:"device,omitempty"`
}

// DecodeClient parses and validates one client message. It refuses input
// over MaxClientMessageBytes, unknown fields, trailing data and any field
// that does not belong to the message type.
func DecodeClient(data []byte) (ClientMessage, error) {
	var m ClientMessage
	if len(data) > MaxClientMessageBytes {
		return m, fmt.Errorf("%w: %d bytes > limit %d", ErrInvalid, len(data), MaxClientMessageBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return ClientMessage{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	// One JSON value per WebSocket message: "{..}{..}" is an error, not two.
	if _, err := dec.Token(); err != io.EOF {
		return ClientMessage{}, fmt.Errorf("%w: trailing data", ErrInvalid)
	}
	if err := m.Validate(); err != nil {
		return ClientMessage{}, err
	}
	return m, nil
}

// Validate checks the type, topic and device id combination.
func (m ClientMessage) Validate() error {
	switch m.Type {
	case TypePing:
		if m.Topic != "" || m.Device != "" {
			return fmt.Errorf("%w: ping takes no topic or device", ErrInvalid)
		}
		return nil
	case TypeSubscribe, TypeUnsubscribe:
	default:
		return fmt.Errorf("%w: unknown type %q", ErrInvalid, m.Type)
	}
	switch m.Topic {
	case TopicFleet:
		if m.Device != "" {
			return fmt.Errorf("%w: fleet topic takes no device", ErrInvalid)
		}
		return nil
	case TopicDevice:
		return ValidDeviceID(m.Device)
	}
	return fmt.Errorf("%w: unknown topic %q", ErrInvalid, m.Topic)
}

// ValidDeviceID applies the registry's rule: 1..64 bytes of
// [a-z0-9][a-z0-9._-]*. Kept here (not imported from hub/store) because
// protocol packages depend on nothing in hub.
func ValidDeviceID(id string) error {
	if len(id) == 0 || len(id) > MaxDeviceIDLen {
		return fmt.Errorf("%w: device id length %d not in 1..%d", ErrInvalid, len(id), MaxDeviceIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			(i > 0 && (c == '.' || c == '_' || c == '-'))
		if !ok {
			return fmt.Errorf("%w: device id byte %d not allowed", ErrInvalid, i)
		}
	}
	return nil
}

// Hello is the hub's first message on a live connection.
type Hello struct {
	Type string `json:"type"` // "hello"
	User string `json:"user"`
	Role string `json:"role"`
}

// Pong answers a client ping.
type Pong struct {
	Type string `json:"type"` // "pong"
}

// Point is one measurement of a device. T is Unix milliseconds; V is a
// number, bool or string as the agent sent it. Tags merge the batch's tags
// with the point's own.
type Point struct {
	Name string            `json:"name"`
	T    int64             `json:"t"`
	V    any               `json:"v"`
	Tags map[string]string `json:"tags,omitempty"`
}

// Points carries every point of one device (device topic).
type Points struct {
	Type    string  `json:"type"` // "points"
	Device  string  `json:"device"`
	Points  []Point `json:"points"`
	Dropped int     `json:"dropped,omitempty"` // points this client missed since the last message (it was slow)
}

// FleetDevice is the summary of one device on the fleet topic.
type FleetDevice struct {
	ID       string             `json:"id"`
	Online   bool               `json:"online"`
	LastSeen int64              `json:"last_seen,omitempty"` // Unix ms of the newest point
	Metrics  map[string]float64 `json:"metrics,omitempty"`   // latest value of each key metric
}

// Fleet carries the devices that changed since the last fleet message.
type Fleet struct {
	Type    string        `json:"type"` // "fleet"
	Devices []FleetDevice `json:"devices"`
}

// DeviceState says a device went online or offline (device topic).
type DeviceState struct {
	Type   string `json:"type"` // "device_state"
	ID     string `json:"id"`
	Online bool   `json:"online"`
}

// Error reports a refused client message; the connection stays open
// unless the hub closes it.
type Error struct {
	Type  string `json:"type"` // "error"
	Error string `json:"error"`
}
