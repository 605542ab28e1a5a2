package hub

import (
	"errors"
	"time"
)

// Enrollment errors: each tells the device's operator what to do.
var (
	ErrCodeUnknown = errors.New("enrollment code not recognised (mistyped, or never issued)")
	ErrCodeExpired = errors.New("enrollment code expired: ask for a new one (fleetctl enroll create)")
	ErrCodeUsedUp  = errors.New("enrollment code used up: every use was taken; ask for a new one")
	ErrCodeRevoked = errors.New("enrollment code revoked by an operator")
)

// Enrollment code limits.
const (
	DefaultEnrollTTL = time.Hour
	MaxEnrollTTL     = 30 * 24 * time.Hour
	MaxEnrollUses    = 10_000
)

// EnrollmentCode is a short-lived code a device trades for its own token
// (fleetagent enroll). Only the code's hash is stored.
type EnrollmentCode struct {
	ID         string            `json:"id"`
	Labels     map[string]string `json:"labels"`
	Uses       int               `json:"uses"`
	UsesLeft   int               `json:"uses_left"`
	CreatedBy  string            `json:"created_by"`
	CreatedAt  time.Time         `json:"created_at"`
	ExpiresAt  time.Time         `json:"expires_at"`
	RevokedAt  *time.Time        `json:"revoked_at,omitempty"`
	LastUsedAt *time.Time        `json:"last_used_at,omitempty"`
}

// State is "active", "expired", "used_up" or "revoked" at now.
func (c EnrollmentCode) State(now time.Time) string {
	switch {
	case c.RevokedAt != nil:
		return "revoked"
	case c.UsesLeft <= 0:
		return "used_up"
	case !now.Before(c.ExpiresAt):
		return "expired"
	}
	return "active"
}

// AuditEntry is one line of the audit log: who did what to what.
type AuditEntry struct {
	ID      int64             `json:"id"`
	At      time.Time         `json:"at"`
	Actor   string            `json:"actor"`   // "token:NAME", "user:NAME", "enrollment:ID", "device:ID"
	Action  string            `json:"action"`  // "enrollment.create", "enrollment.revoke", "device.enroll", ...
	Subject string            `json:"subject"` // a device or enrollment code id
	Detail  map[string]string `json:"detail,omitempty"`
}
