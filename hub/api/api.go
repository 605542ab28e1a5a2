// Package api is fleethub's admin REST API (/api/v1), the server side of
// fleetctl. Every route needs an API token (Authorization: Bearer fwa_...)
// whose role allows it: viewer reads, operator also sends and cancels
// commands, admin also manages devices and tokens.
package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/hub/store"
)

// Sessions is what the API needs of the hub's live device sessions.
type Sessions interface {
	// Online reports whether the device has a live session.
	Online(deviceID string) bool
	// Disconnect closes the device's live session at once, if any.
	Disconnect(deviceID string, reason string)
}

// Config configures the API handler.
type Config struct {
	Store    *store.Store
	Sessions Sessions
	// Commands serves the command routes; nil answers them with 503.
	Commands Commands
	Logger   *slog.Logger
	// HubURL is the wss:// URL agents dial; it goes into the agent config
	// returned when a device is added.
	HubURL string
	// CAFingerprint is the SHA-256 (hex) of the hub's CA certificate, for
	// agents to pin. Empty: the agent config points at a CA file instead.
	CAFingerprint string
}

// MaxBodyBytes caps a request body.
const MaxBodyBytes = 64 << 10

type server struct {
	cfg Config
	log *slog.Logger
}

// New returns the handler that serves /api/v1/...; mount it at "/api/".
func New(cfg Config) http.Handler {
	s := &server{cfg: cfg, log: cfg.Logger}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	viewer, operator, admin := s.need(hub.RoleViewer), s.need(hub.RoleOperator), s.need(hub.RoleAdmin)
	cmds := s.commandsEnabled
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/devices", admin(s.createDevice))
	mux.HandleFunc("GET /api/v1/devices", viewer(s.listDevices))
	mux.HandleFunc("GET /api/v1/devices/{id}", viewer(s.getDevice))
	mux.HandleFunc("POST /api/v1/devices/{id}/revoke", admin(s.revokeDevice))
	mux.HandleFunc("DELETE /api/v1/devices/{id}", admin(s.deleteDevice))
	mux.HandleFunc("GET /api/v1/deadletters", viewer(s.listDeadLetters))
	mux.HandleFunc("POST /api/v1/commands", operator(cmds(s.sendCommand)))
	mux.HandleFunc("GET /api/v1/commands", viewer(cmds(s.listCommands)))
	mux.HandleFunc("GET /api/v1/commands/{id}", viewer(cmds(s.getCommand)))
	mux.HandleFunc("POST /api/v1/commands/{id}/cancel", operator(cmds(s.cancelCommand)))
	mux.HandleFunc("GET /api/v1/bulk/{id}", viewer(cmds(s.getBulk)))
	// Token names and roles are no secret, but who may call the API is the
	// admin's business: every token route needs admin.
	mux.HandleFunc("POST /api/v1/tokens", admin(s.createToken))
	mux.HandleFunc("GET /api/v1/tokens", admin(s.listTokens))
	mux.HandleFunc("DELETE /api/v1/tokens/{name}", admin(s.deleteToken))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such API route: "+r.Method+" "+r.URL.Path)
	})
	// Auth wraps the whole mux so unknown routes reveal nothing either.
	return s.authenticate(mux)
}

type ctxKey struct{}

// caller returns the API token that authorized r.
func caller(r *http.Request) hub.APITokenInfo {
	info, _ := r.Context().Value(ctxKey{}).(hub.APITokenInfo)
	return info
}

// tokenName returns the name of the API token that authorized r.
func tokenName(r *http.Request) string { return caller(r).Name }

// need returns a wrapper that refuses callers whose role does not include
// role with a 403 naming the role needed.
func (s *server) need(role hub.Role) func(http.HandlerFunc) http.HandlerFunc {
	return func(next http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			c := caller(r)
			if !c.Role.Allows(role) {
				writeError(w, http.StatusForbidden, fmt.Sprintf("forbidden: this needs the %s role; API token %q has the %s role", role, c.Name, orNone(c.Role)))
				return
			}
			next(w, r)
		}
	}
}

func orNone(r hub.Role) hub.Role {
	if r == "" {
		return "(none)"
	}
	return r
}

// commandsEnabled answers 503 when the hub runs without a command service.
func (s *server) commandsEnabled(next http.HandlerFunc) http.HandlerFunc {
	if s.cfg.Commands != nil {
		return next
	}
	return func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusServiceUnavailable, "commands are not enabled on this hub")
	}
}

// authenticate checks the Bearer API token before any route runs.
func (s *server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := bearer(r.Header.Get("Authorization"))
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="fleethub"`)
			writeError(w, http.StatusUnauthorized, "missing API token (Authorization: Bearer fwa_...)")
			return
		}
		info, err := s.cfg.Store.AuthenticateAPIToken(r.Context(), token)
		if err != nil {
			if !errors.Is(err, hub.ErrUnauthorized) {
				s.internalError(w, r, err)
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="fleethub", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, "invalid API token")
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, info)))
	})
}

// bearer extracts the token of an "Authorization: Bearer <token>" header;
// the scheme is case-insensitive (RFC 9110 §11.1).
func bearer(h string) (string, bool) {
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}
