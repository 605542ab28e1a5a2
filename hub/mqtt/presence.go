package mqtt

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/hub/store"
	"github.com/fleetwire/fleetwire/protocol"
)

// session is an MQTT device that is online. It is the device's session
// in the hub's registry (presence, commands), like an agent's WebSocket.
type session struct {
	b   *Bridge
	dev string
	// declared: the device said "online" on its status topic, so it stays
	// online until it says otherwise (or its last will does). Otherwise
	// it is online while it keeps sending, up to PresenceTimeout.
	declared bool
	last     time.Time // last message
	touched  time.Time // last-seen last written to the registry
}

// Close implements hub.Session: the registry closes a session when its
// device is revoked or deleted, or when an agent session replaces it.
func (s *session) Close(code protocol.CloseCode, reason string) {
	b := s.b
	b.devices.forget(s.dev) // a revoked device is refused from its next message on
	b.mu.Lock()
	mine := b.sessions[s.dev] == s
	if mine {
		delete(b.sessions, s.dev)
		b.cfg.Registry.Unregister(s.dev, s)
	}
	b.mu.Unlock()
	if mine {
		b.log.Info("mqtt device session closed", "device", s.dev, "code", code, "reason", reason)
	}
}

// seen marks d online after a message from it; declared is true for an
// "online" status. A device's first appearance makes it a session: it is
// registered, touched, told it uses MQTT, and gets its pending commands.
func (b *Bridge) seen(d hub.Device, declared bool, now time.Time) {
	b.mu.Lock()
	if t, ok := b.revoked[d.ID]; ok && now.Sub(t) < deviceCacheTTL {
		// Revoked or deleted after this message's lookup: no session.
		b.mu.Unlock()
		return
	}
	s := b.sessions[d.ID]
	isNew := s == nil
	if isNew {
		s = &session{b: b, dev: d.ID}
		b.sessions[d.ID] = s
	}
	s.declared = s.declared || declared
	s.last = now
	touch := now.Sub(s.touched) >= touchInterval
	if touch {
		s.touched = now
	}
	if isNew {
		// Under b.mu, so an "offline" handled by another worker cannot
		// unregister before this registers. The registry never calls back
		// into one of our sessions here: it holds none we do not track.
		b.cfg.Registry.Register(d.ID, s)
	}
	b.mu.Unlock()
	if isNew {
		if d.Transport != store.TransportMQTT {
			b.setTransport(d.ID)
		}
		b.cfg.Commands.DeviceConnected(d.ID)
	}
	if touch {
		b.touch(d.ID, now)
	}
}

// forgetDevice hears the registry's Disconnect (revocation, deletion):
// the device's cached record and rate standing go, and for a while no
// session may start from a message whose lookup came before.
func (b *Bridge) forgetDevice(dev string) {
	b.devices.forget(dev)
	b.rates.forget(dev)
	now := b.cfg.Clock()
	b.mu.Lock()
	for id, t := range b.revoked {
		if now.Sub(t) >= deviceCacheTTL {
			delete(b.revoked, id)
		}
	}
	b.revoked[dev] = now
	b.mu.Unlock()
}

// offline ends dev's session and reports whether it had one.
func (b *Bridge) offline(dev string, now time.Time) bool {
	b.mu.Lock()
	s := b.sessions[dev]
	if s != nil {
		delete(b.sessions, dev)
		b.cfg.Registry.Unregister(dev, s)
	}
	b.mu.Unlock()
	if s != nil {
		b.touch(dev, now)
	}
	return s != nil
}

// allOffline ends every session: without the broker the bridge cannot
// reach its devices.
func (b *Bridge) allOffline() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for dev, s := range b.sessions {
		b.cfg.Registry.Unregister(dev, s)
	}
	clear(b.sessions)
}

func (b *Bridge) setTransport(dev string) {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	if err := b.cfg.Store.SetDeviceTransport(ctx, dev, store.TransportMQTT); err != nil {
		b.log.Warn("record mqtt transport", "device", dev, "err", err)
	}
	b.devices.forget(dev)
}

func (b *Bridge) touch(dev string, now time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.cfg.Store.TouchDevice(ctx, dev, now, ""); err != nil && !errors.Is(err, hub.ErrNotFound) {
		b.log.Warn("update last seen", "device", dev, "err", err)
	}
}

// presenceLoop ends the sessions of devices that never declared themselves
// online and went quiet for PresenceTimeout.
func (b *Bridge) presenceLoop() {
	defer b.wg.Done()
	t := time.NewTicker(b.cfg.PresenceTimeout / presenceTickRatio)
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-t.C:
			b.expire(b.cfg.Clock())
		}
	}
}

func (b *Bridge) expire(now time.Time) {
	var quiet []string
	b.mu.Lock()
	for dev, s := range b.sessions {
		// Checked and ended under one lock: a message handled in between
		// would otherwise be overridden.
		if !s.declared && now.Sub(s.last) >= b.cfg.PresenceTimeout {
			delete(b.sessions, dev)
			b.cfg.Registry.Unregister(dev, s)
			quiet = append(quiet, dev)
		}
	}
	b.mu.Unlock()
	for _, dev := range quiet {
		b.touch(dev, now)
	}
}

// status handles a message on a status topic: "online" or "offline" (any
// case, surrounding space ignored; also "1"/"0", "true"/"false"). A device's
// last will should publish "offline" there, retained.
func (b *Bridge) status(m paho.Message, dev string) {
	online, err := parseStatus(m.Payload())
	if err != nil {
		b.refuse(m, reasonBadStatus, dev, err)
		return
	}
	if !online && b.offline(dev, b.cfg.Clock()) {
		// No lookup: a device revoked meanwhile must still go offline.
		b.release(m, true)
		return
	}
	d, ok := b.deviceFor(m, dev, online)
	if !ok {
		return
	}
	if online {
		b.seen(d, true, b.cfg.Clock())
	}
	b.release(m, true)
}

// maxStatusBytes bounds a status payload; "offline" needs 7.
const maxStatusBytes = 64

func parseStatus(p []byte) (bool, error) {
	if len(p) > maxStatusBytes {
		return false, fmt.Errorf("status payload of %d bytes (at most %d)", len(p), maxStatusBytes)
	}
	switch strings.ToLower(strings.TrimSpace(string(p))) {
	case "online", "1", "true":
		return true, nil
	case "offline", "0", "false":
		return false, nil
	}
	return false, fmt.Errorf("status %q: want online or offline", p)
}
