package store

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/fleetwire/fleetwire/hub"
)

// SessionPrefix marks a dashboard session id (the fw_session cookie).
const SessionPrefix = "fws_"

// touchEvery limits last_seen writes to one per session per minute: a
// busy dashboard would otherwise write to SQLite on every request. The
// idle limit can therefore end a session up to this much early.
const touchEvery = time.Minute

// SessionLimits bound a session's life.
type SessionLimits struct {
	Idle time.Duration // since the last request
	Max  time.Duration // since sign-in, however active
}

// Session is a signed-in dashboard user.
type Session struct {
	User      string    `json:"user"`
	Role      hub.Role  `json:"role"`
	CSRFToken string    `json:"csrf_token"`
	CreatedAt time.Time `json:"created_at"`
	LastSeen  time.Time `json:"last_seen"`
	ExpiresAt time.Time `json:"expires_at"`
}

// CreateSession starts a session for user and returns its id (the cookie
// value; only its hash is stored) and the session with its CSRF token.
func (s *Store) CreateSession(ctx context.Context, user string, lim SessionLimits) (string, Session, error) {
	id, hash := newToken(SessionPrefix)
	now := s.now()
	sess := Session{
		User: user, CSRFToken: string(newRandomSecret()),
		CreatedAt: now.UTC(), LastSeen: now.UTC(), ExpiresAt: now.Add(lim.Max).UTC(),
	}
	err := s.db.QueryRowContext(ctx,
		`INSERT INTO sessions (id_hash, user_name, csrf_token, created_at, last_seen, expires_at)
		 SELECT ?, name, ?, ?, ?, ? FROM users WHERE name = ? AND disabled = 0 RETURNING (SELECT role FROM users WHERE name = ?)`,
		hash, sess.CSRFToken, unixNano(now), unixNano(now), unixNano(sess.ExpiresAt), user, user).Scan(&sess.Role)
	if errors.Is(err, sql.ErrNoRows) {
		return "", Session{}, fmt.Errorf("user %s %w", user, hub.ErrNotFound)
	}
	if err != nil {
		return "", Session{}, fmt.Errorf("create session: %w", err)
	}
	return id, sess, nil
}

// TouchSession returns the live session with id and records the request
// (see touchEvery). ErrUnauthorized for an unknown, expired (idle or
// absolute) or disabled user's session; expired ones are deleted.
func (s *Store) TouchSession(ctx context.Context, id string, lim SessionLimits) (Session, error) {
	if !wellFormed(id, SessionPrefix) {
		return Session{}, hub.ErrUnauthorized
	}
	hash := hashToken(id)
	var (
		sess                   Session
		stored                 []byte
		created, seen, expires int64
		disabled               bool
	)
	err := s.db.QueryRowContext(ctx,
		`SELECT s.id_hash, s.user_name, u.role, u.disabled, s.csrf_token, s.created_at, s.last_seen, s.expires_at
		 FROM sessions s JOIN users u ON u.name = s.user_name WHERE s.id_hash = ?`, hash).
		Scan(&stored, &sess.User, &sess.Role, &disabled, &sess.CSRFToken, &created, &seen, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return Session{}, hub.ErrUnauthorized
	}
	if err != nil {
		return Session{}, fmt.Errorf("touch session: %w", err)
	}
	// The index lookup is not constant time; see AuthenticateDevice.
	if subtle.ConstantTimeCompare(stored, hash) != 1 || disabled {
		return Session{}, hub.ErrUnauthorized
	}
	now := s.now()
	sess.CreatedAt, sess.LastSeen, sess.ExpiresAt = fromNano(created), fromNano(seen), fromNano(expires)
	if !now.Before(sess.ExpiresAt) || !now.Before(sess.LastSeen.Add(lim.Idle)) {
		if _, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE id_hash = ?`, hash); err != nil {
			return Session{}, fmt.Errorf("delete expired session: %w", err)
		}
		return Session{}, hub.ErrUnauthorized
	}
	if now.Sub(sess.LastSeen) >= touchEvery {
		if _, err := s.db.ExecContext(ctx, `UPDATE sessions SET last_seen = ? WHERE id_hash = ?`, unixNano(now), hash); err != nil {
			return Session{}, fmt.Errorf("touch session: %w", err)
		}
		sess.LastSeen = now.UTC()
	}
	return sess, nil
}

// DeleteSession ends the session with id; an unknown id is no error.
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE id_hash = ?`, hashToken(id)); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// DeleteUserSessions ends every session of user.
func (s *Store) DeleteUserSessions(ctx context.Context, user string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE user_name = ?`, user); err != nil {
		return fmt.Errorf("delete sessions of %s: %w", user, err)
	}
	return nil
}

// DeleteExpiredSessions removes sessions past their absolute limit or
// idle for longer than lim.Idle; the hub may call it now and then so
// abandoned sessions do not pile up.
func (s *Store) DeleteExpiredSessions(ctx context.Context, lim SessionLimits) (int64, error) {
	now := s.now()
	res, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE expires_at <= ? OR last_seen <= ?`,
		unixNano(now), unixNano(now.Add(-lim.Idle)))
	if err != nil {
		return 0, fmt.Errorf("delete expired sessions: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}
