// Package protocol defines the Fleetwire device <-> hub wire messages and
// their CBOR encoding. It does no I/O. The byte-exact format is documented in
// SPEC.md beside this file; keep the two in step.
package protocol

// Version is the protocol version this build speaks. A hub also accepts
// agents speaking MinVersion (one version older), see SPEC.md "Versioning".
const (
	Version    = 1
	MinVersion = 1
)

// Subprotocol is the WebSocket subprotocol token for Version
// (negotiated with Sec-WebSocket-Protocol).
const Subprotocol = "fleetwire.v1"

// Type identifies a message; it is the first element of every envelope.
type Type uint8

// Message types. Values are part of the wire format: never renumber.
const (
	TypeHello         Type = 1 // agent -> hub, first message of a session
	TypeWelcome       Type = 2 // hub -> agent, answer to hello
	TypeBatch         Type = 3 // agent -> hub, telemetry batch
	TypeAck           Type = 4 // hub -> agent, highest contiguous seq stored
	TypeCommand       Type = 5 // hub -> agent, run a command
	TypeCommandResult Type = 6 // agent -> hub, outcome of a command
)

// String names the type for logs and errors.
func (t Type) String() string {
	switch t {
	case TypeHello:
		return "hello"
	case TypeWelcome:
		return "welcome"
	case TypeBatch:
		return "batch"
	case TypeAck:
		return "ack"
	case TypeCommand:
		return "command"
	case TypeCommandResult:
		return "command_result"
	}
	return "unknown"
}

// Hello capabilities a hub acts on.
const (
	// CapRotateToken: the agent rotates its token when closed with
	// CloseRotateToken; the hub sends that close only to agents that say so.
	CapRotateToken = "rotate_token"
)

// Hello is the agent's first message after the upgrade.
type Hello struct {
	AgentVersion    string   `cbor:"1,keyasint"`
	ProtocolVersion uint     `cbor:"2,keyasint"`
	BootID          string   `cbor:"3,keyasint"`
	Capabilities    []string `cbor:"4,keyasint,omitempty"`
	Hostname        string   `cbor:"5,keyasint,omitempty"`
	Arch            string   `cbor:"6,keyasint,omitempty"` // e.g. "linux/armv6"
}

// Welcome is the hub's answer to Hello.
type Welcome struct {
	SessionID  string   `cbor:"1,keyasint"`
	ServerTime int64    `cbor:"2,keyasint"` // Unix milliseconds
	DeviceID   string   `cbor:"3,keyasint"`
	Settings   Settings `cbor:"4,keyasint"`
}

// Settings are limits the hub enforces on this session; the agent must stay
// within them.
type Settings struct {
	MaxMessageBytes uint `cbor:"1,keyasint"` // largest message the hub reads
	MaxBatchPoints  uint `cbor:"2,keyasint"` // points per batch
	MaxInflight     uint `cbor:"3,keyasint"` // unacked batches the agent may have sent
	PingIntervalMs  uint `cbor:"4,keyasint"` // the hub pings this often

	// The device's rate budget: token buckets the hub charges one token
	// per message and one per point (a batch at most PointsBurst). A
	// device over it is throttled and, if that lasts, closed (ClosePolicy).
	// Agents pace their sends below it, so replaying a long spool is never
	// taken for abuse. Zero (or absent, from older hubs): no limit.
	MsgsPerSec   float64 `cbor:"5,keyasint,omitempty"`
	MsgsBurst    uint    `cbor:"6,keyasint,omitempty"`
	PointsPerSec float64 `cbor:"7,keyasint,omitempty"`
	PointsBurst  uint    `cbor:"8,keyasint,omitempty"`
}

// Batch carries telemetry. Seq is per device and strictly increasing across
// the agent's life (it survives restarts through the spool).
type Batch struct {
	Seq      uint64            `cbor:"1,keyasint"`
	BaseTime int64             `cbor:"2,keyasint"` // Unix milliseconds
	Tags     map[string]string `cbor:"3,keyasint,omitempty"`
	Points   []Point           `cbor:"4,keyasint"`
	Dropped  uint64            `cbor:"5,keyasint,omitempty"` // batches the spool dropped, cumulative
}

// Point is one measurement. Its time is Batch.BaseTime + DT milliseconds.
// Decode may give points of one batch with equal tags the same Tags map:
// treat decoded tag maps as read-only.
// Value is one of float64, int64, bool or string; an agent may also set a
// uint64 up to math.MaxInt64 (it decodes as int64). Anything else is
// rejected by Validate. Decode yields float64 for every CBOR float width and
// int64 for every CBOR integer.
type Point struct {
	Name  string            `cbor:"1,keyasint"`
	DT    int64             `cbor:"2,keyasint,omitempty"`
	Value any               `cbor:"3,keyasint"`
	Tags  map[string]string `cbor:"4,keyasint,omitempty"`
}

// Ack tells the agent that every batch it sent in this session up to and
// including Seq is stored.
type Ack struct {
	Seq uint64 `cbor:"1,keyasint"`
}

// Command asks the agent to run a declared command. Executed at most once per
// ID on the device.
type Command struct {
	ID        string            `cbor:"1,keyasint"`
	Name      string            `cbor:"2,keyasint"`
	Args      map[string]string `cbor:"3,keyasint,omitempty"`
	TimeoutMs uint64            `cbor:"4,keyasint,omitempty"`
}

// CommandResult reports on a Command.
type CommandResult struct {
	ID         string `cbor:"1,keyasint"`
	State      string `cbor:"2,keyasint"` // received, succeeded, failed, timed_out, rejected, output
	ExitCode   int64  `cbor:"3,keyasint,omitempty"`
	Stdout     []byte `cbor:"4,keyasint,omitempty"`
	Stderr     []byte `cbor:"5,keyasint,omitempty"`
	DurationMs uint64 `cbor:"6,keyasint,omitempty"`
	Truncated  bool   `cbor:"7,keyasint,omitempty"`
	Error      string `cbor:"8,keyasint,omitempty"`
}
