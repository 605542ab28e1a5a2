// Package devicews is the device endpoint of the hub: it authenticates the
// WebSocket upgrade, runs one session per device connection and adapts the
// wire protocol to the hub core (registry, ingester).
package devicews

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/protocol"
)

// Config wires the endpoint to the core. Zero durations and sizes take the
// defaults documented on each field.
type Config struct {
	Store       hub.DeviceStore
	DeadLetters hub.DeadLetterStore // invalid batches are recorded here, then acked
	Registry    *hub.Registry
	Ingester    *hub.Ingester
	Metrics     *hub.Metrics
	Logger      *slog.Logger
	// Commands, if set, gets each device's command results and learns when
	// a device connects (to deliver its pending commands).
	Commands Commands
	// Live, if set, gets every validated batch for the dashboard, beside
	// ingest (hub/live.Broker). Publish must not block.
	Live LivePublisher

	Limits           protocol.Limits
	MaxMessageBytes  int           // default protocol.DefaultMaxMessageBytes
	MaxInflight      int           // unacked batches per session, default 64
	PingInterval     time.Duration // default 20s; a session silent for 2.5 intervals is closed
	HelloTimeout     time.Duration // default 10s
	HandshakeTimeout time.Duration // websocket upgrade, default 10s
	WriteTimeout     time.Duration // per message, default 10s
	TouchInterval    time.Duration // how often last-seen is persisted while online, default 60s
	// ReconnectRate, if > 0, is how many devices a second should come back
	// after a graceful shutdown (the hub's accept rate): the going-away
	// closes carry retry-after hints spread over live/ReconnectRate
	// seconds, so a restart is not followed by a reconnect storm.
	ReconnectRate float64

	// MaxConnsPerAddr caps the concurrent connections from one source
	// address (IPv6: one /64), checked before the token; past it: HTTP
	// 429 with Retry-After. 0: no cap. See hub.AddrLimit for the NAT
	// trade-off.
	MaxConnsPerAddr int
	// Rate is each device's message and point budget: throttled past it,
	// closed with ClosePolicy when throttled without a break for
	// Rate.CloseAfter. Zero rates: no limit.
	Rate hub.RateLimit
	// FlapMax: a device connecting more often than this in a minute is
	// refused (HTTP 429, Retry-After) for FlapHold (default 5m). 0: off.
	FlapMax  int
	FlapHold time.Duration

	Now   func() time.Time                           // default time.Now (tests)
	Sleep func(ctx context.Context, d time.Duration) // default: a timer ended early by ctx (tests)
}

