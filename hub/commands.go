package hub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/fleetwire/fleetwire/protocol"
)

// ErrShuttingDown ends waits when the hub stops.
var ErrShuttingDown = errors.New("hub shutting down")

// Command limits and defaults.
const (
	DefaultCommandTTL     = time.Hour
	MaxCommandTTL         = 7 * 24 * time.Hour
	DefaultCommandTimeout = 60 * time.Second
	MaxCommandTimeout     = 24 * time.Hour
	MaxCommandArgs        = 32
	MaxCommandArgLen      = 1024
	// MaxCommandOutput caps each stored output stream (the agent caps at most this much too).
	MaxCommandOutput = 256 << 10
	// resultGrace is how long after timeout a received command may stay
	// without a result before the hub calls it timed out (device gone).
	resultGrace = 30 * time.Second
	// redeliverAfter is when a sent-but-not-received command is pushed again.
	redeliverAfter = 30 * time.Second
)

// CommandSender is the part of a live device session that carries commands.
type CommandSender interface {
	// SendCommand enqueues cmd for the device; it fails if the session is
	// closing or ctx ends first.
	SendCommand(ctx context.Context, cmd *protocol.Command) error
}

// CommandService is the command path of the hub: it persists commands,
// delivers them to online devices (and to offline ones when they connect),
// records their results and wakes whoever waits for them.
type CommandService struct {
	store    CommandStore
	registry *Registry
	log      *slog.Logger
	now      func() time.Time
	metrics  *CommandMetrics

	mu       sync.Mutex
	watchers map[string][]chan struct{}

	workOnce sync.Once
	queue    chan delivery

	// retry holds the devices whose queued commands the next sweep pushes
	// again: a push or connect-time delivery of theirs was dropped or
	// failed (see retryLater). The sweep reads no other queued commands.
	retryMu sync.Mutex
	retry   map[string]struct{}

	stopping     chan struct{} // closed by Shutdown: long polls return
	stoppingOnce sync.Once
}

// Shutdown makes pending and future Waits return at once (hub shutdown:
// a long poll must not hold the HTTP server open).
func (s *CommandService) Shutdown() {
	s.stoppingOnce.Do(func() { close(s.stopping) })
}

// NewCommandService returns a service; call Run to start its sweeps.
func NewCommandService(store CommandStore, reg *Registry, m *CommandMetrics, log *slog.Logger) *CommandService {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &CommandService{store: store, registry: reg, log: log, now: time.Now, metrics: m,
		watchers: map[string][]chan struct{}{}, retry: map[string]struct{}{}, stopping: make(chan struct{})}
}

// SetClock replaces the clock (tests); call it before Run.
func (s *CommandService) SetClock(now func() time.Time) { s.now = now }

// Send creates a command for one device and delivers it if it is online.
func (s *CommandService) Send(ctx context.Context, req SendRequest) (Command, error) {
	if req.DeviceID == "" {
		return Command{}, fmt.Errorf("%w: device_id required", ErrInvalidInput)
	}
	cmds, err := s.create(ctx, req, "", []string{req.DeviceID})
	if err != nil {
		return Command{}, err
	}
	s.push(cmds[0])
	return cmds[0], nil
}

// SendBulk creates one command per device matching req.Selector.
func (s *CommandService) SendBulk(ctx context.Context, req SendRequest) (BulkStatus, error) {
	devs, err := s.store.DevicesMatching(ctx, req.Selector)
	if err != nil {
		return BulkStatus{}, err
	}
	if len(devs) == 0 {
		return BulkStatus{}, fmt.Errorf("%w: no device matches the selector", ErrNotFound)
	}
	ids := make([]string, len(devs))
	for i, d := range devs {
		ids[i] = d.ID
	}
	bulkID := newCommandID("b")
	cmds, err := s.create(ctx, req, bulkID, ids)
	if err != nil {
		return BulkStatus{}, err
	}
	for _, c := range cmds {
		s.push(c)
	}
	return summarize(bulkID, cmds), nil
}

func (s *CommandService) create(ctx context.Context, req SendRequest, bulkID string, devices []string) ([]Command, error) {
	if err := validateRequest(&req); err != nil {
		return nil, err
	}
	now := s.now().UTC()
	cmds := make([]Command, len(devices))
	for i, dev := range devices {
		cmds[i] = Command{
			ID: newCommandID("c"), BulkID: bulkID, DeviceID: dev, Name: req.Name, Args: req.Args,
			SentBy: req.SentBy, State: StateQueued, CreatedAt: now, ExpiresAt: now.Add(req.TTL),
			TimeoutMs: req.Timeout.Milliseconds(), Version: 1,
		}
		// Stored as sent straight away for online devices: one write less
		// per command. If the push fails the sweep sends it again.
		if s.registry.Online(dev) {
			cmds[i].State, cmds[i].SentAt = StateSent, &now
		}
	}
	if err := s.store.CreateCommands(ctx, cmds); err != nil {
		return nil, fmt.Errorf("create commands: %w", err)
	}
	s.metrics.Created.Add(float64(len(cmds)))
	return cmds, nil
}

