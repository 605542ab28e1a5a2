package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Lifetimes of the generated certificates.
const (
	caLifetime     = 10 * 365 * 24 * time.Hour
	serverLifetime = 825 * 24 * time.Hour // the longest clients such as Apple's accept
	renewBefore    = 30 * 24 * time.Hour
	// backdate covers clocks a little behind the hub's (Pis without an
	// RTC boot with a stale clock until NTP catches up).
	backdate = time.Hour
)

// loadLocal loads or creates the CA and server certificate in dir.
func loadLocal(dir string, hosts []string, log *slog.Logger) (*tls.Config, *Info, error) {
	if dir == "" {
		return nil, nil, errors.New("certs: no data directory for the generated CA")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("certs: %w", err)
	}
	hostname, _ := os.Hostname() // best effort: a SAN and the CA's name
	now := time.Now()
	ca, created, err := loadOrCreateCA(dir, hostname, now, log)
	if err != nil {
		return nil, nil, err
	}
	sans := subjectAltNames(hostname, hosts, log)
	leaf, err := loadOrIssueServer(dir, ca, sans, now, log)
	if err != nil {
		return nil, nil, err
	}
	info := &Info{
		CAFile:        absPath(filepath.Join(dir, CAFileName)),
		CAFingerprint: Fingerprint(ca.cert.Raw),
		Generated:     created,
	}
	return serverConfig(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return leaf, nil }), info, nil
}

// authority is the local CA.
type authority struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// loadOrCreateCA never replaces an existing CA: agents trust it. A CA
// certificate without its key is an error for the operator to resolve.
func loadOrCreateCA(dir, hostname string, now time.Time, log *slog.Logger) (*authority, bool, error) {
	certPath, keyPath := filepath.Join(dir, CAFileName), filepath.Join(dir, CAKeyFileName)
	cert, err := readCert(certPath)
	if errors.Is(err, fs.ErrNotExist) {
		ca, err := createCA(certPath, keyPath, hostname, now)
		if err != nil {
			return nil, false, err
		}
		log.Info("created a local TLS CA", "file", certPath, "sha256", Fingerprint(ca.cert.Raw))
		return ca, true, nil
	}
	if err != nil {
		return nil, false, err
	}
	key, err := readKey(keyPath)
	if err != nil {
		return nil, false, fmt.Errorf("%w (to start over with a new CA, remove %s and %s; agents must then trust the new one)", err, certPath, keyPath)
	}
	if !samePublicKey(cert, key) {
		return nil, false, fmt.Errorf("certs: %s does not belong to %s", keyPath, certPath)
	}
	checkKeyMode(keyPath, log)
	if left := cert.NotAfter.Sub(now); left < renewBefore {
		log.Warn("the local TLS CA expires soon and is not renewed automatically; replace it and re-distribute it to agents",
			"file", certPath, "not_after", cert.NotAfter)
	}
	return &authority{cert: cert, key: key}, false, nil
}

func createCA(certPath, keyPath, hostname string, now time.Time) (*authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certs: generate CA key: %w", err)
	}
	name := "Fleetwire local CA"
	if hostname != "" {
		name += " (" + hostname + ")"
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Fleetwire"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true, // it signs server certificates only
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("certs: create CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certs: parse new CA: %w", err)
	}
	// Key first: ca.pem existing means the CA is complete, so a crash in
	// between leaves a state that the next start simply redoes.
	if err := writeKey(keyPath, key); err != nil {
		return nil, err
	}
	if err := writeAtomic(certPath, pemCert(der), 0o644); err != nil {
		return nil, err
	}
	return &authority{cert: cert, key: key}, nil
}

// loadOrIssueServer returns the server certificate chain (leaf, CA),
// issuing a new leaf when the one on disk does not fit.
func loadOrIssueServer(dir string, ca *authority, sans []string, now time.Time, log *slog.Logger) (*tls.Certificate, error) {
	certPath, keyPath := filepath.Join(dir, ServerFileName), filepath.Join(dir, ServerKeyFileName)
	leaf, key, reason := existingServer(certPath, keyPath, ca, sans, now)
	if reason == "" {
		checkKeyMode(keyPath, log)
	} else {
		var err error
		if leaf, key, err = issueServer(certPath, keyPath, ca, sans, now); err != nil {
			return nil, err
		}
		log.Info("issued a TLS server certificate", "reason", reason, "file", certPath,
			"hosts", strings.Join(sans, ","), "not_after", leaf.NotAfter.Format(time.DateOnly))
	}
	return &tls.Certificate{
		Certificate: [][]byte{leaf.Raw, ca.cert.Raw},
		PrivateKey:  key,
		Leaf:        leaf,
	}, nil
}