func (c *Config) setDefaults() {
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = protocol.DefaultMaxMessageBytes
	}
	if c.MaxInflight <= 0 {
		c.MaxInflight = 64
	}
	if c.PingInterval <= 0 {
		c.PingInterval = 20 * time.Second
	}
	if c.HelloTimeout <= 0 {
		c.HelloTimeout = 10 * time.Second
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.TouchInterval <= 0 {
		c.TouchInterval = time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.FlapHold <= 0 {
		c.FlapHold = 5 * time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Sleep == nil {
		c.Sleep = sleep
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// LivePublisher fans validated telemetry out to live dashboards.
type LivePublisher interface {
	Publish(deviceID string, b *protocol.Batch)
}

// Commands is the hub's command service as device sessions see it.
type Commands interface {
	DeviceConnected(deviceID string)
	HandleResult(ctx context.Context, deviceID string, r *protocol.CommandResult) error
}

// readBufferSize is gorilla's per-connection read buffer.
const readBufferSize = 256

// Handler serves the device endpoint (GET /v1/device).
type Handler struct {
	cfg      Config
	upgrader websocket.Upgrader

	gate  hub.Gate
	addrs *hub.AddrLimit // nil: no per-address cap
	flaps *hub.FlapLimit // nil: no flap hold-off
	mu    sync.Mutex
	live  map[*session]struct{} // every upgraded connection, hello or not
	// dropped remembers the spool drop count each device last reported, so
	// the metric counts increases once per hub lifetime.
	dropped map[string]uint64
}

// New returns the endpoint handler.
func New(cfg Config) *Handler {
	cfg.setDefaults()
	h := &Handler{
		cfg: cfg, dropped: make(map[string]uint64), live: make(map[*session]struct{}),
		addrs: hub.NewAddrLimit(cfg.MaxConnsPerAddr), flaps: hub.NewFlapLimit(cfg.FlapMax, cfg.FlapHold),
	}
	h.upgrader = websocket.Upgrader{
		HandshakeTimeout: cfg.HandshakeTimeout,
		// Every connection keeps its read buffer for life, idle or not. Large
		// payloads bypass it (bufio reads straight into the caller's slice),
		// so it only has to hold frame headers and control frames (RFC 6455
		// §5.5: 125 bytes of payload).
		ReadBufferSize:  readBufferSize,
		WriteBufferSize: 1024,
		// A shared pool keeps idle connections from each pinning a write buffer.
		WriteBufferPool: &sync.Pool{},
		Subprotocols:    []string{protocol.Subprotocol},
		// Agents offer permessage-deflate (batches shrink to about a third);
		// inflate state is pooled by gorilla, so an idle connection holds none.
		EnableCompression: true,
		// Devices are not browsers: a request carrying an Origin is a page
		// trying to reach the device endpoint (cross-site WebSocket hijacking).
		CheckOrigin: func(r *http.Request) bool { return r.Header.Get("Origin") == "" },
	}
	return h
}

// addrRetryAfter is the Retry-After for a source address at its
// connection cap: long enough that a NAT'd fleet over the cap does not
// hammer the hub, short enough to take a freed slot soon.
const addrRetryAfter = 30 * time.Second

// ServeHTTP authenticates before upgrading: a bad token gets 401 and no
// WebSocket. The per-address cap comes first, so an address at its cap
// costs no token lookup.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !websocket.IsWebSocketUpgrade(r) {
		http.Error(w, "websocket upgrade required", http.StatusUpgradeRequired)
		return
	}
	release, ok := h.addrs.Acquire(r.RemoteAddr)
	if !ok {
		h.tooMany(w, "conns_per_addr", addrRetryAfter, "too many connections from this address")
		return
	}
	if !h.upgrade(w, r, release) {
		release()
	}
}

// upgrade authenticates the request and, unless the device is held off,
// upgrades it and starts its session, which then owns release. It
// returns false when it answered the request without a session.
func (h *Handler) upgrade(w http.ResponseWriter, r *http.Request, release func()) bool {
	token, ok := bearer(r)
	if !ok {
		h.refuse(w, "missing_token", "missing bearer token")
		return false
	}
	dev, err := h.cfg.Store.AuthenticateDevice(r.Context(), token)
	switch {
	case errors.Is(err, hub.ErrRevoked):
		h.refuse(w, "revoked", "device revoked")
		return false
	case errors.Is(err, hub.ErrUnauthorized):
		h.refuse(w, "bad_token", "invalid token")
		return false
	case err != nil:
		h.cfg.Logger.Error("device auth", "err", err)
		http.Error(w, "registry unavailable", http.StatusServiceUnavailable)
		return false
	}
	if !offers(r, protocol.Subprotocol) {
		h.cfg.Metrics.AuthFailures.WithLabelValues("subprotocol").Inc()
		http.Error(w, "subprotocol "+protocol.Subprotocol+" required", http.StatusBadRequest)
		return false
	}
	if ok, wait, held := h.flaps.Connect(dev.ID, h.cfg.Now()); !ok {
		if held {
			h.cfg.Metrics.Limited.WithLabelValues("flap", "held").Inc()
			h.cfg.Logger.Warn("device reconnecting too often; held off", "device", dev.ID, "remote", r.RemoteAddr, "for", wait)
		}
		h.tooMany(w, "flap", wait, "device reconnects too often; held off")
		return false
	}
	if !h.gate.Enter() {
		http.Error(w, "hub shutting down", http.StatusServiceUnavailable)
		return false
	}
	conn, err := h.upgrader.Upgrade(w, r, nil)
	if err != nil {
		h.gate.Leave()
		return false // the upgrader has answered the request
	}
	conn.EnableWriteCompression(false) // acks and commands are tiny: not worth deflating
	// The session gets a goroutine of its own and this one returns: net/http
	// would otherwise keep, for the whole life of the connection, its 4 KiB
	// read and write buffers, the request and this goroutine's stack (grown
	// by the TLS handshake and the SQLite lookup), about 20 KiB per idle
	// device.
	go h.serve(conn, dev, release)
	return true
}

// tooMany refuses a request over an abuse limit with 429 and a
// Retry-After (whole seconds, rounded up) that agents honour.
func (h *Handler) tooMany(w http.ResponseWriter, limit string, wait time.Duration, msg string) {
	h.cfg.Metrics.Limited.WithLabelValues(limit, "refused").Inc()
	secs := max(1, int64((wait+time.Second-1)/time.Second))
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	w.Header().Set("Connection", "close")
	http.Error(w, msg+"; retry after the Retry-After seconds", http.StatusTooManyRequests)
}

// serve runs one upgraded connection to its end, then gives back its
// per-address slot. The caller has entered the gate.
func (h *Handler) serve(conn *websocket.Conn, dev hub.Device, release func()) {
	defer release()
	defer h.gate.Leave()
	defer conn.Close()
	s := newSession(h, conn, dev)
	if !h.track(s) {
		s.Close(protocol.CloseGoingAway, "hub shutting down")
		return
	}
	defer h.untrack(s)
	s.run()
}

// track adds s to the live set unless the handler is closing.
func (h *Handler) track(s *session) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	// Checked under mu: Close snapshots the live set under mu after closing
	// the gate, so every session is either refused here or in the snapshot.
	if h.gate.Closed() {
		return false
	}
	h.live[s] = struct{}{}
	return true
}

func (h *Handler) untrack(s *session) {
	h.mu.Lock()
	delete(h.live, s)
	h.mu.Unlock()
}

func (h *Handler) refuse(w http.ResponseWriter, reason, msg string) {
	h.cfg.Metrics.AuthFailures.WithLabelValues(reason).Inc()
	w.Header().Set("WWW-Authenticate", `Bearer realm="fleetwire"`)
	http.Error(w, msg, http.StatusUnauthorized)
}

// Close refuses new sessions, closes the live ones (also those still
// before their hello) with CloseGoingAway and waits until their goroutines
// have ended or ctx is done.
func (h *Handler) Close(ctx context.Context) error {
	h.gate.Close()
	h.mu.Lock()
	live := make([]*session, 0, len(h.live))
	for s := range h.live {
		live = append(live, s)
	}
	h.mu.Unlock()
	for i, s := range live {
		s.Close(protocol.CloseGoingAway, goingAwayReason(i, len(live), h.cfg.ReconnectRate))
	}
	return h.gate.Wait(ctx)
}

// goingAwayReason is the close reason for the i-th of n sessions at
// shutdown: with a reconnect rate, a retry-after hint of 1 s plus the
// device's slot in n/rate seconds (agents add up to 1 s of jitter).
func goingAwayReason(i, n int, rate float64) string {
	const reason = "hub shutting down"
	if rate <= 0 {
		return reason
	}
	slot := time.Duration(float64(i) / rate * float64(time.Second))
	return protocol.FormatRetryAfter(reason, time.Second+slot)
}

// reportDropped turns a device's cumulative spool drop count into metric
// increments.
func (h *Handler) reportDropped(deviceID string, total uint64) {
	h.mu.Lock()
	last, seen := h.dropped[deviceID]
	h.dropped[deviceID] = total
	h.mu.Unlock()
	switch {
	case !seen && total > 0:
		h.cfg.Logger.Warn("device spool has dropped batches", "device", deviceID, "dropped_total", total)
	case seen && total > last:
		h.cfg.Metrics.SpoolDropped.Add(float64(total - last))
		h.cfg.Logger.Warn("device spool dropped batches", "device", deviceID, "dropped", total-last, "dropped_total", total)
	}
}

func bearer(r *http.Request) (string, bool) {
	v := r.Header.Get("Authorization")
	const p = "Bearer "
	if len(v) <= len(p) || !strings.EqualFold(v[:len(p)], p) {
		return "", false
	}
	return strings.TrimSpace(v[len(p):]), true
}

func offers(r *http.Request, proto string) bool {
	for _, p := range websocket.Subprotocols(r) {
		if p == proto {
			return true
		}
	}
	return false
}

func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