func validateRequest(req *SendRequest) error {
	if err := protocol.ValidName(req.Name, 128); err != nil {
		return fmt.Errorf("%w: command name: %v", ErrInvalidInput, err)
	}
	if len(req.Args) > MaxCommandArgs {
		return fmt.Errorf("%w: %d args > %d", ErrInvalidInput, len(req.Args), MaxCommandArgs)
	}
	for k, v := range req.Args {
		if err := protocol.ValidName(k, 64); err != nil {
			return fmt.Errorf("%w: arg name: %v", ErrInvalidInput, err)
		}
		if len(v) > MaxCommandArgLen {
			return fmt.Errorf("%w: arg %s: %d bytes > %d", ErrInvalidInput, k, len(v), MaxCommandArgLen)
		}
	}
	switch {
	case req.TTL == 0:
		req.TTL = DefaultCommandTTL
	case req.TTL < time.Second || req.TTL > MaxCommandTTL:
		return fmt.Errorf("%w: ttl must be 1s..%s", ErrInvalidInput, MaxCommandTTL)
	}
	switch {
	case req.Timeout == 0:
		req.Timeout = DefaultCommandTimeout
	case req.Timeout < time.Second || req.Timeout > MaxCommandTimeout:
		return fmt.Errorf("%w: timeout must be 1s..%s", ErrInvalidInput, MaxCommandTimeout)
	}
	return nil
}

// Get returns a command.
func (s *CommandService) Get(ctx context.Context, id string) (Command, error) {
	return s.store.GetCommand(ctx, id)
}

// List returns commands, newest first.
func (s *CommandService) List(ctx context.Context, f CommandFilter) ([]Command, error) {
	return s.store.ListCommands(ctx, f)
}

// Bulk returns the status of a bulk send.
func (s *CommandService) Bulk(ctx context.Context, bulkID string) (BulkStatus, error) {
	cmds, err := s.store.ListCommands(ctx, CommandFilter{BulkID: bulkID, Limit: 100_000})
	if err != nil {
		return BulkStatus{}, err
	}
	if len(cmds) == 0 {
		return BulkStatus{}, fmt.Errorf("%w: bulk %s", ErrNotFound, bulkID)
	}
	return summarize(bulkID, cmds), nil
}

func summarize(bulkID string, cmds []Command) BulkStatus {
	st := BulkStatus{BulkID: bulkID, Total: len(cmds), ByState: map[CommandState]int{}, Done: true, Commands: cmds}
	for _, c := range cmds {
		st.ByState[c.State]++
		if !c.State.Terminal() {
			st.Done = false
		}
	}
	return st
}

// Cancel cancels a command that has not been sent yet.
func (s *CommandService) Cancel(ctx context.Context, id, by string) (Command, error) {
	c, err := s.update(ctx, id, func(c *Command) error {
		if c.State != StateQueued {
			return fmt.Errorf("%w: command %s is %s; only queued commands can be canceled", ErrConflict, id, c.State)
		}
		c.State, c.Error = StateCanceled, "canceled by "+by
		c.FinishedAt = s.nowPtr()
		return nil
	})
	return c, err
}

// Wait returns the command as soon as its Version is above afterVersion
// or it is terminal, blocking until then or until ctx ends (then it returns
// the current command and ctx's error).
func (s *CommandService) Wait(ctx context.Context, id string, afterVersion int64) (Command, error) {
	for {
		ch := s.watch(id)
		c, err := s.store.GetCommand(ctx, id)
		if err != nil {
			s.unwatch(id, ch)
			return c, err
		}
		if c.Version > afterVersion || c.State.Terminal() {
			s.unwatch(id, ch)
			return c, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			s.unwatch(id, ch)
			return c, ctx.Err()
		case <-s.stopping:
			s.unwatch(id, ch)
			return c, ErrShuttingDown
		}
	}
}

func (s *CommandService) watch(id string) chan struct{} {
	ch := make(chan struct{})
	s.mu.Lock()
	s.watchers[id] = append(s.watchers[id], ch)
	s.mu.Unlock()
	return ch
}

func (s *CommandService) unwatch(id string, ch chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	list := s.watchers[id]
	for i, c := range list {
		if c == ch {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(s.watchers, id)
	} else {
		s.watchers[id] = list
	}
}

// notify wakes every waiter of id.
func (s *CommandService) notify(id string) {
	s.mu.Lock()
	list := s.watchers[id]
	delete(s.watchers, id)
	s.mu.Unlock()
	for _, ch := range list {
		close(ch)
	}
}

// update applies fn through the store and wakes waiters on success.
func (s *CommandService) update(ctx context.Context, id string, fn func(*Command) error) (Command, error) {
	var before CommandState
	c, err := s.store.UpdateCommand(ctx, id, func(c *Command) error {
		before = c.State
		return fn(c)
	})
	if err != nil {
		return c, err
	}
	if c.State != before && c.State.Terminal() {
		s.metrics.Finished.WithLabelValues(string(c.State)).Inc()
	}
	s.notify(id)
	return c, nil
}

func (s *CommandService) nowPtr() *time.Time {
	t := s.now().UTC()
	return &t
}

func newCommandID(prefix string) string {
	var r [5]byte
	_, _ = rand.Read(r[:])
	// Time first so ids sort by creation.
	return fmt.Sprintf("%s%012x%s", prefix, time.Now().UnixMilli(), hex.EncodeToString(r[:]))
}
