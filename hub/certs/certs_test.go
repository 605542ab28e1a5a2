package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, nil))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// handshake serves one TLS connection with srv on loopback and returns
// what the client saw, or the client's handshake error.
func handshake(t *testing.T, srv, cli *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s := tls.Server(c, srv)
		_ = s.Handshake() // the client reports the outcome
		_, _ = io.Copy(io.Discard, s)
		s.Close()
	}()
	defer func() { <-done }()
	c, err := tls.Dial("tcp", ln.Addr().String(), cli)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	return c.ConnectionState(), nil
}

func caPool(t *testing.T, caFile string) *x509.CertPool {
	t.Helper()
	data, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(data) {
		t.Fatal("no CA in", caFile)
	}
	return p
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func parsePEMCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(readFile(t, path))
	if block == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestGenerateOnFirstStart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data") // Load creates it
	cfg, info, err := Load(dir, "", "", []string{"hub.example.com", "10.1.2.3", "hub.example.com:8443"}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	if !info.Generated {
		t.Error("Generated = false on first start")
	}
	if info.CAFile != filepath.Join(dir, "ca.pem") || !filepath.IsAbs(info.CAFile) {
		t.Errorf("CAFile = %q", info.CAFile)
	}
	ca := parsePEMCert(t, info.CAFile)
	sum := sha256.Sum256(ca.Raw)
	if want := hex.EncodeToString(sum[:]); info.CAFingerprint != want {
		t.Errorf("CAFingerprint = %q, want %q", info.CAFingerprint, want)
	}
	host, _ := os.Hostname()
	if want := "Fleetwire local CA (" + host + ")"; ca.Subject.CommonName != want {
		t.Errorf("CA CN = %q, want %q", ca.Subject.CommonName, want)
	}
	if !ca.IsCA || ca.PublicKeyAlgorithm != x509.ECDSA || ca.PublicKey.(*ecdsa.PublicKey).Curve != elliptic.P256() {
		t.Errorf("CA is not an ECDSA P-256 CA: IsCA=%v alg=%v", ca.IsCA, ca.PublicKeyAlgorithm)
	}
	if life := ca.NotAfter.Sub(ca.NotBefore); life < 3650*24*time.Hour {
		t.Errorf("CA lifetime %s, want 10 years", life)
	}
	for _, name := range []string{"ca-key.pem", "server-key.pem"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", name, fi.Mode().Perm())
		}
	}

	st, err := handshake(t, cfg, &tls.Config{RootCAs: caPool(t, info.CAFile), ServerName: "localhost"})
	if err != nil {
		t.Fatalf("handshake trusting ca.pem: %v", err)
	}
	leaf := st.PeerCertificates[0]
	if len(st.PeerCertificates) != 2 || !bytes.Equal(st.PeerCertificates[1].Raw, ca.Raw) {
		t.Errorf("chain does not end with the CA (pinning the CA needs it): %d certs", len(st.PeerCertificates))
	}
	wantSANs := []string{"10.1.2.3", "127.0.0.1", "::1", "hub.example.com", "localhost", strings.ToLower(host)}
	slices.Sort(wantSANs)
	if got := certSANs(leaf); !slices.Equal(got, slices.Compact(wantSANs)) {
		t.Errorf("SANs = %q, want %q", got, wantSANs)
	}
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life < 825*24*time.Hour || life > 826*24*time.Hour {
		t.Errorf("server lifetime %s, want about 825 days", life)
	}
	for _, name := range []string{"hub.example.com", "10.1.2.3", "::1"} {
		if err := leaf.VerifyHostname(name); err != nil {
			t.Errorf("leaf not valid for %s: %v", name, err)
		}
	}
	if _, err := handshake(t, cfg, &tls.Config{RootCAs: caPool(t, info.CAFile), ServerName: "localhost", MaxVersion: tls.VersionTLS11}); err == nil {
		t.Error("TLS 1.1 handshake succeeded; want TLS 1.2 minimum")
	}
}

