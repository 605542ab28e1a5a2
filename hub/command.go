package hub

import (
	"context"
	"time"
)

// CommandState is where a command is in its life. Persisted; never renumber
// or rename.
type CommandState string

// Command states: queued -> sent -> received -> succeeded | failed |
// timed_out | rejected; or expired (TTL passed before the device received
// it) or canceled (by an operator while queued).
const (
	StateQueued    CommandState = "queued"
	StateSent      CommandState = "sent"
	StateReceived  CommandState = "received"
	StateSucceeded CommandState = "succeeded"
	StateFailed    CommandState = "failed"
	StateTimedOut  CommandState = "timed_out"
	StateRejected  CommandState = "rejected"
	StateExpired   CommandState = "expired"
	StateCanceled  CommandState = "canceled"
)

// Terminal reports whether no further transition can happen.
func (s CommandState) Terminal() bool {
	switch s {
	case StateQueued, StateSent, StateReceived:
		return false
	}
	return true
}

// Valid reports whether s is a known state.
func (s CommandState) Valid() bool {
	switch s {
	case StateQueued, StateSent, StateReceived, StateSucceeded, StateFailed,
		StateTimedOut, StateRejected, StateExpired, StateCanceled:
		return true
	}
	return false
}

// Command is one command to one device and everything known about it.
type Command struct {
	ID         string            `json:"id"`
	BulkID     string            `json:"bulk_id,omitempty"`
	DeviceID   string            `json:"device_id"`
	Name       string            `json:"name"`
	Args       map[string]string `json:"args,omitempty"`
	SentBy     string            `json:"sent_by"`
	State      CommandState      `json:"state"`
	CreatedAt  time.Time         `json:"created_at"`
	ExpiresAt  time.Time         `json:"expires_at"` // CreatedAt + TTL: not received by then -> expired
	TimeoutMs  int64             `json:"timeout_ms"` // run time limit on the device
	SentAt     *time.Time        `json:"sent_at,omitempty"`
	ReceivedAt *time.Time        `json:"received_at,omitempty"`
	FinishedAt *time.Time        `json:"finished_at,omitempty"`
	ExitCode   *int64            `json:"exit_code,omitempty"`
	Stdout     string            `json:"stdout,omitempty"`
	Stderr     string            `json:"stderr,omitempty"`
	Truncated  bool              `json:"truncated,omitempty"` // output exceeded the cap
	DurationMs int64             `json:"duration_ms,omitempty"`
	Error      string            `json:"error,omitempty"` // why rejected/failed/expired, in words
	// Version increases with every change; waiters use it to see news.
	Version int64 `json:"version"`
}

// CommandFilter selects commands for listing. Zero fields do not filter.
type CommandFilter struct {
	DeviceID string
	BulkID   string
	State    CommandState
	Limit    int // default 100, at most 1000
	// Before lists commands created strictly before this one (paging,
	// newest first).
	BeforeID string
}

// DueQuery selects the open commands due for action at Now. A command is
// due if one of these holds:
//   - it is queued or sent and Now >= ExpiresAt (to expire);
//   - it is received and Now >= ReceivedAt + TimeoutMs + ResultGrace (to
//     time out);
//   - it is sent or received and Now - SentAt > RedeliverAfter (to push
//     again);
//   - it is queued and its device is in QueuedOf (to push again).
//
// Queued commands of other devices are not due: they are pushed when
// created and when their device connects; only a device whose push was
// dropped or failed goes in QueuedOf.
type DueQuery struct {
	Now            time.Time
	ResultGrace    time.Duration
	RedeliverAfter time.Duration
	QueuedOf       []string // device ids
	Limit          int      // at most this many, oldest first; <= 0: no limit
}

// CommandStore persists commands (hub/store implements it with SQLite).
type CommandStore interface {
	// CreateCommands inserts commands (one transaction).
	CreateCommands(ctx context.Context, cmds []Command) error
	GetCommand(ctx context.Context, id string) (Command, error) // ErrNotFound
	// ListCommands returns matching commands, newest first.
	ListCommands(ctx context.Context, f CommandFilter) ([]Command, error)
	// UpdateCommand runs fn on the stored command inside a transaction and
	// saves the result with Version+1. If fn returns an error nothing is
	// saved and the error is returned.
	UpdateCommand(ctx context.Context, id string, fn func(*Command) error) (Command, error)
	// PendingCommands returns deviceID's commands in queued, sent or
	// received state, oldest first.
	PendingCommands(ctx context.Context, deviceID string) ([]Command, error)
	// DueCommands returns the open commands a sweep must act on (see
	// DueQuery), oldest first, without their output: Stdout and Stderr
	// are empty. Commands that are merely waiting are not read.
	DueCommands(ctx context.Context, q DueQuery) ([]Command, error)
	// DevicesMatching returns the non-revoked devices whose labels contain
	// every key=value of selector (an empty selector matches all).
	DevicesMatching(ctx context.Context, selector map[string]string) ([]Device, error)
}

// Role is what an API caller may do.
type Role string

// Roles, least to most privileged.
const (
	RoleViewer   Role = "viewer"   // read only
	RoleOperator Role = "operator" // + send and cancel commands
	RoleAdmin    Role = "admin"    // + devices and tokens
)

// Allows reports whether r includes need.
func (r Role) Allows(need Role) bool { return r.rank() >= need.rank() && need.rank() > 0 }

func (r Role) rank() int {
	switch r {
	case RoleViewer:
		return 1
	case RoleOperator:
		return 2
	case RoleAdmin:
		return 3
	}
	return 0
}

// SendRequest asks for a command to one device (DeviceID) or, in a bulk
// send, to every device matching Selector.
type SendRequest struct {
	DeviceID string            `json:"device_id,omitempty"`
	Selector map[string]string `json:"selector,omitempty"`
	Name     string            `json:"name"`
	Args     map[string]string `json:"args,omitempty"`
	TTL      time.Duration     `json:"-"` // default 1h, at most 7 days
	Timeout  time.Duration     `json:"-"` // default 60s, at most 24h
	SentBy   string            `json:"-"`
}

// BulkStatus summarises a bulk send.
type BulkStatus struct {
	BulkID   string               `json:"bulk_id"`
	Total    int                  `json:"total"`
	ByState  map[CommandState]int `json:"by_state"`
	Done     bool                 `json:"done"` // every command terminal
	Commands []Command            `json:"commands"`
}
