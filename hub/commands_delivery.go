package hub

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetwire/fleetwire/protocol"
)

// CommandMetrics are the command path's instruments.
type CommandMetrics struct {
	Created   prometheus.Counter
	Delivered prometheus.Counter
	Finished  *prometheus.CounterVec // by final state
}

// NewCommandMetrics creates and registers (reg may be nil) the instruments.
func NewCommandMetrics(reg prometheus.Registerer) *CommandMetrics {
	m := &CommandMetrics{
		Created:   prometheus.NewCounter(prometheus.CounterOpts{Name: "fleethub_commands_created_total", Help: "Commands created."}),
		Delivered: prometheus.NewCounter(prometheus.CounterOpts{Name: "fleethub_commands_delivered_total", Help: "Command messages pushed to device sessions (redeliveries included)."}),
		Finished:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleethub_commands_finished_total", Help: "Commands that reached a final state, by state."}, []string{"state"}),
	}
	if reg != nil {
		reg.MustRegister(m.Created, m.Delivered, m.Finished)
	}
	return m
}

// delivery is a unit of work for the delivery workers: one command, or
// every pending command of a device that just connected.
type delivery struct {
	cmd    *Command
	device string
	marked bool // cmd was stored as sent already: push it as it is
}

// errNoChange aborts an update that would change nothing (duplicates).
var errNoChange = errors.New("no change")

// Run delivers commands and sweeps for expired and timed-out ones until ctx
// ends.
func (s *CommandService) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case d := <-s.work():
					s.handle(ctx, d)
				}
			}
		}()
	}
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-t.C:
			s.sweep(ctx)
		}
	}
}

func (s *CommandService) work() chan delivery {
	s.workOnce.Do(func() { s.queue = make(chan delivery, 16384) })
	return s.queue
}

// enqueue hands d to the workers without blocking; if they are swamped the
// sweep delivers it later (the command stays queued in the store).
func (s *CommandService) enqueue(d delivery) {
	select {
	case s.work() <- d:
	default:
		if d.cmd != nil {
			s.retryLater(d.cmd.DeviceID)
		} else {
			s.retryLater(d.device)
		}
	}
}

// retryLater makes the next sweep push the queued commands of devices
// again, if they are online then. Every path that may leave a queued
// command of an online device behind calls it: the sweep finds no other.
func (s *CommandService) retryLater(devices ...string) {
	s.retryMu.Lock()
	for _, d := range devices {
		s.retry[d] = struct{}{}
	}
	s.retryMu.Unlock()
}

// takeRetries empties the retry set and returns its online devices. An
// offline one is dropped: its queued commands are pushed when it connects
// (DeviceConnected comes after the session is registered, so it reads
// them after this saw the device offline), and if that fails too it is
// back in the set.
func (s *CommandService) takeRetries() []string {
	s.retryMu.Lock()
	set := s.retry
	s.retry = map[string]struct{}{}
	s.retryMu.Unlock()
	var online []string
	for d := range set {
		if s.registry.Online(d) {
			online = append(online, d)
		}
	}
	return online
}

// push delivers a just-created command: one stored as sent is pushed as is,
// a queued one (device offline) only if its device came online meanwhile.
func (s *CommandService) push(c Command) {
	s.enqueue(delivery{cmd: &c, marked: c.State == StateSent})
}

// DeviceConnected delivers every pending command of a device whose session
// just started (the agent dedups by id and re-reports finished ones).
func (s *CommandService) DeviceConnected(deviceID string) { s.enqueue(delivery{device: deviceID}) }

func (s *CommandService) handle(ctx context.Context, d delivery) {
	if d.cmd != nil && d.marked {
		s.send(ctx, *d.cmd)
		return
	}
	if d.cmd != nil {
		s.deliver(ctx, *d.cmd)
		return
	}
	cmds, err := s.store.PendingCommands(ctx, d.device)
	if err != nil {
		s.log.Error("pending commands", "device", d.device, "err", err)
		s.retryLater(d.device)
		return
	}
	for _, c := range cmds {
		s.deliver(ctx, c)
	}
}

// deliver pushes c to its device's session if it is online and c is still
// deliverable. It marks c sent before pushing, so a cancel cannot race a
// command onto the wire.
func (s *CommandService) deliver(ctx context.Context, c Command) {
	sess := s.registry.Sender(c.DeviceID)
	if sess == nil {
		return // delivered when the device connects
	}
	now := s.now()
	_, err := s.update(ctx, c.ID, func(c *Command) error {
		switch {
		case c.State == StateQueued && now.Before(c.ExpiresAt):
			c.State, c.SentAt = StateSent, s.nowPtr()
			return nil
		case c.State == StateSent && now.Before(c.ExpiresAt), c.State == StateReceived:
			// A received command is pushed again only to make the agent
			// repeat a result that may have been lost; it never runs twice.
			c.SentAt = s.nowPtr()
			return nil
		}
		return errNoChange // expired ones are left to the sweep
	})
	if err != nil {
		if !errors.Is(err, errNoChange) {
			s.log.Error("mark command sent", "id", c.ID, "err", err)
			s.retryLater(c.DeviceID)
		}
		return
	}
	s.send(ctx, c)
}

