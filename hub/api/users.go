package api

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/hub/store"
)

// LoginRequest is the body of POST /api/v1/login.
type LoginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// UserRef names a user and their role.
type UserRef struct {
	Name string   `json:"name"`
	Role hub.Role `json:"role"`
}

// LoginResponse answers a sign-in (and a password change that renewed
// the caller's own session). The session id travels only in the cookie.
type LoginResponse struct {
	User      UserRef `json:"user"`
	CSRFToken string  `json:"csrf_token"`
}

// MeResponse answers GET /api/v1/me.
type MeResponse struct {
	Name      string   `json:"name"`
	Role      hub.Role `json:"role"`
	Kind      string   `json:"kind"`
	CSRFToken string   `json:"csrf_token,omitempty"`
}

// CreateUserRequest is the body of POST /api/v1/users.
type CreateUserRequest struct {
	Name     string   `json:"name"`
	Role     hub.Role `json:"role"`
	Password string   `json:"password"`
}

// UserListResponse answers GET /api/v1/users.
type UserListResponse struct {
	Users []store.User `json:"users"`
}

// SetPasswordRequest is the body of POST /api/v1/users/{name}/password.
// CurrentPassword is needed when users change their own password without
// the admin role.
type SetPasswordRequest struct {
	Password        string `json:"password"`
	CurrentPassword string `json:"current_password,omitempty"`
}

// SetRoleRequest is the body of POST /api/v1/users/{name}/role.
type SetRoleRequest struct {
	Role hub.Role `json:"role"`
}

// sourceAddr is the peer's IP, the login limiter's key. X-Forwarded-For
// is ignored: anyone can send it.
func sourceAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// tooManyAttempts answers 429 when addr has used up its sign-in failures.
func (s *server) tooManyAttempts(w http.ResponseWriter, addr string) bool {
	return blockedBy(w, s.auth.login, addr, "too many failed sign-ins from your address; try again later")
}

