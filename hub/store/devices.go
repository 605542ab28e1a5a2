package store

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fleetwire/fleetwire/hub"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

const deviceColumns = `id, labels, created_at, revoked_at, last_seen, agent_version, transport, rotate_requested`

// authDeviceQuery also returns token_hash for the constant-time check.
const authDeviceQuery = `SELECT ` + deviceColumns + `, token_hash FROM devices WHERE token_hash = ?`

// nextAuthDeviceQuery finds a device by the new token of a rotation.
const nextAuthDeviceQuery = `SELECT ` + deviceColumns + `, next_token_hash FROM devices WHERE next_token_hash = ?`

// CreateDevice registers a device and returns it with its token. The token
// is not stored and cannot be shown again. ErrConflict if id exists.
func (s *Store) CreateDevice(ctx context.Context, id string, labels map[string]string) (hub.Device, string, error) {
	return s.insertDevice(ctx, s.db, id, labels)
}

// insertDevice is CreateDevice on db (the store or a transaction).
func (s *Store) insertDevice(ctx context.Context, db execer, id string, labels map[string]string) (hub.Device, string, error) {
	if err := ValidDeviceID(id); err != nil {
		return hub.Device{}, "", err
	}
	if err := ValidLabels(labels); err != nil {
		return hub.Device{}, "", err
	}
	if labels == nil {
		labels = map[string]string{}
	}
	lj, err := json.Marshal(labels)
	if err != nil {
		return hub.Device{}, "", fmt.Errorf("encode labels: %w", err)
	}
	token, hash := newToken(DeviceTokenPrefix)
	now := s.now().UTC()
	_, err = db.ExecContext(ctx,
		`INSERT INTO devices (id, labels, token_hash, created_at) VALUES (?, ?, ?, ?)`,
		id, string(lj), hash, unixNano(now))
	if isUniqueViolation(err) {
		return hub.Device{}, "", fmt.Errorf("device %s: %w", id, hub.ErrConflict)
	}
	if err != nil {
		return hub.Device{}, "", fmt.Errorf("insert device: %w", err)
	}
	d := hub.Device{ID: id, Labels: labels, CreatedAt: fromNano(unixNano(now)), Transport: TransportWS}
	return d, token, nil
}

// GetDevice returns one device; ErrNotFound if there is none.
func (s *Store) GetDevice(ctx context.Context, id string) (hub.Device, error) {
	row := s.db.QueryRowContext(ctx, `SELECT `+deviceColumns+` FROM devices WHERE id = ?`, id)
	d, err := scanDevice(row.Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return hub.Device{}, fmt.Errorf("device %s %w", id, hub.ErrNotFound)
	}
	if err != nil {
		return hub.Device{}, fmt.Errorf("get device: %w", err)
	}
	return d, nil
}

// ListDevices returns every device, sorted by id.
func (s *Store) ListDevices(ctx context.Context) ([]hub.Device, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+deviceColumns+` FROM devices ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	defer rows.Close()
	devices := []hub.Device{}
	for rows.Next() {
		d, err := scanDevice(rows.Scan)
		if err != nil {
			return nil, fmt.Errorf("list devices: %w", err)
		}
		devices = append(devices, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	return devices, nil
}

// AgentVersions lists the distinct agent versions devices have reported:
// a handful however large the fleet.
func (s *Store) AgentVersions(ctx context.Context) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT DISTINCT agent_version FROM devices WHERE agent_version != ''`)
	if err != nil {
		return nil, fmt.Errorf("agent versions: %w", err)
	}
	defer rows.Close()
	var versions []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("agent versions: %w", err)
		}
		versions = append(versions, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("agent versions: %w", err)
	}
	return versions, nil
}

// RevokeDevice marks a device revoked: its token stops working. Revoking
// twice keeps the first revocation time. The caller closes any live
// session. ErrNotFound if there is no such device.
func (s *Store) RevokeDevice(ctx context.Context, id string) error {
	res, err := s.db.ExecContext(ctx,
		`UPDATE devices SET revoked_at = coalesce(revoked_at, ?), next_token_hash = NULL WHERE id = ?`,
		unixNano(s.now()), id)
	return s.oneRow(res, err, "revoke device", id)
}