// send pushes c to its device's live session, if any.
func (s *CommandService) send(ctx context.Context, c Command) {
	sess := s.registry.Sender(c.DeviceID)
	if sess == nil {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	msg := &protocol.Command{ID: c.ID, Name: c.Name, Args: c.Args, TimeoutMs: uint64(c.TimeoutMs)}
	if err := sess.SendCommand(sctx, msg); err != nil {
		s.log.Info("command not pushed; redelivered later", "id", c.ID, "device", c.DeviceID, "err", err)
		return
	}
	s.metrics.Delivered.Inc()
}

// HandleResult records what deviceID reports about one of its commands.
func (s *CommandService) HandleResult(ctx context.Context, deviceID string, r *protocol.CommandResult) error {
	now := s.nowPtr()
	_, err := s.update(ctx, r.ID, func(c *Command) error {
		if c.DeviceID != deviceID {
			return fmt.Errorf("%w: command %s belongs to another device", ErrInvalidInput, r.ID)
		}
		return applyResult(c, r, now)
	})
	if errors.Is(err, errNoChange) {
		return nil
	}
	return err
}

func applyResult(c *Command, r *protocol.CommandResult, now *time.Time) error {
	st := CommandState(r.State)
	switch {
	case r.State == "received":
		if c.State.Terminal() && c.State != StateExpired || c.State == StateReceived {
			return errNoChange
		}
		c.State, c.ReceivedAt = StateReceived, now
	case r.State == "output":
		if c.State.Terminal() && c.State != StateExpired {
			return errNoChange
		}
		if c.ReceivedAt == nil {
			c.ReceivedAt = now
		}
		before := *c
		c.State = StateReceived
		c.Stdout, c.Truncated = appendCapped(c.Stdout, r.Stdout, c.Truncated)
		c.Stderr, c.Truncated = appendCapped(c.Stderr, r.Stderr, c.Truncated)
		if before.State == StateReceived && len(c.Stdout) == len(before.Stdout) &&
			len(c.Stderr) == len(before.Stderr) && c.Truncated == before.Truncated {
			return errNoChange // past the cap: no write, no wake-up
		}
	case st == StateSucceeded || st == StateFailed || st == StateTimedOut || st == StateRejected:
		// An expired command the device ran after all gets its real
		// outcome; any other final state is a duplicate report.
		if c.State.Terminal() && c.State != StateExpired {
			return errNoChange
		}
		c.State, c.Error = st, r.Error
		// An exit code exists only if the program ran to its end: not for
		// rejected or timed-out commands, nor for one that failed to start.
		if st == StateSucceeded || st == StateFailed && (r.ExitCode != 0 || r.Error == "") {
			exit := r.ExitCode
			c.ExitCode = &exit
		}
		c.Stdout, c.Truncated = appendCapped("", r.Stdout, r.Truncated)
		c.Stderr, c.Truncated = appendCapped("", r.Stderr, c.Truncated)
		c.DurationMs, c.FinishedAt = int64(r.DurationMs), now
		if c.ReceivedAt == nil {
			c.ReceivedAt = now
		}
	default:
		return fmt.Errorf("%w: unknown result state %q", ErrInvalidInput, r.State)
	}
	return nil
}

// appendCapped appends b to s up to MaxCommandOutput bytes.
func appendCapped(s string, b []byte, truncated bool) (string, bool) {
	room := MaxCommandOutput - len(s)
	if len(b) > room {
		return s + string(b[:max(room, 0)]), true
	}
	return s + string(b), truncated
}

// sweepLimit caps the commands one sweep acts on; the next takes the rest.
const sweepLimit = 50_000

// sweep expires commands whose TTL passed before the device received them,
// times out received ones whose device never answered, and (re)delivers
// long-unacknowledged commands, and queued ones whose delivery was dropped,
// to online devices. It reads only the commands due for one of these: its
// cost does not grow with the commands that merely wait.
func (s *CommandService) sweep(ctx context.Context) {
	now := s.now()
	retry := s.takeRetries()
	due, err := s.store.DueCommands(ctx, DueQuery{Now: now, ResultGrace: resultGrace,
		RedeliverAfter: redeliverAfter, QueuedOf: retry, Limit: sweepLimit})
	if err != nil || len(due) == sweepLimit {
		s.retryLater(retry...) // some of their queued commands may be unread
	}
	if err != nil {
		s.log.Error("sweep commands", "err", err)
		return
	}
	for _, c := range due {
		switch {
		case c.State != StateReceived && !now.Before(c.ExpiresAt):
			s.finish(ctx, c.ID, StateExpired, "not received by the device before its TTL", func(c *Command) bool { return c.State != StateReceived })
		case c.State == StateReceived && c.ReceivedAt != nil &&
			!now.Before(c.ReceivedAt.Add(time.Duration(c.TimeoutMs)*time.Millisecond+resultGrace)):
			s.finish(ctx, c.ID, StateTimedOut, "no result from the device within the timeout", func(c *Command) bool { return c.State == StateReceived })
		case c.State == StateQueued, c.SentAt != nil && now.Sub(*c.SentAt) > redeliverAfter:
			// Queued, or sent/received and unanswered for a while: push again
			// (the agent dedups by id and repeats a stored final result).
			if s.registry.Online(c.DeviceID) {
				s.enqueue(delivery{cmd: &c})
			}
		}
	}
}

// finish moves a command to a final state if cond still holds.
func (s *CommandService) finish(ctx context.Context, id string, st CommandState, why string, cond func(*Command) bool) {
	_, err := s.update(ctx, id, func(c *Command) error {
		if c.State.Terminal() || !cond(c) {
			return errNoChange
		}
		c.State, c.Error, c.FinishedAt = st, why, s.nowPtr()
		return nil
	})
	if err != nil && !errors.Is(err, errNoChange) {
		s.log.Error("finish command", "id", id, "state", st, "err", err)
	}
}
