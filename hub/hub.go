// Package hub is the core of fleethub: device sessions, the ingest pipeline
// and the domain types shared by its adapters (hub/store, hub/influx,
// hub/api, hub/devicews). It knows nothing of HTTP, SQL or InfluxDB.
package hub

import (
	"context"
	"errors"
	"time"

	"github.com/fleetwire/fleetwire/protocol"
)

// Domain errors; adapters map them to HTTP status codes at the edge.
var (
	ErrNotFound     = errors.New("not found")
	ErrConflict     = errors.New("already exists")
	ErrUnauthorized = errors.New("unauthorized")
	ErrRevoked      = errors.New("device revoked")
	ErrInvalidInput = errors.New("invalid input")
	// ErrTooSoon: the device asked for a new token again too soon.
	ErrTooSoon = errors.New("too soon")
)

// MinTokenRotation is how often a device may get a new token unasked
// (an operator's request overrides it).
const MinTokenRotation = 10 * time.Minute

// Device is a registered device.
type Device struct {
	ID           string            `json:"id"`
	Labels       map[string]string `json:"labels"`
	CreatedAt    time.Time         `json:"created_at"`
	Revoked      bool              `json:"revoked"`
	RevokedAt    *time.Time        `json:"revoked_at,omitempty"`
	LastSeen     *time.Time        `json:"last_seen,omitempty"`
	AgentVersion string            `json:"agent_version,omitempty"`
	// AgentBehind: the agent is older than the newest any device runs
	// (filled by MarkAgentVersions, not stored).
	AgentBehind bool   `json:"agent_behind,omitempty"`
	Transport   string `json:"transport"` // "ws" (agent) or "mqtt"
	// RotateRequested: an operator asked the device to rotate its token
	// and it has not used a new one yet.
	RotateRequested bool `json:"rotate_requested,omitempty"`
	// Online is filled from live sessions, not stored.
	Online bool `json:"online"`
}

// IngestBatch is one device's validated telemetry batch, ready for storage.
type IngestBatch struct {
	DeviceID string
	Labels   map[string]string
	Batch    *protocol.Batch
	// Transport is how the batch arrived: "" for an agent's WebSocket
	// session, "mqtt" for the MQTT bridge (which never republishes its own).
	Transport string
}

// TelemetrySink stores telemetry. Write returns nil once every point is
// stored or, if the store rejected some as invalid, dead-lettered. It returns
// an error only when ctx ends first; transient failures are retried inside.
type TelemetrySink interface {
	Write(ctx context.Context, batches []*IngestBatch) error
}

// DeadLetter is a point the telemetry store refused as invalid.
type DeadLetter struct {
	ID       int64     `json:"id"`
	DeviceID string    `json:"device_id"`
	Line     string    `json:"line"` // the point as InfluxDB line protocol
	Error    string    `json:"error"`
	At       time.Time `json:"at"`
}

// DeadLetterStore keeps dead letters.
type DeadLetterStore interface {
	AddDeadLetters(ctx context.Context, dl []DeadLetter) error
}

// DeviceStore is what device sessions need of the registry.
type DeviceStore interface {
	AuthenticateDevice(ctx context.Context, token string) (Device, error)
	TouchDevice(ctx context.Context, id string, seen time.Time, agentVersion string) error
}

// APITokenInfo is what an authenticated API token may do.
type APITokenInfo struct {
	Name string `json:"name"`
	Role Role   `json:"role"`
}