// blockedBy answers 429 with Retry-After when l blocks addr.
func blockedBy(w http.ResponseWriter, l *loginLimiter, addr, msg string) bool {
	wait, blocked := l.blocked(addr)
	if !blocked {
		return false
	}
	secs := int((wait + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
	writeError(w, http.StatusTooManyRequests, msg)
	return true
}

func (s *server) login(w http.ResponseWriter, r *http.Request) {
	addr := sourceAddr(r)
	if s.tooManyAttempts(w, addr) {
		return
	}
	var req LoginRequest
	if !decodeBody(w, r, &req) {
		return
	}
	u, err := s.cfg.Store.CheckPassword(r.Context(), req.Username, req.Password)
	if errors.Is(err, hub.ErrUnauthorized) {
		s.auth.login.fail(addr)
		s.log.Warn("sign-in failed", "user", req.Username, "addr", addr)
		// One message for unknown users, wrong passwords and disabled
		// accounts: the answer must not tell which names exist.
		writeError(w, http.StatusUnauthorized, "wrong user name or password")
		return
	}
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	s.startSession(w, r, u.Name)
}

// startSession signs user in: a new session, its cookie, and the CSRF token.
func (s *server) startSession(w http.ResponseWriter, r *http.Request, user string) {
	id, sess, err := s.cfg.Store.CreateSession(r.Context(), user, s.auth.limits)
	if err != nil {
		s.writeStoreError(w, r, err)
		return
	}
	// Sign-ins are rare, so they are a cheap moment to drop abandoned
	// sessions; failing to is no reason to refuse this one.
	if _, err := s.cfg.Store.DeleteExpiredSessions(r.Context(), s.auth.limits); err != nil {
		s.log.Warn("delete expired sessions", "err", err)
	}
	http.SetCookie(w, sessionCookie(id, s.auth.limits.Max))
	s.log.Info("signed in", "user", user, "addr", sourceAddr(r))
	writeJSON(w, http.StatusOK, LoginResponse{User: UserRef{Name: user, Role: sess.Role}, CSRFToken: sess.CSRFToken})
}

func (s *server) logout(w http.ResponseWriter, r *http.Request) {
	p := caller(r)
	if p.Kind == KindUser {
		if err := s.cfg.Store.DeleteSession(r.Context(), p.sessionID); err != nil {
			s.internalError(w, r, err)
			return
		}
	}
	http.SetCookie(w, sessionCookie("", -1))
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) me(w http.ResponseWriter, r *http.Request) {
	p := caller(r)
	writeJSON(w, http.StatusOK, MeResponse{Name: p.Name, Role: p.Role, Kind: p.Kind, CSRFToken: p.CSRFToken})
}

func (s *server) listUsers(w http.ResponseWriter, r *http.Request) {
	users, err := s.cfg.Store.ListUsers(r.Context())
	if err != nil {
		s.writeStoreError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, UserListResponse{Users: users})
}

func (s *server) createUser(w http.ResponseWriter, r *http.Request) {
	var req CreateUserRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if err := s.cfg.Store.CreateUser(r.Context(), req.Name, req.Role, req.Password); err != nil {
		s.writeStoreError(w, r, err)
		return
	}
	u, err := s.cfg.Store.GetUser(r.Context(), req.Name)
	if err != nil {
		s.writeStoreError(w, r, err)
		return
	}
	s.log.Info("user created", "user", u.Name, "role", u.Role, "by", caller(r).Name)
	writeJSON(w, http.StatusCreated, u)
}

func (s *server) deleteUser(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	err := s.cfg.Store.DeleteUser(r.Context(), name)
	if errors.Is(err, hub.ErrConflict) {
		writeError(w, http.StatusConflict, "user "+name+" is the last admin: make another user admin first")
		return
	}
	if err != nil {
		s.writeStoreError(w, r, err)
		return
	}
	// The store deleted their sessions with them (ON DELETE CASCADE).
	s.log.Info("user deleted", "user", name, "by", caller(r).Name)
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) setPassword(w http.ResponseWriter, r *http.Request) {
	name, p := r.PathValue("name"), caller(r)
	self := p.Kind == KindUser && p.Name == name
	if !self && !p.Role.Allows(hub.RoleAdmin) {
		writeError(w, http.StatusForbidden, "forbidden: only admins change other users' passwords")
		return
	}
	var req SetPasswordRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if !p.Role.Allows(hub.RoleAdmin) && !s.currentPasswordOK(w, r, name, req.CurrentPassword) {
		return
	}
	if err := s.cfg.Store.SetPassword(r.Context(), name, req.Password); err != nil {
		s.writeStoreError(w, r, err)
		return
	}
	s.log.Info("password changed", "user", name, "by", p.Name)
	if self {
		// SetPassword ended every session of the user, this one too; hand
		// the caller a fresh one so the dashboard stays signed in.
		s.startSession(w, r, name)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// currentPasswordOK checks a non-admin's current password; failures count
// against the sign-in limiter, or this route would be a way around it.
func (s *server) currentPasswordOK(w http.ResponseWriter, r *http.Request, name, current string) bool {
	addr := sourceAddr(r)
	if s.tooManyAttempts(w, addr) {
		return false
	}
	_, err := s.cfg.Store.CheckPassword(r.Context(), name, current)
	if errors.Is(err, hub.ErrUnauthorized) {
		s.auth.login.fail(addr)
		writeError(w, http.StatusForbidden, "current_password is wrong")
		return false
	}
	if err != nil {
		s.internalError(w, r, err)
		return false
	}
	return true
}

func (s *server) setRole(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var req SetRoleRequest
	if !decodeBody(w, r, &req) {
		return
	}
	err := s.cfg.Store.SetRole(r.Context(), name, req.Role)
	if errors.Is(err, hub.ErrConflict) {
		writeError(w, http.StatusConflict, fmt.Sprintf("user %s is the last admin: make another user admin first", name))
		return
	}
	if err != nil {
		s.writeStoreError(w, r, err)
		return
	}
	s.log.Info("user role changed", "user", name, "role", req.Role, "by", caller(r).Name)
	w.WriteHeader(http.StatusNoContent)
}
