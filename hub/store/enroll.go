package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fleetwire/fleetwire/hub"
)

// EnrollCodePrefix marks enrollment codes.
const EnrollCodePrefix = "fwe_"

// enrollCodeBytes is a code's entropy: 128 bits, 26 base32 characters.
const enrollCodeBytes = 16

var codeEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

func newEnrollCode() (code string, hash []byte) {
	var b [enrollCodeBytes]byte
	rand.Read(b[:])
	code = EnrollCodePrefix + codeEncoding.EncodeToString(b[:])
	return code, hashToken(code)
}

// normalizeCode accepts a code as typed: surrounding space, any case.
func normalizeCode(code string) (string, bool) {
	code = strings.TrimSpace(code)
	n := len(EnrollCodePrefix)
	if len(code) < n || !strings.EqualFold(code[:n], EnrollCodePrefix) {
		return "", false
	}
	body := strings.ToUpper(code[n:])
	if b, err := codeEncoding.DecodeString(body); err != nil || len(b) != enrollCodeBytes {
		return "", false
	}
	return EnrollCodePrefix + body, true
}

const enrollColumns = `id, labels, uses, uses_left, created_by, created_at, expires_at, revoked_at, last_used_at`

// CreateEnrollmentCode issues a code for uses enrollments within ttl; the
// devices it enrolls get labels. The code is returned once and only its
// hash is kept. by names the operator (audit log).
func (s *Store) CreateEnrollmentCode(ctx context.Context, labels map[string]string, uses int, ttl time.Duration, by string) (hub.EnrollmentCode, string, error) {
	if uses < 1 || uses > hub.MaxEnrollUses {
		return hub.EnrollmentCode{}, "", fmt.Errorf("%w: uses %d not in 1..%d", hub.ErrInvalidInput, uses, hub.MaxEnrollUses)
	}
	if ttl < time.Minute || ttl > hub.MaxEnrollTTL {
		return hub.EnrollmentCode{}, "", fmt.Errorf("%w: ttl %s not in 1m..%s", hub.ErrInvalidInput, ttl, hub.MaxEnrollTTL)
	}
	if err := ValidLabels(labels); err != nil {
		return hub.EnrollmentCode{}, "", err
	}
	if labels == nil {
		labels = map[string]string{}
	}
	lj, err := json.Marshal(labels)
	if err != nil {
		return hub.EnrollmentCode{}, "", fmt.Errorf("encode labels: %w", err)
	}
	var idb [5]byte
	rand.Read(idb[:])
	now := s.now().UTC()
	c := hub.EnrollmentCode{ID: "e_" + hex.EncodeToString(idb[:]), Labels: labels, Uses: uses, UsesLeft: uses,
		CreatedBy: by, CreatedAt: fromNano(unixNano(now)), ExpiresAt: fromNano(unixNano(now.Add(ttl)))}
	code, hash := newEnrollCode()
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO enrollment_codes (id, code_hash, labels, uses, uses_left, created_by, created_at, expires_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, c.ID, hash, string(lj), uses, uses, by, unixNano(c.CreatedAt), unixNano(c.ExpiresAt)); err != nil {
			return fmt.Errorf("insert enrollment code: %w", err)
		}
		return addAudit(ctx, tx, hub.AuditEntry{At: now, Actor: by, Action: "enrollment.create", Subject: c.ID,
			Detail: map[string]string{"uses": fmt.Sprint(uses), "expires_at": c.ExpiresAt.Format(time.RFC3339), "labels": string(lj)}})
	})
	if err != nil {
		return hub.EnrollmentCode{}, "", err
	}
	return c, code, nil
}