// existingServer loads the server pair and returns why it must be
// re-issued, or "" when it can be used as is.
func existingServer(certPath, keyPath string, ca *authority, sans []string, now time.Time) (*x509.Certificate, crypto.Signer, string) {
	leaf, err := readCert(certPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, "none yet"
	}
	if err != nil {
		return nil, nil, err.Error()
	}
	key, err := readKey(keyPath)
	switch {
	case err != nil:
		return nil, nil, err.Error()
	case !samePublicKey(leaf, key):
		return nil, nil, "key does not match certificate"
	case leaf.CheckSignatureFrom(ca.cert) != nil:
		return nil, nil, "not signed by the current CA"
	case leaf.NotAfter.Sub(now) < renewBefore:
		return nil, nil, "expires within 30 days"
	case !slices.Equal(certSANs(leaf), sans):
		return nil, nil, "host names changed"
	}
	return leaf, key, ""
}

func issueServer(certPath, keyPath string, ca *authority, sans []string, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: generate server key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	// A leaf outliving its CA would fail verification after the CA expires.
	notAfter := now.Add(serverLifetime)
	if ca.cert.NotAfter.Before(notAfter) {
		notAfter = ca.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: commonName(sans), Organization: []string{"Fleetwire"}},
		NotBefore:    now.Add(-backdate),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, s := range sans {
		if ip := net.ParseIP(s); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, s)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: create server certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: parse new server certificate: %w", err)
	}
	if err := writeKey(keyPath, key); err != nil {
		return nil, nil, err
	}
	if err := writeAtomic(certPath, pemCert(der), 0o644); err != nil {
		return nil, nil, err
	}
	return leaf, key, nil
}

// subjectAltNames returns the sorted, de-duplicated SANs: loopback names,
// the hostname and the configured hosts. IPs are in canonical form so the
// list compares equal to one read back from a certificate.
func subjectAltNames(hostname string, hosts []string, log *slog.Logger) []string {
	all := append([]string{"localhost", "127.0.0.1", "::1", hostname}, hosts...)
	set := map[string]bool{}
	for _, h := range all {
		h = strings.TrimSpace(h)
		if host, _, err := net.SplitHostPort(h); err == nil {
			h = host
		}
		h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			set[ip.String()] = true
			continue
		}
		h = strings.ToLower(strings.TrimSuffix(h, "."))
		if !isASCII(h) {
			// x509 wants IA5 (ASCII); an IDN must be given in its xn-- form.
			log.Warn("skipping a non-ASCII TLS host name; give its punycode (xn--) form", "host", h)
			continue
		}
		set[h] = true
	}
	out := make([]string, 0, len(set))
	for h := range set {
		out = append(out, h)
	}
	slices.Sort(out)
	return out
}

// certSANs lists a certificate's SANs in subjectAltNames' form.
func certSANs(c *x509.Certificate) []string {
	out := make([]string, 0, len(c.DNSNames)+len(c.IPAddresses))
	for _, d := range c.DNSNames {
		out = append(out, strings.ToLower(d))
	}
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// commonName picks a readable subject: the first real host name. Clients
// check SANs only, so this is for people reading the certificate.
func commonName(sans []string) string {
	for _, s := range sans {
		if s != "localhost" && net.ParseIP(s) == nil {
			return s
		}
	}
	return "fleethub"
}

func isASCII(s string) bool {
	for i := range len(s) {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func randomSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("certs: serial: %w", err)
	}
	return n, nil
}

func samePublicKey(c *x509.Certificate, key crypto.Signer) bool {
	pub, ok := c.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(key.Public())
}

// checkKeyMode warns about a private key others can read; it does not
// change the mode, which the operator may have chosen on purpose (e.g. a
// group-readable key for a sidecar).
func checkKeyMode(path string, log *slog.Logger) {
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("TLS private key is readable by other users; chmod 600 it", "file", path, "mode", fi.Mode().Perm().String())
	}
}

func readCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("certs: %s: no PEM certificate", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("certs: %s: %w", path, err)
	}
	return c, nil
}

func readKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("certs: %s: no PEM private key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("certs: %s: %w", path, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("certs: %s: unsupported key type %T", path, k)
	}
	return signer, nil
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("certs: encode key: %w", err)
	}
	return writeAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// writeAtomic replaces path with data so readers (and a crash) see the old
// file or the new one, never a part. The temp file gets perm before any
// byte of a key is written to it.
func writeAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("certs: write %s: %w", path, err)
	}
	return nil
}
