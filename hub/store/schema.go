package store

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations are applied in order; migrations[i] brings the schema from
// version i to i+1. Append only: never edit a migration that has shipped.
var migrations = []string{
	// 1: devices, API tokens, dead letters.
	`CREATE TABLE devices (
		id            TEXT PRIMARY KEY,
		labels        TEXT NOT NULL DEFAULT '{}', -- JSON object
		token_hash    BLOB NOT NULL,              -- SHA-256 of the token
		created_at    INTEGER NOT NULL,           -- unix ns
		revoked_at    INTEGER,
		last_seen     INTEGER,
		agent_version TEXT NOT NULL DEFAULT '',
		transport     TEXT NOT NULL DEFAULT 'ws'
	) STRICT;
	CREATE UNIQUE INDEX devices_token_hash ON devices(token_hash);
	CREATE TABLE api_tokens (
		id         INTEGER PRIMARY KEY,
		name       TEXT NOT NULL UNIQUE,
		token_hash BLOB NOT NULL,
		created_at INTEGER NOT NULL
	) STRICT;
	CREATE UNIQUE INDEX api_tokens_token_hash ON api_tokens(token_hash);
	-- No foreign key to devices: dead letters outlive a deleted device.
	CREATE TABLE dead_letters (
		id        INTEGER PRIMARY KEY AUTOINCREMENT,
		device_id TEXT NOT NULL,
		line      TEXT NOT NULL,
		error     TEXT NOT NULL,
		at        INTEGER NOT NULL
	) STRICT;`,
	// 2: API token roles. Tokens made before roles existed could do
	// everything, so they stay admin.
	`ALTER TABLE api_tokens ADD COLUMN role TEXT NOT NULL DEFAULT 'admin'
		CHECK (role IN ('viewer', 'operator', 'admin'));`,
	// 3: commands. No foreign key to devices: a command's history outlives
	// a deleted device, like dead letters. Times are unix ns like the rest;
	// NULL marks what has not happened yet (and args NULL vs '{}' keeps
	// nil apart from empty).
	`CREATE TABLE commands (
		id          TEXT PRIMARY KEY,
		bulk_id     TEXT,    -- NULL for a single send
		device_id   TEXT NOT NULL,
		name        TEXT NOT NULL,
		args        TEXT,    -- JSON object
		sent_by     TEXT NOT NULL,
		state       TEXT NOT NULL CHECK (state IN ('queued', 'sent', 'received',
		            'succeeded', 'failed', 'timed_out', 'rejected', 'expired', 'canceled')),
		created_at  INTEGER NOT NULL,
		expires_at  INTEGER NOT NULL,
		timeout_ms  INTEGER NOT NULL,
		sent_at     INTEGER,
		received_at INTEGER,
		finished_at INTEGER,
		exit_code   INTEGER,
		stdout      TEXT NOT NULL,
		stderr      TEXT NOT NULL,
		truncated   INTEGER NOT NULL,
		duration_ms INTEGER NOT NULL,
		error       TEXT NOT NULL,
		version     INTEGER NOT NULL
	) STRICT;
	-- Every index ends in (created_at, id): listings are ordered by it.
	CREATE INDEX commands_created ON commands(created_at, id);
	CREATE INDEX commands_device ON commands(device_id, created_at, id);
	CREATE INDEX commands_bulk ON commands(bulk_id, created_at, id) WHERE bulk_id IS NOT NULL;
	CREATE INDEX commands_state ON commands(state, created_at, id);
	-- The sweep reads the open commands every 2 s and a connecting device
	-- its pending ones; these partial indexes hold only the few open rows,
	-- however long the history grows. Queries must repeat the WHERE clause
	-- verbatim (openStates) for SQLite to use them.
	CREATE INDEX commands_open ON commands(created_at, id)
		WHERE state IN ('queued', 'sent', 'received');
	CREATE INDEX commands_device_open ON commands(device_id, created_at, id)
		WHERE state IN ('queued', 'sent', 'received');`,
	// 4: dashboard users and their sessions. A session is keyed by the
	// SHA-256 of its cookie value, like tokens; deleting a user deletes
	// their sessions (foreign_keys is on for every connection, see dsn).
	`CREATE TABLE users (
		name          TEXT PRIMARY KEY,
		role          TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
		password_hash TEXT NOT NULL,  -- argon2id PHC string, carries its parameters
		created_at    INTEGER NOT NULL,
		disabled      INTEGER NOT NULL DEFAULT 0
	) STRICT;
	CREATE TABLE sessions (
		id_hash    BLOB PRIMARY KEY,
		user_name  TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
		csrf_token TEXT NOT NULL,
		created_at INTEGER NOT NULL,
		last_seen  INTEGER NOT NULL,
		expires_at INTEGER NOT NULL  -- absolute limit; idle is checked against last_seen
	) STRICT;
	CREATE INDEX sessions_user ON sessions(user_name);
	CREATE INDEX sessions_expires ON sessions(expires_at);`,
	// 5: enrollment codes (hashed like tokens) and the audit log. A code's
	// uses_left counts down; revoked_at NULL means usable until expires_at.
	`CREATE TABLE enrollment_codes (
		id           TEXT PRIMARY KEY,
		code_hash    BLOB NOT NULL UNIQUE,
		labels       TEXT NOT NULL DEFAULT '{}',
		uses         INTEGER NOT NULL CHECK (uses > 0),
		uses_left    INTEGER NOT NULL CHECK (uses_left >= 0),
		created_by   TEXT NOT NULL,
		created_at   INTEGER NOT NULL,
		expires_at   INTEGER NOT NULL,
		revoked_at   INTEGER,
		last_used_at INTEGER
	) STRICT;
	CREATE TABLE audit_log (
		id      INTEGER PRIMARY KEY AUTOINCREMENT,
		at      INTEGER NOT NULL,
		actor   TEXT NOT NULL,   -- who: "token:NAME", "user:NAME", "enrollment:ID", "device:ID"
		action  TEXT NOT NULL,   -- what: "enrollment.create", "device.enroll", ...
		subject TEXT NOT NULL,   -- what it was done to: a device or code id
		detail  TEXT NOT NULL DEFAULT '{}' -- JSON object
	) STRICT;
	CREATE INDEX audit_log_at ON audit_log(at, id);`,
	// 6: token rotation. next_token_hash is a new token handed out but not
	// used yet: both work until the device first uses the new one, which
	// then replaces the old. rotate_requested: an operator asked the device
	// to rotate (it is told when it next connects).
	`ALTER TABLE devices ADD COLUMN next_token_hash BLOB;
	CREATE UNIQUE INDEX devices_next_token_hash ON devices(next_token_hash) WHERE next_token_hash IS NOT NULL;
	ALTER TABLE devices ADD COLUMN rotate_requested INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE devices ADD COLUMN token_rotated_at INTEGER; -- last new token handed out`,
	// 7: the sweep's TTL check. A bulk send to offline devices leaves
	// thousands of queued commands that are not due yet; with this index
	// the sweep reads only those whose TTL passed (received ones never
	// expire). Queries must repeat the WHERE clause verbatim
	// (unreceivedStates). The sweep no longer reads every open command,
	// so commands_open (migration 3), which nothing else used, goes.
	`CREATE INDEX commands_unreceived_expiry ON commands(expires_at)
		WHERE state IN ('queued', 'sent');
	DROP INDEX commands_open;`,
}

// migrate applies the missing migrations in one transaction, so a crash
// leaves the schema at a known version.
func migrate(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("create schema_version: %w", err)
	}
	var version int
	err = tx.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&version)
	switch {
	case err == sql.ErrNoRows:
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (0)`); err != nil {
			return fmt.Errorf("init schema_version: %w", err)
		}
	case err != nil:
		return fmt.Errorf("read schema_version: %w", err)
	}
	if version > len(migrations) {
		return fmt.Errorf("database schema version %d is newer than this fleethub (%d)", version, len(migrations))
	}
	for i := version; i < len(migrations); i++ {
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE schema_version SET version = ?`, len(migrations)); err != nil {
		return fmt.Errorf("set schema_version: %w", err)
	}
	return tx.Commit()
}
