// Package certs provides the hub's server TLS configuration: either the
// certificate and key the operator configured, or a local CA and server
// certificate that the hub creates in its data directory on first start so
// that TLS is on by default.
//
// Files in the data directory (keys are mode 0600):
//
//	ca.pem          the local CA certificate; agents trust this file or pin its SHA-256
//	ca-key.pem      the CA's private key; never leaves the hub
//	server.pem      the server certificate, signed by the CA
//	server-key.pem  the server certificate's private key
//
// The CA lives ten years and is never replaced automatically: replacing it
// would cut off every agent that trusts it. The server certificate lives
// 825 days and is re-issued by the same CA whenever it is within 30 days of
// expiry or its host names no longer match the configuration.
package certs

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
)

// File names inside the data directory.
const (
	CAFileName        = "ca.pem"
	CAKeyFileName     = "ca-key.pem"
	ServerFileName    = "server.pem"
	ServerKeyFileName = "server-key.pem"
)

// Info describes the certificate setup for operators and agent configs.
type Info struct {
	// CAFile is the absolute path of the generated CA certificate that
	// agents trust. Empty when certFile/keyFile were configured: the
	// operator's CA (often a public one) is not known here.
	CAFile string
	// CAFingerprint is the SHA-256 of the CA certificate's DER encoding,
	// lowercase hex without separators, for agents that pin instead of
	// holding CAFile. Empty when certFile/keyFile were configured.
	CAFingerprint string
	// Generated is true when this call created the CA (the first start
	// with this data directory): agents must be given the new CA.
	Generated bool
}

// Load returns the hub's server TLS config (TLS 1.2 or newer).
//
// With certFile and keyFile set it serves that pair (a PEM chain, leaf
// first, and its key) and re-reads both files when they change on disk, so
// a renewed certificate needs no restart; a pair that fails to load then is
// logged and the previous one kept. Setting only one of them is an error.
//
// Otherwise it uses, creating them on first start, a local CA and a server
// certificate in dataDir (see the package doc). The server certificate
// names localhost, 127.0.0.1, ::1, this machine's hostname and hosts
// (names or IP addresses; a ":port" suffix is ignored), and the hub
// presents it together with the CA certificate so that agents pinning the
// CA's fingerprint find it in the chain.
func Load(dataDir, certFile, keyFile string, hosts []string, log *slog.Logger) (*tls.Config, *Info, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if certFile != "" || keyFile != "" {
		if certFile == "" || keyFile == "" {
			return nil, nil, errors.New("certs: set both the certificate and the key file, or neither")
		}
		r, err := newFileReloader(certFile, keyFile, log)
		if err != nil {
			return nil, nil, err
		}
		return serverConfig(r.getCertificate), &Info{}, nil
	}
	return loadLocal(dataDir, hosts, log)
}

// Fingerprint returns the SHA-256 of a certificate's DER encoding as
// lowercase hex, the form Info.CAFingerprint and agents' pins use.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

func serverConfig(get func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: get}
}

// fileReloader serves a configured certificate pair and picks up changes.
type fileReloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.Mutex // guards the fields below
	cert    *tls.Certificate
	certVer fileVersion
	keyVer  fileVersion
}

// fileVersion identifies one version of a file well enough to notice a
// replacement (renewal tools rewrite or rename; both change these).
type fileVersion struct {
	modNanos int64
	size     int64
}

func newFileReloader(certFile, keyFile string, log *slog.Logger) (*fileReloader, error) {
	r := &fileReloader{certFile: certFile, keyFile: keyFile, log: log}
	cv, kv, err := r.versions()
	if err != nil {
		return nil, err
	}
	if err := r.load(cv, kv); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *fileReloader) versions() (cert, key fileVersion, err error) {
	if cert, err = statVersion(r.certFile); err != nil {
		return cert, key, err
	}
	key, err = statVersion(r.keyFile)
	return cert, key, err
}

func statVersion(path string) (fileVersion, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileVersion{}, fmt.Errorf("certs: %w", err)
	}
	return fileVersion{modNanos: fi.ModTime().UnixNano(), size: fi.Size()}, nil
}

// load reads the pair; the caller holds r.mu or owns r exclusively.
func (r *fileReloader) load(cv, kv fileVersion) error {
	c, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("certs: load %s and %s: %w", r.certFile, r.keyFile, err)
	}
	r.cert, r.certVer, r.keyVer = &c, cv, kv
	return nil
}

// getCertificate is tls.Config.GetCertificate. Two stat calls per
// handshake are cheap next to the handshake itself and need no watcher
// goroutine to stop.
func (r *fileReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cv, kv, err := r.versions()
	if err != nil || (cv == r.certVer && kv == r.keyVer) {
		if err != nil {
			r.log.Warn("TLS certificate files unreadable; serving the loaded certificate", "err", err)
		}
		return r.cert, nil
	}
	if err := r.load(cv, kv); err != nil {
		// Remember the versions so a half-written renewal is not re-read
		// (and logged) on every handshake; the next write changes them.
		r.certVer, r.keyVer = cv, kv
		r.log.Warn("TLS certificate changed but does not load; serving the previous one", "err", err)
		return r.cert, nil
	}
	r.log.Info("TLS certificate reloaded", "cert", r.certFile)
	return r.cert, nil
}

// absPath is filepath.Abs falling back to the path as given: it only makes
// printed paths friendlier.
func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
