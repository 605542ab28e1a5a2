// Package api is fleethub's REST API (/api/v1), the server side of
// fleetctl and the dashboard. Every route but sign-in needs an API token
// (Authorization: Bearer fwa_...) or a dashboard session cookie whose role
// allows it: viewer reads, operator also sends and cancels commands, admin
// also manages devices, tokens and users. Cookie requests that change
// state must echo the session's CSRF token in X-CSRF-Token.
package api

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/hub/store"
)

// Sessions is what the API needs of the hub's live device sessions.
type Sessions interface {
	// Online reports whether the device has a live session.
	Online(deviceID string) bool
	// Disconnect closes the device's live session at once, if any.
	Disconnect(deviceID string, reason string)
	// RequestRotation asks the device's live session, if any, to rotate
	// its token now; asked reports whether it had one.
	RequestRotation(deviceID string) (asked bool)
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
	// Auth resolves callers; nil builds one over Store with the defaults.
	Auth *Authenticator
}

// MaxBodyBytes caps a request body.
const MaxBodyBytes = 64 << 10

type server struct {
	cfg  Config
	log  *slog.Logger
	auth *Authenticator
	// devices counts failed device credentials (enrollment codes, device
	// tokens) per address, apart from sign-ins: a fleet re-running a spent
	// code must not lock the operators out.
	devices *loginLimiter
}

// New returns the handler that serves /api/v1/...; mount it at "/api/".
func New(cfg Config) http.Handler {
	s := &server{cfg: cfg, log: cfg.Logger, auth: cfg.Auth, devices: newLoginLimiter(20, time.Minute)}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.auth == nil {
		s.auth = NewAuthenticator(cfg.Store)
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
	mux.HandleFunc("POST /api/v1/logout", viewer(s.logout))
	mux.HandleFunc("GET /api/v1/me", viewer(s.me))
	mux.HandleFunc("GET /api/v1/users", admin(s.listUsers))
	mux.HandleFunc("POST /api/v1/users", admin(s.createUser))
	mux.HandleFunc("DELETE /api/v1/users/{name}", admin(s.deleteUser))
	// Users may change their own password (checked in the handler).
	mux.HandleFunc("POST /api/v1/users/{name}/password", viewer(s.setPassword))
	mux.HandleFunc("POST /api/v1/users/{name}/role", admin(s.setRole))
	mux.HandleFunc("POST /api/v1/devices/{id}/rotate", admin(s.rotateDevice))
	mux.HandleFunc("POST /api/v1/enrollments", admin(s.createEnrollment))
	mux.HandleFunc("GET /api/v1/enrollments", admin(s.listEnrollments))
	mux.HandleFunc("POST /api/v1/enrollments/{id}/revoke", admin(s.revokeEnrollment))
	mux.HandleFunc("GET /api/v1/audit", admin(s.listAudit))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such API route: "+r.Method+" "+r.URL.Path)
	})
	// Auth wraps the whole mux so unknown routes reveal nothing either;
	// only sign-in comes before it.
	outer := http.NewServeMux()
	outer.HandleFunc("POST /api/v1/login", s.login)
	outer.HandleFunc("POST /api/v1/enroll", s.enroll)            // the code is the credential
	outer.HandleFunc("POST /api/v1/device/token", s.rotateToken) // the device token is
	outer.Handle("/", s.authenticate(mux))
	return outer
}

// need returns a wrapper that refuses callers whose role does not include
// role with a 403 naming the role needed.
func (s *server) need(role hub.Role) func(http.HandlerFunc) http.HandlerFunc {
	return func(next http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			c := caller(r)
			if !c.Role.Allows(role) {
				writeError(w, http.StatusForbidden, fmt.Sprintf("forbidden: this needs the %s role; %s %q has the %s role", role, kindName(c.Kind), c.Name, orNone(c.Role)))
				return
			}
			next(w, r)
		}
	}
}

// kindName names a principal kind in messages.
func kindName(kind string) string {
	if kind == KindUser {
		return "user"
	}
	return "API token"
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
