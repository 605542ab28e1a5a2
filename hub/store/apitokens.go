package store

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"errors"
	"fmt"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/protocol"
)

// AdminTokenName is the name of the API token EnsureAdminToken creates.
const AdminTokenName = "admin"

// EnsureAdminToken creates an API token named "admin" when no API token
// exists yet, so a fresh hub can be administered. It returns the plaintext
// only when it created the token (created == true); otherwise token is "".
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
	token, err = insertAPIToken(ctx, tx, AdminTokenName, s.now().UnixNano())
	if err != nil {
		return "", false, fmt.Errorf("ensure admin token: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return "", false, fmt.Errorf("ensure admin token: %w", err)
	}
	return token, true, nil
}

// CreateAPIToken creates an API token with a unique name (like a label
// key: 1..64 bytes of [A-Za-z0-9_.-]) and returns its plaintext, which is
// not stored. ErrConflict if the name is taken.
func (s *Store) CreateAPIToken(ctx context.Context, name string) (string, error) {
	if err := protocol.ValidName(name, 64); err != nil {
		return "", fmt.Errorf("%w: token name: %v", hub.ErrInvalidInput, err)
	}
	token, err := insertAPIToken(ctx, s.db, name, s.now().UnixNano())
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

func insertAPIToken(ctx context.Context, db execer, name string, now int64) (string, error) {
	token, hash := newToken(APITokenPrefix)
	_, err := db.ExecContext(ctx,
		`INSERT INTO api_tokens (name, token_hash, created_at) VALUES (?, ?, ?)`, name, hash, now)
	return token, err
}

// AuthenticateAPIToken returns the name of the API token. ErrUnauthorized
// for a malformed or unknown token.
func (s *Store) AuthenticateAPIToken(ctx context.Context, token string) (string, error) {
	if !wellFormed(token, APITokenPrefix) {
		return "", hub.ErrUnauthorized
	}
	hash := hashToken(token)
	var (
		name   string
		stored []byte
	)
	err := s.db.QueryRowContext(ctx, `SELECT name, token_hash FROM api_tokens WHERE token_hash = ?`, hash).Scan(&name, &stored)
	if errors.Is(err, sql.ErrNoRows) {
		return "", hub.ErrUnauthorized
	}
	if err != nil {
		return "", fmt.Errorf("authenticate api token: %w", err)
	}
	if subtle.ConstantTimeCompare(stored, hash) != 1 {
		return "", hub.ErrUnauthorized
	}
	return name, nil
}
