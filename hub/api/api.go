// Package api is fleethub's admin REST API (/api/v1), the server side of
// fleetctl. Every route needs an API token (Authorization: Bearer fwa_...).
package api

import (
	"context"
	"errors"
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
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/devices", s.createDevice)
	mux.HandleFunc("GET /api/v1/devices", s.listDevices)
	mux.HandleFunc("GET /api/v1/devices/{id}", s.getDevice)
	mux.HandleFunc("POST /api/v1/devices/{id}/revoke", s.revokeDevice)
	mux.HandleFunc("DELETE /api/v1/devices/{id}", s.deleteDevice)
	mux.HandleFunc("GET /api/v1/deadletters", s.listDeadLetters)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such API route: "+r.Method+" "+r.URL.Path)
	})
	// Auth wraps the whole mux so unknown routes reveal nothing either.
	return s.authenticate(mux)
}

type ctxKey struct{}

// tokenName returns the name of the API token that authorized r.
func tokenName(r *http.Request) string {
	name, _ := r.Context().Value(ctxKey{}).(string)
	return name
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
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, info.Name)))
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
