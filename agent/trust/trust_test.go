package trust

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/hub/certs"
)

// hub is a hub's generated TLS material in a temp dir.
type hub struct {
	dir  string
	srv  *tls.Config
	info *certs.Info
}

func newHub(t *testing.T) hub {
	t.Helper()
	dir := t.TempDir()
	srv, info, err := certs.Load(dir, "", "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return hub{dir: dir, srv: srv, info: info}
}

func (h hub) leafDER(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(h.dir, certs.ServerFileName))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatal("server.pem: no PEM")
	}
	return block.Bytes
}

// expiredServer returns a server config presenting a leaf for localhost
// that the hub's CA signed but that expired yesterday.
func (h hub) expiredServer(t *testing.T) *tls.Config {
	t.Helper()
	ca, err := tls.LoadX509KeyPair(filepath.Join(h.dir, certs.CAFileName), filepath.Join(h.dir, certs.CAKeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(ca.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	leafKey, err := tls.LoadX509KeyPair(filepath.Join(h.dir, certs.ServerFileName), filepath.Join(h.dir, certs.ServerKeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-48 * time.Hour),
		NotAfter:     time.Now().Add(-24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, leafKey.Leaf.PublicKey, ca.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{
		Certificate: [][]byte{der, caCert.Raw},
		PrivateKey:  leafKey.PrivateKey,
	}}}
}

// forgedChain presents other's leaf followed by h's CA certificate: the
// pinned fingerprint is in the chain, but nothing links the leaf to it.
func forgedChain(t *testing.T, h, other hub) *tls.Config {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(filepath.Join(other.dir, certs.ServerFileName), filepath.Join(other.dir, certs.ServerKeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := tls.LoadX509KeyPair(filepath.Join(h.dir, certs.CAFileName), filepath.Join(h.dir, certs.CAKeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	pair.Certificate = [][]byte{pair.Certificate[0], ca.Certificate[0]}
	return &tls.Config{Certificates: []tls.Certificate{pair}}
}

// handshake runs one real TLS handshake over loopback and returns the
// client's error.
func handshake(t *testing.T, srv, cli *tls.Config) error {
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
		if s.Handshake() == nil {
			_, _ = io.Copy(io.Discard, s)
		}
		s.Close()
	}()
	defer func() { <-done }()
	c, err := tls.Dial("tcp", ln.Addr().String(), cli)
	if err != nil {
		return err
	}
	return c.Close()
}

func client(t *testing.T, serverName, caFile, pin string) *tls.Config {
	t.Helper()
	cfg, err := ClientConfig(serverName, caFile, pin)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.InsecureSkipVerify && cfg.VerifyConnection == nil {
		t.Fatal("verification skipped without a replacement check")
	}
	if cfg.MinVersion < tls.VersionTLS12 {
		t.Fatalf("MinVersion = %x", cfg.MinVersion)
	}
	return cfg
}

// colonUpper writes a fingerprint the way openssl prints it.
func colonUpper(fp string) string {
	var parts []string
	for i := 0; i < len(fp); i += 2 {
		parts = append(parts, strings.ToUpper(fp[i:i+2]))
	}
	return strings.Join(parts, ":")
}

func TestHandshakes(t *testing.T) {
	h, other := newHub(t), newHub(t)
	leafFP := Fingerprint(h.leafDER(t))
	expired := h.expiredServer(t)
	forged := forgedChain(t, h, other)

	cases := []struct {
		name                string
		srv                 *tls.Config
		serverName, ca, pin string
		ok                  bool
		errContains         string
	}{
		{"CA file", h.srv, "localhost", h.info.CAFile, "", true, ""},
		{"CA file, IP name", h.srv, "127.0.0.1", h.info.CAFile, "", true, ""},
		{"wrong CA file", h.srv, "localhost", other.info.CAFile, "", false, "unknown authority"},
		{"CA file, wrong name", h.srv, "evil.example", h.info.CAFile, "", false, "evil.example"},
		{"pin of CA", h.srv, "localhost", "", h.info.CAFingerprint, true, ""},
		{"pin of CA, openssl form", h.srv, "localhost", "", "SHA256:" + colonUpper(h.info.CAFingerprint), true, ""},
		{"pin of leaf", h.srv, "127.0.0.1", "", leafFP, true, ""},
		{"wrong pin", h.srv, "localhost", "", other.info.CAFingerprint, false, "pinned"},
		{"pin of CA, wrong name", h.srv, "evil.example", "", h.info.CAFingerprint, false, "evil.example"},
		{"pin of leaf, wrong name", h.srv, "evil.example", "", leafFP, false, "evil.example"},
		{"expired leaf, pin of CA", expired, "localhost", "", h.info.CAFingerprint, false, "expired"},
		{"expired leaf, pin of the expired leaf", expired, "localhost", "", Fingerprint(expired.Certificates[0].Certificate[0]), false, "expired"},
		{"expired leaf, CA file", expired, "localhost", h.info.CAFile, "", false, "expired"},
		{"pinned CA merely appended to a foreign chain", forged, "localhost", "", h.info.CAFingerprint, false, "unknown authority"},
		{"CA file and pin", h.srv, "localhost", h.info.CAFile, h.info.CAFingerprint, true, ""},
		{"CA file and leaf pin", h.srv, "localhost", h.info.CAFile, leafFP, true, ""},
		{"CA file ok, pin wrong", h.srv, "localhost", h.info.CAFile, other.info.CAFingerprint, false, "pinned"},
		{"CA file wrong, pin ok", h.srv, "localhost", other.info.CAFile, h.info.CAFingerprint, false, "unknown authority"},
		{"neither: system roots do not know the local CA", h.srv, "localhost", "", "", false, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := handshake(t, c.srv, client(t, c.serverName, c.ca, c.pin))
			if c.ok {
				if err != nil {
					t.Fatalf("handshake failed: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("handshake succeeded, want it refused")
			}
			if !strings.Contains(err.Error(), c.errContains) {
				t.Fatalf("err = %v, want it to mention %q", err, c.errContains)
			}
		})
	}
}

func TestClientConfigInputErrors(t *testing.T) {
	h := newHub(t)
	notPEM := filepath.Join(t.TempDir(), "ca.txt")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, serverName, ca, pin string }{
		{"no server name", "", h.info.CAFile, ""},
		{"missing CA file", "localhost", filepath.Join(t.TempDir(), "nope.pem"), ""},
		{"CA file without PEM", "localhost", notPEM, ""},
		{"short pin", "localhost", "", "abcd"},
		{"non-hex pin", "localhost", "", strings.Repeat("zz", 32)},
		{"SHA-1 length pin", "localhost", "", strings.Repeat("ab", 20)},
	} {
		if _, err := ClientConfig(c.serverName, c.ca, c.pin); err == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
}

func TestNeitherUsesSystemRoots(t *testing.T) {
	cfg := client(t, "hub.example.com", "", "")
	if cfg.RootCAs != nil || cfg.InsecureSkipVerify || cfg.VerifyConnection != nil || cfg.ServerName != "hub.example.com" {
		t.Fatalf("want plain system-root verification, got %+v", cfg)
	}
}

func TestFingerprintMatchesHub(t *testing.T) {
	h := newHub(t)
	data, err := os.ReadFile(h.info.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	sum := sha256.Sum256(block.Bytes)
	if got := Fingerprint(block.Bytes); got != hex.EncodeToString(sum[:]) || got != h.info.CAFingerprint {
		t.Fatalf("Fingerprint = %s, hub says %s", got, h.info.CAFingerprint)
	}
}
