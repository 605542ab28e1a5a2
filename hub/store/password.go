package store

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"

	"github.com/fleetwire/fleetwire/hub"
)

// Password length limits. The upper bound only stops absurd inputs; the
// KDF's cost does not depend much on the length.
const (
	MinPasswordLen = 12   // characters (runes)
	MaxPasswordLen = 1024 // bytes
)

// PasswordParams are argon2id's cost parameters (RFC 9106).
type PasswordParams struct {
	Time    uint32 // passes over memory
	Memory  uint32 // KiB
	Threads uint8
}

// DefaultPasswordParams cost about 0.1 s on a laptop core and well under a
// second on a Raspberry Pi 3/4, with 32 MiB per hash: a hub on a Pi can
// afford it, an offline guesser with a stolen database cannot go fast.
// (RFC 9106's second recommendation is t=3, m=64 MiB; we halve the memory
// for 1 GiB boards and keep t=3.) Hashes carry their parameters, so these
// can rise later without invalidating stored passwords.
func DefaultPasswordParams() PasswordParams {
	return PasswordParams{Time: 3, Memory: 32 << 10, Threads: 1}
}

const (
	saltLen = 16
	keyLen  = 32
	// maxConcurrentHashes bounds the KDF's memory use (Memory KiB each)
	// however many logins arrive at once.
	maxConcurrentHashes = 2
)

// validPassword checks a new password's length.
func validPassword(pw string) error {
	if n := utf8.RuneCountInString(pw); n < MinPasswordLen {
		return fmt.Errorf("%w: password has %d characters, need at least %d", hub.ErrInvalidInput, n, MinPasswordLen)
	}
	if len(pw) > MaxPasswordLen {
		return fmt.Errorf("%w: password is %d bytes, at most %d", hub.ErrInvalidInput, len(pw), MaxPasswordLen)
	}
	return nil
}

// hasher runs argon2id with a bound on concurrent hashes.
type hasher struct {
	params PasswordParams
	sem    chan struct{}
}

func newHasher(p PasswordParams) *hasher {
	return &hasher{params: p, sem: make(chan struct{}, maxConcurrentHashes)}
}

// acquire takes a hashing slot or fails when ctx ends first.
func (h *hasher) acquire(ctx context.Context) error {
	select {
	case h.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait to hash password: %w", context.Cause(ctx))
	}
}

func (h *hasher) release() { <-h.sem }

// hash returns the PHC string $argon2id$v=19$m=..,t=..,p=..$salt$key.
func (h *hasher) hash(ctx context.Context, pw string) (string, error) {
	if err := h.acquire(ctx); err != nil {
		return "", err
	}
	defer h.release()
	salt := make([]byte, saltLen)
	rand.Read(salt) // never fails (Go 1.24+)
	p := h.params
	key := argon2.IDKey([]byte(pw), salt, p.Time, p.Memory, p.Threads, keyLen)
	return h.encode(salt, key), nil
}

// dummy returns a well-formed hash with the current parameters and random
// salt and key: verifying against it costs what a real check costs and
// never matches, without hashing anything up front.
func (h *hasher) dummy() string {
	salt, key := make([]byte, saltLen), make([]byte, keyLen)
	rand.Read(salt)
	rand.Read(key)
	return h.encode(salt, key)
}

func (h *hasher) encode(salt, key []byte) string {
	p, b64 := h.params, base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key))
}

// verify reports whether pw matches encoded, comparing in constant time.
func (h *hasher) verify(ctx context.Context, encoded, pw string) (bool, error) {
	p, salt, want, err := parseHash(encoded)
	if err != nil {
		return false, err
	}
	if err := h.acquire(ctx); err != nil {
		return false, err
	}
	defer h.release()
	got := argon2.IDKey([]byte(pw), salt, p.Time, p.Memory, p.Threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// parseHash splits a PHC argon2id string into its parts.
func parseHash(encoded string) (PasswordParams, []byte, []byte, error) {
	var p PasswordParams
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return p, nil, nil, errors.New("password hash: not an argon2id PHC string")
	}
	var v int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return p, nil, nil, fmt.Errorf("password hash: unsupported version %q", parts[2])
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &p.Threads); err != nil {
		return p, nil, nil, fmt.Errorf("password hash: parameters %q: %w", parts[3], err)
	}
	if p.Time == 0 || p.Threads == 0 || p.Memory < 8*uint32(p.Threads) {
		return p, nil, nil, fmt.Errorf("password hash: bad parameters %q", parts[3])
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil {
		return p, nil, nil, fmt.Errorf("password hash: salt: %w", err)
	}
	key, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil || len(key) == 0 {
		return p, nil, nil, fmt.Errorf("password hash: key: %v", err)
	}
	return p, salt, key, nil
}
