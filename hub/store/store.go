// Package store is fleethub's registry in SQLite (modernc.org/sqlite, pure
// Go): devices and their token hashes, API tokens, dead letters and
// commands.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/fleetwire/fleetwire/hub"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// busyTimeout is how long a connection waits for another writer before
// SQLITE_BUSY; WAL lets readers run alongside one writer, writers queue.
const busyTimeout = 5 * time.Second

// Store is the SQLite registry. It is safe for concurrent use.
type Store struct {
	db *sql.DB
	// authStmt is prepared once: AuthenticateDevice runs on every device
	// connect, so it skips re-parsing the query.
	authStmt     *sql.Stmt
	nextAuthStmt *sql.Stmt // the same by a rotation's new token
	now          func() time.Time
	pw           *hasher
	// dummyHash is verified against for unknown users, so CheckPassword
	// costs the same whether or not the name exists.
	dummyHash string
	touch     *toucher // group commits of TouchDevice
}

// Option changes how Open sets up a Store.
type Option func(*Store)

// WithClock makes the store read time from now (tests move it by hand).
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// WithPasswordParams sets the argon2id cost for new password hashes
// (tests use a cheap one; DefaultPasswordParams otherwise).
func WithPasswordParams(p PasswordParams) Option { return func(s *Store) { s.pw = newHasher(p) } }

// Open opens (creating if needed) the database at path and migrates its
// schema to the latest version.
func Open(ctx context.Context, path string, opts ...Option) (*Store, error) {
	db, err := sql.Open("sqlite", dsn(path))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	// One connection: SQLite allows one writer at a time anyway, and
	// queueing writers in Go is far cheaper than SQLite's busy handler, which
	// sleeps and retries (measured: bulk sends 10x slower with a pool).
	db.SetMaxOpenConns(1)
	s := &Store{db: db, now: time.Now, pw: newHasher(DefaultPasswordParams())}
	for _, o := range opts {
		o(s)
	}
	if err := s.init(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return s, nil
}

// dsn sets the pragmas on every pooled connection, not just the first:
// busy_timeout and foreign_keys are per connection in SQLite.
func dsn(path string) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	// NORMAL is durable across application crashes in WAL mode; only an
	// OS crash can lose the last commits, which agents resend anyway.
	q.Add("_pragma", "synchronous(NORMAL)")
	// Write transactions take the lock up front, so two of them never
	// deadlock upgrading from a read lock (which busy_timeout cannot fix).
	q.Set("_txlock", "immediate")
	return "file:" + path + "?" + q.Encode()
}

func (s *Store) init(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	if err := migrate(ctx, s.db); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	stmt, err := s.db.PrepareContext(ctx, authDeviceQuery)
	if err != nil {
		return fmt.Errorf("prepare auth: %w", err)
	}
	s.authStmt = stmt
	if s.nextAuthStmt, err = s.db.PrepareContext(ctx, nextAuthDeviceQuery); err != nil {
		return fmt.Errorf("prepare auth: %w", err)
	}
	s.dummyHash = s.pw.dummy()
	s.startToucher()
	return nil
}

// Close closes the database.
func (s *Store) Close() error {
	s.closeToucher()
	return errors.Join(s.authStmt.Close(), s.nextAuthStmt.Close(), s.db.Close())
}

// Ping checks that the database answers a query.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("ping store: %w", err)
	}
	return nil
}

// unixNano and fromNano keep times as integer nanoseconds (UTC): they sort
// and compare correctly in SQL, unlike formatted strings with zones.
func unixNano(t time.Time) int64 { return t.UnixNano() }

func fromNano(ns int64) time.Time { return time.Unix(0, ns).UTC() }

func fromNullNano(ns sql.NullInt64) *time.Time {
	if !ns.Valid {
		return nil
	}
	t := fromNano(ns.Int64)
	return &t
}

// The store is what the hub core's device sessions, ingest and command
// service need.
var (
	_ hub.DeviceStore     = (*Store)(nil)
	_ hub.DeadLetterStore = (*Store)(nil)
	_ hub.CommandStore    = (*Store)(nil)
)
