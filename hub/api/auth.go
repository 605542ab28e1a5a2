package api

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/hub/store"
)

// SessionCookie is the dashboard session cookie's name.
const SessionCookie = "fw_session"

// CSRFHeader carries the session's CSRF token on state-changing requests
// made with the session cookie.
const CSRFHeader = "X-CSRF-Token"

// Principal kinds.
const (
	KindUser  = "user"  // signed in with the session cookie
	KindToken = "token" // an API token (Authorization: Bearer fwa_...)
)

// Default session limits (dashboard.session_idle, dashboard.session_max).
const (
	DefaultSessionIdle = 12 * time.Hour
	DefaultSessionMax  = 7 * 24 * time.Hour
)

// Principal is who made a request and what they may do.
type Principal struct {
	Name string
	Role hub.Role
	Kind string // KindUser or KindToken
	// CSRFToken is the session's CSRF token (KindUser only).
	CSRFToken string
	// sessionID is the cookie value, for logout.
	sessionID string
}

// ErrNoCredentials means a request carried neither an API token nor a
// session cookie.
var ErrNoCredentials = errors.New("no credentials")

// Authenticator resolves a request's API token or session cookie to a
// Principal. It is shared by the REST API and the live WebSocket endpoint.
type Authenticator struct {
	st     *store.Store
	limits store.SessionLimits
	now    func() time.Time
	login  *loginLimiter
}

// AuthOption configures an Authenticator.
type AuthOption func(*Authenticator)

// WithSessionLimits sets how long sessions last idle and at most.
func WithSessionLimits(idle, max time.Duration) AuthOption {
	return func(a *Authenticator) { a.limits = store.SessionLimits{Idle: idle, Max: max} }
}

// WithAuthClock sets the clock the login limiter reads (session expiry
// follows the store's clock).
func WithAuthClock(now func() time.Time) AuthOption { return func(a *Authenticator) { a.now = now } }

// WithLoginLimit allows failures failed sign-ins per source address per
// window before answering 429.
func WithLoginLimit(failures int, window time.Duration) AuthOption {
	return func(a *Authenticator) { a.login.max, a.login.window = failures, window }
}

// NewAuthenticator returns an Authenticator over st with the default
// session limits and 10 failed sign-ins per address per minute.
func NewAuthenticator(st *store.Store, opts ...AuthOption) *Authenticator {
	a := &Authenticator{
		st:     st,
		limits: store.SessionLimits{Idle: DefaultSessionIdle, Max: DefaultSessionMax},
		now:    time.Now,
		login:  newLoginLimiter(10, time.Minute),
	}
	for _, o := range opts {
		o(a)
	}
	a.login.now = a.now
	return a
}

// FromRequest authenticates r by its Bearer API token or, without an
// Authorization header, its session cookie. It does not check CSRF (a
// WebSocket upgrade is a GET; the live endpoint checks Origin itself).
// Errors: ErrNoCredentials, hub.ErrUnauthorized, or a store failure.
func (a *Authenticator) FromRequest(r *http.Request) (Principal, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		// A present but broken header is refused rather than falling back
		// to the cookie: the caller meant the token.
		token, ok := bearer(h)
		if !ok {
			return Principal{}, hub.ErrUnauthorized
		}
		info, err := a.st.AuthenticateAPIToken(r.Context(), token)
		if err != nil {
			return Principal{}, err
		}
		return Principal{Name: info.Name, Role: info.Role, Kind: KindToken}, nil
	}
	c, err := r.Cookie(SessionCookie)
	if err != nil || c.Value == "" {
		return Principal{}, ErrNoCredentials
	}
	sess, err := a.st.TouchSession(r.Context(), c.Value, a.limits)
	if err != nil {
		return Principal{}, err
	}
	return Principal{Name: sess.User, Role: sess.Role, Kind: KindUser, CSRFToken: sess.CSRFToken, sessionID: c.Value}, nil
}

// checkCSRF reports whether a cookie-authenticated request may change
// state: safe methods always, others only with the session's token in
// CSRFHeader. Bearer requests need none: browsers never add that header
// on their own, so a cross-site page cannot forge one.
func checkCSRF(p Principal, r *http.Request) bool {
	if p.Kind != KindUser {
		return true
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return true
	}
	got := r.Header.Get(CSRFHeader)
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(p.CSRFToken)) == 1
}

// sessionCookie is the cookie that carries a session id; maxAge < 0
// deletes it. Secure always: browsers accept Secure cookies from
// http://localhost too, so development over plain HTTP still works.
func sessionCookie(value string, maxAge time.Duration) *http.Cookie {
	c := &http.Cookie{
		Name: SessionCookie, Value: value, Path: "/",
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode,
		MaxAge: int(maxAge / time.Second),
	}
	if maxAge < 0 {
		c.MaxAge = -1
	}
	return c
}

type ctxKey struct{}

// caller returns who made r (set by authenticate).
func caller(r *http.Request) Principal {
	p, _ := r.Context().Value(ctxKey{}).(Principal)
	return p
}

// tokenName returns the name of the token or user that made r.
func tokenName(r *http.Request) string { return caller(r).Name }

// authenticate resolves the caller before any route runs, and enforces
// CSRF on cookie sessions.
func (s *server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := s.auth.FromRequest(r)
		switch {
		case errors.Is(err, ErrNoCredentials):
			w.Header().Set("WWW-Authenticate", `Bearer realm="fleethub"`)
			writeError(w, http.StatusUnauthorized, "not signed in: sign in, or send an API token (Authorization: Bearer fwa_...)")
			return
		case errors.Is(err, hub.ErrUnauthorized):
			if r.Header.Get("Authorization") != "" {
				w.Header().Set("WWW-Authenticate", `Bearer realm="fleethub", error="invalid_token"`)
				writeError(w, http.StatusUnauthorized, "invalid API token")
				return
			}
			// Expired or signed out: drop the stale cookie too.
			http.SetCookie(w, sessionCookie("", -1))
			writeError(w, http.StatusUnauthorized, "session expired or signed out: sign in again")
			return
		case err != nil:
			s.internalError(w, r, err)
			return
		}
		if !checkCSRF(p, r) {
			writeError(w, http.StatusForbidden, fmt.Sprintf("missing or wrong %s header (GET /api/v1/me returns the token)", CSRFHeader))
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, p)))
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
