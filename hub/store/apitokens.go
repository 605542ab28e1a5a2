package store

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/protocol"
)

// AdminTokenName is the name of the API token EnsureAdminToken creates.
const AdminTokenName = "admin"

// APIToken describes a stored API token; the secret itself is never kept.
type APIToken struct {
	Name      string    `json:"name"`
	Role      hub.Role  `json:"role"`
	CreatedAt time.Time `json:"created_at"`
}

// EnsureAdminToken creates an admin API token named "admin" when no API
// token exists yet, so a fresh hub can be administered. It returns the
// plaintext only when it created the token (created == true); otherwise
// token is "".
func (s *Store) EnsureAdminToken(ctx context.Context) (token string, created bool, err error) {
	// One transaction (taken IMMEDIATE, see dsn) so two hubs starting on
	// the same file cannot both create one.
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return "", false, fmt.Errorf("ensure admin token: %w", err)
	}
	defer tx.Rollback()
	var n int64
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM api_tokens`).Scan(&n); err != nil {
		return "", false, fmt.Errorf("ensure admin token: %w", err)
	}
	if n > 0 {
		return "", false, nil
	}
	token, err = insertAPIToken(ctx, tx, AdminTokenName, hub.RoleAdmin, s.now().UnixNano())
	if err != nil {
		return "", false, fmt.Errorf("ensure admin token: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return "", false, fmt.Errorf("ensure admin token: %w", err)
	}
	return token, true, nil
}

// validRole reports whether r is one of the roles a token can hold.
func validRole(r hub.Role) bool {
	switch r {
	case hub.RoleViewer, hub.RoleOperator, hub.RoleAdmin:
		return true
	}
	return false
}

// CreateAPIToken creates an API token with a unique name (like a label
// key: 1..64 bytes of [A-Za-z0-9_.-]) and role, and returns its plaintext,
// which is not stored. ErrInvalidInput for a bad name or role, ErrConflict
// if the name is taken.
func (s *Store) CreateAPIToken(ctx context.Context, name string, role hub.Role) (string, error) {
	if err := protocol.ValidName(name, 64); err != nil {
		return "", fmt.Errorf("%w: token name: %v", hub.ErrInvalidInput, err)
	}
	if !validRole(role) {
		return "", fmt.Errorf("%w: token role %q (use viewer, operator or admin)", hub.ErrInvalidInput, role)
	}
	token, err := insertAPIToken(ctx, s.db, name, role, s.now().UnixNano())
	if isUniqueViolation(err) {
		return "", fmt.Errorf("api token %s: %w", name, hub.ErrConflict)
	}
	if err != nil {
		return "", fmt.Errorf("create api token: %w", err)
	}
	return token, nil
}

// execer is what insertAPIToken needs of a *sql.DB or *sql.Tx.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func insertAPIToken(ctx context.Context, db execer, name string, role hub.Role, now int64) (string, error) {
	token, hash := newToken(APITokenPrefix)
	_, err := db.ExecContext(ctx,
		`INSERT INTO api_tokens (name, role, token_hash, created_at) VALUES (?, ?, ?, ?)`,
		name, string(role), hash, now)
	return token, err
}

// ListAPITokens returns every API token's name, role and creation time,
// sorted by name.
func (s *Store) ListAPITokens(ctx context.Context) ([]APIToken, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, role, created_at FROM api_tokens ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list api tokens: %w", err)
	}
	defer rows.Close()
	tokens := []APIToken{}
	for rows.Next() {
		var (
			t       APIToken
			created int64
		)
		if err := rows.Scan(&t.Name, &t.Role, &created); err != nil {
			return nil, fmt.Errorf("list api tokens: %w", err)
		}
		t.CreatedAt = fromNano(created)
		tokens = append(tokens, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list api tokens: %w", err)
	}
	return tokens, nil
}

// DeleteAPIToken removes the API token called name. ErrNotFound if there is
// none; ErrConflict if it is the last admin token, because without one
// nobody could manage tokens or devices any more (EnsureAdminToken only
// helps when no token at all exists).
func (s *Store) DeleteAPIToken(ctx context.Context, name string) error {
	// IMMEDIATE (see dsn): two concurrent deletes of the last two admins
	// cannot both see the other one still there.
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("delete api token: %w", err)
	}
	defer tx.Rollback()
	var role hub.Role
	err = tx.QueryRowContext(ctx, `SELECT role FROM api_tokens WHERE name = ?`, name).Scan(&role)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("api token %s %w", name, hub.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("delete api token: %w", err)
	}
	if role == hub.RoleAdmin {
		var admins int64
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM api_tokens WHERE role = 'admin'`).Scan(&admins); err != nil {
			return fmt.Errorf("delete api token: %w", err)
		}
		if admins <= 1 {
			return fmt.Errorf("api token %s is the last admin token: %w", name, hub.ErrConflict)
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM api_tokens WHERE name = ?`, name); err != nil {
		return fmt.Errorf("delete api token: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("delete api token: %w", err)
	}
	return nil
}

// AuthenticateAPIToken returns the name and role of the API token.
// ErrUnauthorized for a malformed or unknown token.
func (s *Store) AuthenticateAPIToken(ctx context.Context, token string) (hub.APITokenInfo, error) {
	if !wellFormed(token, APITokenPrefix) {
		return hub.APITokenInfo{}, hub.ErrUnauthorized
	}
	hash := hashToken(token)
	var (
		info   hub.APITokenInfo
		stored []byte
	)
	err := s.db.QueryRowContext(ctx,
		`SELECT name, role, token_hash FROM api_tokens WHERE token_hash = ?`, hash).
		Scan(&info.Name, &info.Role, &stored)
	if errors.Is(err, sql.ErrNoRows) {
		return hub.APITokenInfo{}, hub.ErrUnauthorized
	}
	if err != nil {
		return hub.APITokenInfo{}, fmt.Errorf("authenticate api token: %w", err)
	}
	// The index lookup is not constant time; see AuthenticateDevice.
	if subtle.ConstantTimeCompare(stored, hash) != 1 {
		return hub.APITokenInfo{}, hub.ErrUnauthorized
	}
	return info, nil
}
