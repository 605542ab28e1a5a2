package store

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"strings"
)

// Token prefixes tell a leaked secret's kind at a glance (and let secret
// scanners find them).
const (
	DeviceTokenPrefix = "fwd_"
	APITokenPrefix    = "fwa_"
)

// tokenBytes is the token's entropy: 256 bits.
const tokenBytes = 32

// encodedLen is the length of a token's base64url body without padding.
var encodedLen = base64.RawURLEncoding.EncodedLen(tokenBytes)

// newToken returns a fresh token with prefix and the SHA-256 that is stored
// in its place.
func newToken(prefix string) (token string, hash []byte) {
	var b [tokenBytes]byte
	// crypto/rand.Read never returns an error (Go 1.24+); it crashes the
	// program rather than return weak randomness.
	rand.Read(b[:])
	token = prefix + base64.RawURLEncoding.EncodeToString(b[:])
	return token, hashToken(token)
}

func hashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// wellFormed reports whether token has prefix and a 256-bit body, so junk
// is refused before it costs a query.
func wellFormed(token, prefix string) bool {
	body, ok := strings.CutPrefix(token, prefix)
	if !ok || len(body) != encodedLen {
		return false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(body)
	return err == nil && len(b) == tokenBytes
}

// newRandomSecret returns 256 random bits, base64url without padding.
func newRandomSecret() []byte {
	var b [tokenBytes]byte
	rand.Read(b[:])
	return []byte(base64.RawURLEncoding.EncodeToString(b[:]))
}
