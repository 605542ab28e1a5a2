package hub

import (
	"sync"

	"github.com/fleetwire/fleetwire/protocol"
)

// Session is what the registry needs of a live device connection.
type Session interface {
	// Close ends the session with a reason the device can act on. It is
	// idempotent and does not block on the network for long.
	Close(code protocol.CloseCode, reason string)
}

// Registry tracks the one live session of each device.
type Registry struct {
	mu       sync.Mutex
	sessions map[string]Session
	metrics  *Metrics
	presence func(deviceID string, online bool) // see OnPresence
	onRevoke []func(deviceID string)            // see OnDisconnect
}

// NewRegistry returns an empty registry.
func NewRegistry(m *Metrics) *Registry {
	return &Registry{sessions: make(map[string]Session), metrics: m}
}

// OnPresence sets f to hear each device come online (its first session)
// and go offline (its session ended, not replaced). Call it before sessions
// start. f runs under the registry's lock so events stay in order; it must
// not block or call back into the registry (the live broker's DeviceState
// does neither).
func (r *Registry) OnPresence(f func(deviceID string, online bool)) {
	r.mu.Lock()
	r.presence = f
	r.mu.Unlock()
}

// Register makes s the live session of deviceID. An older session of the
// same device is closed with CloseReplaced: one live session per device.
func (r *Registry) Register(deviceID string, s Session) {
	r.mu.Lock()
	old := r.sessions[deviceID]
	r.sessions[deviceID] = s
	if old == nil && r.presence != nil {
		r.presence(deviceID, true)
	}
	r.mu.Unlock()
	if old != nil {
		old.Close(protocol.CloseReplaced, "replaced by a newer session")
	} else {
		r.metrics.Connections.Inc()
	}
}

// Unregister removes s if it is still deviceID's live session.
func (r *Registry) Unregister(deviceID string, s Session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sessions[deviceID] == s {
		delete(r.sessions, deviceID)
		r.metrics.Connections.Dec()
		if r.presence != nil {
			r.presence(deviceID, false)
		}
	}
}

// Online reports whether deviceID has a live session.
func (r *Registry) Online(deviceID string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sessions[deviceID] != nil
}

// Sender returns deviceID's live session as a command sender, or nil.
func (r *Registry) Sender(deviceID string) CommandSender {
	r.mu.Lock()
	s := r.sessions[deviceID]
	r.mu.Unlock()
	cs, _ := s.(CommandSender)
	return cs
}

// Count returns the number of live sessions.
func (r *Registry) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sessions)
}

// OnDisconnect adds f to hear every Disconnect (a device revoked or
// deleted), whether or not it has a live session: a transport that caches
// devices (the MQTT bridge) forgets them at once. Call it before sessions
// start; f runs outside the registry's lock.
func (r *Registry) OnDisconnect(f func(deviceID string)) {
	r.mu.Lock()
	r.onRevoke = append(r.onRevoke, f)
	r.mu.Unlock()
}

// RequestRotation tells deviceID's live session, if any, to rotate its
// token (close code 4009): the agent gets a new one and reconnects with it.
// asked reports whether there was a session to tell.
func (r *Registry) RequestRotation(deviceID string) (asked bool) {
	r.mu.Lock()
	s := r.sessions[deviceID]
	r.mu.Unlock()
	if s != nil {
		s.Close(protocol.CloseRotateToken, "rotate your device token")
	}
	return s != nil
}

// Disconnect closes deviceID's live session, if any, with a reason that
// tells the agent not to retry (revocation, deletion).
func (r *Registry) Disconnect(deviceID, reason string) {
	r.mu.Lock()
	s := r.sessions[deviceID]
	hooks := r.onRevoke
	r.mu.Unlock()
	for _, f := range hooks {
		f(deviceID)
	}
	if s != nil {
		s.Close(protocol.CloseRevoked, reason)
	}
}
