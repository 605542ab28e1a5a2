// Package dashws is the dashboard's live endpoint (GET /v1/live): it
// authenticates the browser and checks its Origin before the WebSocket
// upgrade, then adapts JSON client messages to a hub/live subscriber. It
// also serves a device's recent window over plain HTTP.
package dashws

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/hub/live"
	wire "github.com/fleetwire/fleetwire/protocol/live"
)

// Authenticate identifies the caller of a request (session cookie or
// bearer token). Any error means unauthenticated (401). The wiring adapts
// the API's authenticator to it, so this package needs none of its types.
type Authenticate func(r *http.Request) (name string, role hub.Role, err error)

// Config wires the endpoint. Zero durations and sizes take the defaults
// documented per field.
type Config struct {
	Broker       *live.Broker
	Authenticate Authenticate
	// PublicURL is the hub's own URL as browsers see it; its origin is
	// always allowed.
	PublicURL string
	// AllowedOrigins are further origins, exactly scheme://host[:port].
	AllowedOrigins []string
	Logger         *slog.Logger

	MaxMessageBytes  int64         // client message size, default 4 KiB (protocol/live)
	PingInterval     time.Duration // default 20s; a browser silent for 2.5 intervals is closed
	WriteTimeout     time.Duration // per message, default 10s
	HandshakeTimeout time.Duration // default 10s
	ReplyQueue       int           // pongs and errors waiting for the writer, default 8
}

func (c *Config) setDefaults() {
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = wire.MaxClientMessageBytes
	}
	if c.PingInterval <= 0 {
		c.PingInterval = 20 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.ReplyQueue <= 0 {
		c.ReplyQueue = 8
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Handler serves GET /v1/live.
type Handler struct {
	cfg      Config
	origins  originSet
	upgrader websocket.Upgrader

	// base is every session's parent context; Close cancels it.
	base     context.Context
	shutdown context.CancelCauseFunc

	gate hub.Gate
}

// errShutdown is the cause sessions see when the hub stops.
var errShutdown = errors.New("hub shutting down")

// New checks cfg and returns the handler.
func New(cfg Config) (*Handler, error) {
	cfg.setDefaults()
	if cfg.Broker == nil || cfg.Authenticate == nil {
		return nil, errors.New("dashws: Broker and Authenticate are required")
	}
	origins, err := newOriginSet(cfg.PublicURL, cfg.AllowedOrigins)
	if err != nil {
		return nil, err
	}
	base, cancel := context.WithCancelCause(context.Background())
	h := &Handler{cfg: cfg, origins: origins, base: base, shutdown: cancel}
	h.upgrader = websocket.Upgrader{
		HandshakeTimeout: cfg.HandshakeTimeout,
		ReadBufferSize:   1024,
		WriteBufferSize:  4096,
		WriteBufferPool:  &sync.Pool{},
		// ServeHTTP has checked Origin against the allowlist already.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	return h, nil
}

// ServeHTTP refuses before upgrading: a foreign or missing Origin gets
// 403, a request without a valid session or token 401, so no WebSocket is
// ever opened for them.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !websocket.IsWebSocketUpgrade(r) {
		http.Error(w, "websocket upgrade required", http.StatusUpgradeRequired)
		return
	}
	if !h.origins.allows(r.Header.Get("Origin")) {
		h.count("refused_origin")
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return
	}
	name, role, err := h.cfg.Authenticate(r)
	if err != nil {
		h.count("refused_auth")
		http.Error(w, "authentication required", http.StatusUnauthorized)
		return
	}
	if !role.Allows(hub.RoleViewer) {
		h.count("refused_role")
		http.Error(w, "role may not watch the fleet", http.StatusForbidden)
		return
	}
	if !h.gate.Enter() {
		http.Error(w, "hub shutting down", http.StatusServiceUnavailable)
		return
	}
	defer h.gate.Leave()
	ws, err := h.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered the request
	}
	defer ws.Close()
	s := &session{h: h, ws: ws, user: name, role: role, replies: make(chan any, h.cfg.ReplyQueue),
		log: h.cfg.Logger.With("user", name, "remote", r.RemoteAddr)}
	s.run()
}

// count records a refused or ended connection on the broker's disconnect
// counter (refusals are disconnects before the upgrade).
func (h *Handler) count(reason string) {
	h.cfg.Broker.Metrics().Disconnects.WithLabelValues(reason).Inc()
}

// Close refuses new connections, tells open ones the hub is going away
// (close 1001, browsers reconnect) and waits for them or ctx. Idempotent.
func (h *Handler) Close(ctx context.Context) error {
	h.gate.Close()
	h.shutdown(errShutdown)
	return h.gate.Wait(ctx)
}