// Transports a device can use (hub.Device.Transport).
const (
	TransportWS   = "ws"
	TransportMQTT = "mqtt"
)

// SetDeviceTransport records how a device reaches the hub: TransportWS
// (the agent, the default) or TransportMQTT (the MQTT bridge).
// ErrNotFound if there is no such device.
func (s *Store) SetDeviceTransport(ctx context.Context, id, transport string) error {
	if transport != TransportWS && transport != TransportMQTT {
		return fmt.Errorf("%w: transport %q (want %s or %s)", hub.ErrInvalidInput, transport, TransportWS, TransportMQTT)
	}
	res, err := s.db.ExecContext(ctx, `UPDATE devices SET transport = ? WHERE id = ?`, transport, id)
	return s.oneRow(res, err, "set device transport", id)
}

// DeleteDevice removes a device and its token. ErrNotFound if there is none.
func (s *Store) DeleteDevice(ctx context.Context, id string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM devices WHERE id = ?`, id)
	return s.oneRow(res, err, "delete device", id)
}

// AuthenticateDevice returns the device that token belongs to.
// ErrUnauthorized for a malformed or unknown token, ErrRevoked (with the
// device) for a revoked one. A device's new token from RotateDeviceToken
// works too, and its first use retires the old one.
func (s *Store) AuthenticateDevice(ctx context.Context, token string) (hub.Device, error) {
	if !wellFormed(token, DeviceTokenPrefix) {
		return hub.Device{}, hub.ErrUnauthorized
	}
	hash := hashToken(token)
	d, err := s.deviceByHash(ctx, s.authStmt, hash)
	if errors.Is(err, hub.ErrUnauthorized) {
		d, err = s.deviceByHash(ctx, s.nextAuthStmt, hash)
		if errors.Is(err, hub.ErrUnauthorized) {
			// Promoted by a concurrent first use between the two lookups?
			d, err = s.deviceByHash(ctx, s.authStmt, hash)
		} else if err == nil {
			var promoted bool
			if promoted, err = s.promoteToken(ctx, d.ID, hash); err == nil && !promoted {
				// A concurrent use promoted it first (then it is the
				// current token), or the device was revoked meanwhile.
				d, err = s.deviceByHash(ctx, s.authStmt, hash)
			}
			d.RotateRequested = false
		}
	}
	if err != nil {
		return hub.Device{}, err
	}
	if d.Revoked {
		return d, hub.ErrRevoked
	}
	return d, nil
}

// deviceByHash runs a token lookup statement (token_hash or
// next_token_hash) and checks the stored hash in constant time.
func (s *Store) deviceByHash(ctx context.Context, stmt *sql.Stmt, hash []byte) (hub.Device, error) {
	var stored []byte
	d, err := scanDevice(func(dest ...any) error {
		return stmt.QueryRowContext(ctx, hash).Scan(append(dest, &stored)...)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return hub.Device{}, hub.ErrUnauthorized
	}
	if err != nil {
		return hub.Device{}, fmt.Errorf("authenticate device: %w", err)
	}
	// The index lookup is not constant time; this compare makes the final
	// decision not depend on an early-exit byte comparison.
	if subtle.ConstantTimeCompare(stored, hash) != 1 {
		return hub.Device{}, hub.ErrUnauthorized
	}
	return d, nil
}

// promoteToken makes a device's new token its only one; false if it was
// no longer pending (promoted by a concurrent use, or the device revoked).
func (s *Store) promoteToken(ctx context.Context, id string, hash []byte) (bool, error) {
	promoted := false
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE devices SET token_hash = next_token_hash, next_token_hash = NULL, rotate_requested = 0
			WHERE id = ? AND next_token_hash = ? AND revoked_at IS NULL`, id, hash)
		if err != nil {
			return fmt.Errorf("promote token: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		promoted = true
		return addAudit(ctx, tx, hub.AuditEntry{At: s.now(), Actor: "device:" + id, Action: "device.token_rotated", Subject: id})
	})
	return promoted, err
}