// ListEnrollmentCodes returns every code, newest first.
func (s *Store) ListEnrollmentCodes(ctx context.Context) ([]hub.EnrollmentCode, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+enrollColumns+` FROM enrollment_codes ORDER BY created_at DESC, id`)
	if err != nil {
		return nil, fmt.Errorf("list enrollment codes: %w", err)
	}
	defer rows.Close()
	var out []hub.EnrollmentCode
	for rows.Next() {
		c, err := scanEnrollCode(rows.Scan)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// RevokeEnrollmentCode stops a code from enrolling anything more.
// ErrNotFound if there is no such code; revoking twice is not an error.
func (s *Store) RevokeEnrollmentCode(ctx context.Context, id, by string) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE enrollment_codes SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?`, unixNano(s.now()), id)
		if err := s.oneRow(res, err, "revoke enrollment code", id); err != nil {
			return err
		}
		return addAudit(ctx, tx, hub.AuditEntry{At: s.now(), Actor: by, Action: "enrollment.revoke", Subject: id})
	})
}

// Enroll trades a code for a new device deviceID with the code's labels
// and returns the device and its token. The code's state decides: unknown,
// expired, used up or revoked codes give ErrCode*; a taken id gives
// ErrConflict and leaves the code's uses alone. detail goes to the audit
// log (remote address, agent version).
func (s *Store) Enroll(ctx context.Context, code, deviceID string, detail map[string]string) (hub.Device, string, error) {
	norm, ok := normalizeCode(code)
	if !ok {
		return hub.Device{}, "", hub.ErrCodeUnknown
	}
	if err := ValidDeviceID(deviceID); err != nil {
		return hub.Device{}, "", err
	}
	var dev hub.Device
	var token string
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		c, err := scanEnrollCode(tx.QueryRowContext(ctx, `SELECT `+enrollColumns+` FROM enrollment_codes WHERE code_hash = ?`, hashToken(norm)).Scan)
		if errors.Is(err, sql.ErrNoRows) {
			return hub.ErrCodeUnknown
		}
		if err != nil {
			return err
		}
		now := s.now()
		switch c.State(now) {
		case "revoked":
			return hub.ErrCodeRevoked
		case "used_up":
			return hub.ErrCodeUsedUp
		case "expired":
			return hub.ErrCodeExpired
		}
		dev, token, err = s.insertDevice(ctx, tx, deviceID, c.Labels)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE enrollment_codes SET uses_left = uses_left - 1, last_used_at = ? WHERE id = ?`, unixNano(now), c.ID); err != nil {
			return fmt.Errorf("use enrollment code: %w", err)
		}
		return addAudit(ctx, tx, hub.AuditEntry{At: now, Actor: "enrollment:" + c.ID, Action: "device.enroll", Subject: deviceID, Detail: detail})
	})
	if err != nil {
		return hub.Device{}, "", err
	}
	return dev, token, nil
}

func scanEnrollCode(scan func(dest ...any) error) (hub.EnrollmentCode, error) {
	var c hub.EnrollmentCode
	var labels string
	var created, expires int64
	var revoked, used sql.NullInt64
	if err := scan(&c.ID, &labels, &c.Uses, &c.UsesLeft, &c.CreatedBy, &created, &expires, &revoked, &used); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return c, err
		}
		return c, fmt.Errorf("scan enrollment code: %w", err)
	}
	if err := json.Unmarshal([]byte(labels), &c.Labels); err != nil {
		return c, fmt.Errorf("decode labels: %w", err)
	}
	c.CreatedAt, c.ExpiresAt = fromNano(created), fromNano(expires)
	c.RevokedAt, c.LastUsedAt = fromNullNano(revoked), fromNullNano(used)
	return c, nil
}

// AddAudit appends one entry to the audit log.
func (s *Store) AddAudit(ctx context.Context, e hub.AuditEntry) error {
	return addAudit(ctx, s.db, e)
}

func addAudit(ctx context.Context, db execer, e hub.AuditEntry) error {
	if e.Detail == nil {
		e.Detail = map[string]string{}
	}
	dj, err := json.Marshal(e.Detail)
	if err != nil {
		return fmt.Errorf("encode audit detail: %w", err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO audit_log (at, actor, action, subject, detail) VALUES (?, ?, ?, ?, ?)`,
		unixNano(e.At), e.Actor, e.Action, e.Subject, string(dj)); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// ListAudit returns up to limit entries (default 100, at most 1000),
// newest first, older than beforeID when it is not 0.
func (s *Store) ListAudit(ctx context.Context, limit int, beforeID int64) ([]hub.AuditEntry, error) {
	if limit <= 0 || limit > 1000 {
		limit = min(max(limit, 100), 1000)
	}
	q := `SELECT id, at, actor, action, subject, detail FROM audit_log`
	args := []any{}
	if beforeID > 0 {
		q += ` WHERE id < ?`
		args = append(args, beforeID)
	}
	q += ` ORDER BY id DESC LIMIT ?`
	rows, err := s.db.QueryContext(ctx, q, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	defer rows.Close()
	var out []hub.AuditEntry
	for rows.Next() {
		var e hub.AuditEntry
		var at int64
		var detail string
		if err := rows.Scan(&e.ID, &at, &e.Actor, &e.Action, &e.Subject, &detail); err != nil {
			return nil, fmt.Errorf("scan audit: %w", err)
		}
		e.At = fromNano(at)
		if err := json.Unmarshal([]byte(detail), &e.Detail); err != nil {
			return nil, fmt.Errorf("decode audit detail: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// inTx runs fn in a transaction, committed if fn returns nil.
func (s *Store) inTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}