func TestReloadFromDisk(t *testing.T) {
	dir := t.TempDir()
	_, first, err := Load(dir, "", "", nil, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	serverPEM := readFile(t, filepath.Join(dir, "server.pem"))
	cfg, second, err := Load(dir, "", "", nil, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	if second.Generated {
		t.Error("Generated = true on the second start")
	}
	if second.CAFingerprint != first.CAFingerprint {
		t.Errorf("CA changed across restarts: %s -> %s", first.CAFingerprint, second.CAFingerprint)
	}
	if !bytes.Equal(serverPEM, readFile(t, filepath.Join(dir, "server.pem"))) {
		t.Error("server certificate re-issued though nothing changed")
	}
	st, err := handshake(t, cfg, &tls.Config{RootCAs: caPool(t, second.CAFile), ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(serverPEM)
	if !bytes.Equal(st.PeerCertificates[0].Raw, block.Bytes) {
		t.Error("served leaf is not server.pem")
	}
}

func TestSANChangeReissuesWithSameCA(t *testing.T) {
	dir := t.TempDir()
	_, first, err := Load(dir, "", "", []string{"old.example"}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	caPEM := readFile(t, filepath.Join(dir, "ca.pem"))
	oldLeaf := parsePEMCert(t, filepath.Join(dir, "server.pem"))

	cfg, second, err := Load(dir, "", "", []string{"new.example"}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	if second.Generated || second.CAFingerprint != first.CAFingerprint || !bytes.Equal(caPEM, readFile(t, filepath.Join(dir, "ca.pem"))) {
		t.Fatal("CA replaced on a host name change")
	}
	newLeaf := parsePEMCert(t, filepath.Join(dir, "server.pem"))
	if newLeaf.SerialNumber.Cmp(oldLeaf.SerialNumber) == 0 {
		t.Fatal("server certificate not re-issued")
	}
	if err := newLeaf.VerifyHostname("old.example"); err == nil {
		t.Error("new leaf still names old.example")
	}
	if _, err := handshake(t, cfg, &tls.Config{RootCAs: caPool(t, second.CAFile), ServerName: "new.example"}); err != nil {
		t.Errorf("handshake for new.example: %v", err)
	}
	if _, err := handshake(t, cfg, &tls.Config{RootCAs: caPool(t, second.CAFile), ServerName: "old.example"}); err == nil {
		t.Error("handshake for old.example succeeded")
	}
}

// TestNearExpiryReissues plants a leaf that expires in 10 days.
func TestNearExpiryReissues(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := Load(dir, "", "", nil, testLog(t)); err != nil {
		t.Fatal(err)
	}
	ca := parsePEMCert(t, filepath.Join(dir, "ca.pem"))
	caKey, err := readKey(filepath.Join(dir, "ca-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	old := parsePEMCert(t, filepath.Join(dir, "server.pem"))
	key, err := readKey(filepath.Join(dir, "server-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := *old
	tmpl.SerialNumber = big.NewInt(42)
	tmpl.NotAfter = time.Now().Add(10 * 24 * time.Hour)
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, ca, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "server.pem"), pemCert(der), 0o644); err != nil {
		t.Fatal(err)
	}

	if _, _, err := Load(dir, "", "", nil, testLog(t)); err != nil {
		t.Fatal(err)
	}
	leaf := parsePEMCert(t, filepath.Join(dir, "server.pem"))
	if leaf.SerialNumber.Int64() == 42 || time.Until(leaf.NotAfter) < 800*24*time.Hour {
		t.Fatalf("near-expiry leaf kept: serial %v, not after %v", leaf.SerialNumber, leaf.NotAfter)
	}
	if err := leaf.CheckSignatureFrom(ca); err != nil {
		t.Fatalf("re-issued leaf not from the same CA: %v", err)
	}
}

func TestBrokenServerFilesReissued(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := Load(dir, "", "", nil, testLog(t)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "server-key.pem"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, info, err := Load(dir, "", "", nil, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := handshake(t, cfg, &tls.Config{RootCAs: caPool(t, info.CAFile), ServerName: "localhost"}); err != nil {
		t.Fatal(err)
	}
}

func TestCAWithoutKeyIsAnError(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := Load(dir, "", "", nil, testLog(t)); err != nil {
		t.Fatal(err)
	}
	caPEM := readFile(t, filepath.Join(dir, "ca.pem"))
	if err := os.Remove(filepath.Join(dir, "ca-key.pem")); err != nil {
		t.Fatal(err)
	}
	_, _, err := Load(dir, "", "", nil, testLog(t))
	if err == nil || !strings.Contains(err.Error(), "ca-key.pem") {
		t.Fatalf("err = %v, want an error naming ca-key.pem", err)
	}
	if !bytes.Equal(caPEM, readFile(t, filepath.Join(dir, "ca.pem"))) {
		t.Fatal("ca.pem replaced")
	}
}

// writePair writes a self-signed certificate for name and its key.
func writePair(t *testing.T, dir, name string) (certFile, keyFile string, der []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pemCert(der), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeKey(keyFile, key); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, der
}

func TestConfiguredPairServedAndReloaded(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, der1 := writePair(t, dir, "one.example")
	dataDir := filepath.Join(dir, "data")
	cfg, info, err := Load(dataDir, certFile, keyFile, nil, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	if *info != (Info{}) {
		t.Errorf("Info = %+v, want empty for a configured pair", *info)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "ca.pem")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a CA was generated although a pair is configured (stat: %v)", err)
	}
	st, err := handshake(t, cfg, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(st.PeerCertificates[0].Raw, der1) {
		t.Fatal("not serving the configured certificate")
	}

	// Renewal: new files on disk, marked with a distinct mtime so the
	// change is visible even on file systems with coarse timestamps.
	_, _, der2 := writePair(t, dir, "two.example")
	later := time.Now().Add(time.Minute)
	for _, f := range []string{certFile, keyFile} {
		if err := os.Chtimes(f, later, later); err != nil {
			t.Fatal(err)
		}
	}
	st, err = handshake(t, cfg, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(st.PeerCertificates[0].Raw, der2) {
		t.Fatal("renewed certificate not picked up")
	}

	// A broken renewal keeps the last good certificate.
	if err := os.WriteFile(certFile, []byte("not pem"), 0o644); err != nil {
		t.Fatal(err)
	}
	evenLater := later.Add(time.Minute)
	if err := os.Chtimes(certFile, evenLater, evenLater); err != nil {
		t.Fatal(err)
	}
	st, err = handshake(t, cfg, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(st.PeerCertificates[0].Raw, der2) {
		t.Fatal("broken renewal replaced the served certificate")
	}
}

func TestConfiguredPairErrors(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := writePair(t, dir, "x.example")
	if _, _, err := Load(dir, certFile, "", nil, nil); err == nil {
		t.Error("cert without key accepted")
	}
	if _, _, err := Load(dir, "", keyFile, nil, nil); err == nil {
		t.Error("key without cert accepted")
	}
	if _, _, err := Load(dir, certFile, filepath.Join(dir, "missing.key"), nil, nil); err == nil {
		t.Error("missing key file accepted")
	}
	if _, _, err := Load(dir, keyFile, certFile, nil, nil); err == nil {
		t.Error("swapped files accepted")
	}
}

func TestFingerprint(t *testing.T) {
	if got, want := Fingerprint([]byte("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; got != want {
		t.Fatalf("Fingerprint = %s, want %s", got, want)
	}
}
