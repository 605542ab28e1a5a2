package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/protocol"
)

// AdminUserName is the dashboard user EnsureAdminUser creates.
const AdminUserName = "admin"

// User is a dashboard account; its password hash never leaves the store.
type User struct {
	Name      string    `json:"name"`
	Role      hub.Role  `json:"role"`
	CreatedAt time.Time `json:"created_at"`
	Disabled  bool      `json:"disabled"`
}

// validUser checks a user name (like a label key) and role.
func validUser(name string, role hub.Role) error {
	if err := protocol.ValidName(name, MaxLabelKeyLen); err != nil {
		return fmt.Errorf("%w: user name: %v", hub.ErrInvalidInput, err)
	}
	if !validRole(role) {
		return fmt.Errorf("%w: user role %q (use viewer, operator or admin)", hub.ErrInvalidInput, role)
	}
	return nil
}

// CreateUser adds a user. ErrInvalidInput for a bad name, role or password
// (at least MinPasswordLen characters); ErrConflict if the name is taken.
func (s *Store) CreateUser(ctx context.Context, name string, role hub.Role, password string) error {
	if err := validUser(name, role); err != nil {
		return err
	}
	if err := validPassword(password); err != nil {
		return err
	}
	hash, err := s.pw.hash(ctx, password)
	if err != nil {
		return fmt.Errorf("create user: %w", err)
	}
	_, err = s.db.ExecContext(ctx,
		`INSERT INTO users (name, role, password_hash, created_at) VALUES (?, ?, ?, ?)`,
		name, string(role), hash, unixNano(s.now()))
	if isUniqueViolation(err) {
		return fmt.Errorf("user %s: %w", name, hub.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("create user: %w", err)
	}
	return nil
}

// EnsureAdminUser creates the admin user with password when no user exists
// yet, so a fresh hub's dashboard can be signed in to. created tells
// whether it did.
func (s *Store) EnsureAdminUser(ctx context.Context, password string) (created bool, err error) {
	if err := validPassword(password); err != nil {
		return false, err
	}
	// Hash first: the KDF must not run inside the write transaction,
	// which holds the store's only connection.
	hash, err := s.pw.hash(ctx, password)
	if err != nil {
		return false, fmt.Errorf("ensure admin user: %w", err)
	}
	// IMMEDIATE (see dsn): two hubs on one file cannot both create it.
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("ensure admin user: %w", err)
	}
	defer tx.Rollback()
	var n int64
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM users`).Scan(&n); err != nil {
		return false, fmt.Errorf("ensure admin user: %w", err)
	}
	if n > 0 {
		return false, nil
	}
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO users (name, role, password_hash, created_at) VALUES (?, 'admin', ?, ?)`,
		AdminUserName, hash, unixNano(s.now())); err != nil {
		return false, fmt.Errorf("ensure admin user: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("ensure admin user: %w", err)
	}
	return true, nil
}

// GetUser returns the user called name, or ErrNotFound.
func (s *Store) GetUser(ctx context.Context, name string) (User, error) {
	u, _, err := s.userWithHash(ctx, name)
	return u, err
}

func (s *Store) userWithHash(ctx context.Context, name string) (User, string, error) {
	var (
		u       User
		hash    string
		created int64
	)
	err := s.db.QueryRowContext(ctx,
		`SELECT name, role, password_hash, created_at, disabled FROM users WHERE name = ?`, name).
		Scan(&u.Name, &u.Role, &hash, &created, &u.Disabled)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, "", fmt.Errorf("user %s %w", name, hub.ErrNotFound)
	}
	if err != nil {
		return User{}, "", fmt.Errorf("get user: %w", err)
	}
	u.CreatedAt = fromNano(created)
	return u, hash, nil
}

// ListUsers returns every user, sorted by name.
func (s *Store) ListUsers(ctx context.Context) ([]User, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, role, created_at, disabled FROM users ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	defer rows.Close()
	users := []User{}
	for rows.Next() {
		var (
			u       User
			created int64
		)
		if err := rows.Scan(&u.Name, &u.Role, &created, &u.Disabled); err != nil {
			return nil, fmt.Errorf("list users: %w", err)
		}
		u.CreatedAt = fromNano(created)
		users = append(users, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return users, nil
}

// DeleteUser removes a user and their sessions. ErrNotFound if there is
// none; ErrConflict if it is the last admin user, because nobody could
// then manage users from the dashboard.
func (s *Store) DeleteUser(ctx context.Context, name string) error {
	return s.changeUser(ctx, name, "delete user", true, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM users WHERE name = ?`, name)
		return err
	})
}

// SetRole changes a user's role; their sessions carry the new role at
// once. ErrConflict when it would demote the last admin.
func (s *Store) SetRole(ctx context.Context, name string, role hub.Role) error {
	if err := validUser(name, role); err != nil {
		return err
	}
	return s.changeUser(ctx, name, "set role", role != hub.RoleAdmin, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE users SET role = ? WHERE name = ?`, string(role), name)
		return err
	})
}

// changeUser runs change on an existing user in one IMMEDIATE transaction
// (see dsn), so two concurrent changes cannot both see the other admin
// still there. With guardAdmin it refuses to remove the last admin.
func (s *Store) changeUser(ctx context.Context, name, op string, guardAdmin bool, change func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	defer tx.Rollback()
	var role hub.Role
	err = tx.QueryRowContext(ctx, `SELECT role FROM users WHERE name = ?`, name).Scan(&role)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("user %s %w", name, hub.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if guardAdmin && role == hub.RoleAdmin {
		var admins int64
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM users WHERE role = 'admin' AND disabled = 0`).Scan(&admins); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		if admins <= 1 {
			return fmt.Errorf("user %s is the last admin: %w", name, hub.ErrConflict)
		}
	}
	if err := change(tx); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// SetPassword replaces a user's password and ends all their sessions, so a
// stolen session does not outlive the password change.
func (s *Store) SetPassword(ctx context.Context, name, password string) error {
	if err := validPassword(password); err != nil {
		return err
	}
	hash, err := s.pw.hash(ctx, password)
	if err != nil {
		return fmt.Errorf("set password: %w", err)
	}
	return s.changeUser(ctx, name, "set password", false, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE users SET password_hash = ? WHERE name = ?`, hash, name); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE user_name = ?`, name)
		return err
	})
}

// CheckPassword returns the user when name exists, is enabled and
// password is theirs; ErrUnauthorized otherwise, without saying which.
// An unknown name costs one full KDF run too (against a dummy hash), so
// response times do not reveal which names exist.
func (s *Store) CheckPassword(ctx context.Context, name, password string) (User, error) {
	u, hash, err := s.userWithHash(ctx, name)
	known := err == nil
	if err != nil && !errors.Is(err, hub.ErrNotFound) {
		return User{}, err
	}
	if !known {
		hash = s.dummyHash
	}
	ok, err := s.pw.verify(ctx, hash, password)
	if err != nil {
		return User{}, fmt.Errorf("check password: %w", err)
	}
	if !ok || !known || u.Disabled {
		return User{}, hub.ErrUnauthorized
	}
	return u, nil
}