// RotateDeviceToken gives a device a new token and returns it (shown once).
// The old token keeps working until the new one is first used, so a device
// that loses the answer can ask again; asking again replaces the pending
// one. ErrNotFound for an unknown device, ErrRevoked for a revoked one.
func (s *Store) RotateDeviceToken(ctx context.Context, id, actor string) (string, error) {
	token, hash := newToken(DeviceTokenPrefix)
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var revoked, rotatedAt sql.NullInt64
		var requested bool
		err := tx.QueryRowContext(ctx, `SELECT revoked_at, rotate_requested, token_rotated_at FROM devices WHERE id = ?`, id).Scan(&revoked, &requested, &rotatedAt)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("device %s %w", id, hub.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("rotate token: %w", err)
		}
		if revoked.Valid {
			return hub.ErrRevoked
		}
		now := s.now()
		if !requested && rotatedAt.Valid && now.Sub(fromNano(rotatedAt.Int64)) < hub.MinTokenRotation {
			return fmt.Errorf("%w: a new token was handed out at %s; at most one per %s unless an operator asks",
				hub.ErrTooSoon, fromNano(rotatedAt.Int64).Format(time.RFC3339), hub.MinTokenRotation)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE devices SET next_token_hash = ?, token_rotated_at = ? WHERE id = ?`, hash, unixNano(now), id); err != nil {
			return fmt.Errorf("rotate token: %w", err)
		}
		return addAudit(ctx, tx, hub.AuditEntry{At: s.now(), Actor: actor, Action: "device.rotate_token", Subject: id})
	})
	if err != nil {
		return "", err
	}
	return token, nil
}

// RequestTokenRotation marks a device to rotate its token: its session is
// told at once by the caller, or at its next connect. ErrNotFound if there
// is no such device.
func (s *Store) RequestTokenRotation(ctx context.Context, id, actor string) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE devices SET rotate_requested = 1 WHERE id = ?`, id)
		if err := s.oneRow(res, err, "request token rotation", id); err != nil {
			return err
		}
		return addAudit(ctx, tx, hub.AuditEntry{At: s.now(), Actor: actor, Action: "device.rotate_requested", Subject: id})
	})
}

// oneRow turns an UPDATE/DELETE result into ErrNotFound when no row matched.
func (s *Store) oneRow(res sql.Result, err error, op, id string) error {
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if n == 0 {
		what := "device"
		if strings.Contains(op, "enrollment") {
			what = "enrollment code"
		}
		return fmt.Errorf("%s %s %w", what, id, hub.ErrNotFound)
	}
	return nil
}

// scanDevice reads deviceColumns through scan (a Row or Rows Scan).
func scanDevice(scan func(dest ...any) error) (hub.Device, error) {
	var (
		d                 hub.Device
		labels            string
		created           int64
		revoked, lastSeen sql.NullInt64
	)
	err := scan(&d.ID, &labels, &created, &revoked, &lastSeen, &d.AgentVersion, &d.Transport, &d.RotateRequested)
	if err != nil {
		return hub.Device{}, err
	}
	if err := json.Unmarshal([]byte(labels), &d.Labels); err != nil {
		return hub.Device{}, fmt.Errorf("device %s: decode labels: %w", d.ID, err)
	}
	if d.Labels == nil {
		d.Labels = map[string]string{}
	}
	d.CreatedAt = fromNano(created)
	d.RevokedAt = fromNullNano(revoked)
	d.Revoked = d.RevokedAt != nil
	d.LastSeen = fromNullNano(lastSeen)
	return d, nil
}

// isUniqueViolation reports a UNIQUE or PRIMARY KEY constraint failure,
// which is how the database tells us an id or name is taken.
func isUniqueViolation(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	return se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}
