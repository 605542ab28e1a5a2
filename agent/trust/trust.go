// Package trust builds the agent's TLS client config for talking to the
// hub. The hub is always verified: against a CA file, against a pinned
// certificate fingerprint, or against the system roots, never skipped.
package trust

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// ClientConfig returns a TLS 1.2+ client config that verifies the hub for
// serverName (a host name or IP address; required).
//
//   - caFile set: the hub's chain must lead to a CA certificate in caFile
//     (PEM, one or more certificates).
//   - pinSHA256 set: some certificate in the chain the hub presents (its
//     leaf, an intermediate or the CA) must have this SHA-256 fingerprint
//     (hex; colons, spaces, case and a "sha256:" prefix are ignored), and
//     the leaf must chain to that certificate and be valid for serverName
//     at the current time. The pinned certificate acts as the only root.
//   - both set: both checks must pass.
//   - neither set: the system roots, as for any public server.
func ClientConfig(serverName, caFile, pinSHA256 string) (*tls.Config, error) {
	if serverName == "" {
		return nil, errors.New("trust: no server name to verify the hub's certificate against")
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if caFile != "" {
		pool, err := loadCAFile(caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if pinSHA256 == "" {
		return cfg, nil
	}
	pin, err := parsePin(pinSHA256)
	if err != nil {
		return nil, err
	}
	if caFile == "" {
		// The default verification needs a root the agent does not have;
		// VerifyConnection below replaces it with a full verification
		// rooted at the pinned certificate. crypto/tls calls
		// VerifyConnection on every handshake, resumed ones included.
		cfg.InsecureSkipVerify = true
	}
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		now := time.Now()
		if cfg.Time != nil {
			now = cfg.Time()
		}
		return verifyPinned(cs, pin, serverName, now)
	}
	return cfg, nil
}

// Fingerprint returns the SHA-256 of a certificate's DER encoding as
// lowercase hex without separators, the form pins are written in.
func Fingerprint(certDER []byte) string {
	sum := sha256.Sum256(certDER)
	return hex.EncodeToString(sum[:])
}

func loadCAFile(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("trust: hub CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("trust: hub CA %s: no PEM certificates in it", path)
	}
	return pool, nil
}

// parsePin accepts the forms people copy from tools: "AB:CD:...",
// "abcd...", "sha256:abcd...".
func parsePin(s string) ([]byte, error) {
	clean := strings.ToLower(strings.TrimSpace(s))
	clean = strings.TrimPrefix(clean, "sha256:")
	clean = strings.NewReplacer(":", "", " ", "").Replace(clean)
	pin, err := hex.DecodeString(clean)
	if err != nil || len(pin) != sha256.Size {
		return nil, fmt.Errorf("trust: pinned fingerprint %q is not a SHA-256 in hex (64 hex digits)", s)
	}
	return pin, nil
}

// verifyPinned checks the handshake against the pin. When crypto/tls has
// already verified the chain against a CA file, finding the pin in a
// verified chain is enough; otherwise the leaf is verified here with the
// pinned certificate as the only root.
func verifyPinned(cs tls.ConnectionState, pin []byte, serverName string, now time.Time) error {
	for _, chain := range cs.VerifiedChains {
		for _, c := range chain {
			if matches(c, pin) {
				return nil
			}
		}
	}
	certs := cs.PeerCertificates
	if len(certs) == 0 {
		return errors.New("trust: the hub presented no certificate")
	}
	idx := -1
	for i, c := range certs {
		if matches(c, pin) {
			idx = i
			break
		}
	}
	if idx < 0 {
		return fmt.Errorf("trust: no certificate the hub presented has the pinned SHA-256 (its leaf is %s)", Fingerprint(certs[0].Raw))
	}
	if len(cs.VerifiedChains) > 0 {
		// Verified against the CA file, but the pinned certificate is not on
		// the verified path: the two settings disagree about the hub.
		return errors.New("trust: the pinned certificate is not in the chain verified against the CA file")
	}
	roots := x509.NewCertPool()
	roots.AddCert(certs[idx])
	inter := x509.NewCertPool()
	for i, c := range certs[1:] {
		if i+1 != idx {
			inter.AddCert(c)
		}
	}
	_, err := certs[0].Verify(x509.VerifyOptions{
		DNSName:       serverName,
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return fmt.Errorf("trust: hub certificate (pinned): %w", err)
	}
	return nil
}

func matches(c *x509.Certificate, pin []byte) bool {
	sum := sha256.Sum256(c.Raw)
	return bytes.Equal(sum[:], pin)
}
