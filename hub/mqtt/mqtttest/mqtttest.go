// Package mqtttest runs a real Mosquitto broker for tests: a fresh
// mosquitto on a free loopback port with its persistence file in the
// test's temp dir, so a QoS 1 session survives Restart. Tests of the MQTT
// bridge start one with Start; a missing broker fails the test (CI never
// skips it).
package mqtttest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/hub/internal/testproc"
)

// EnvBinary names the environment variable that overrides where mosquitto is.
const EnvBinary = "FLEETWIRE_MOSQUITTO"

const (
	startTimeout = 20 * time.Second
	stopTimeout  = 10 * time.Second
)

// Broker is a running (or stopped) mosquitto owned by one test.
type Broker struct {
	// URL is the broker's address for paho, e.g. tcp://127.0.0.1:41234.
	URL string
	// TLSURL is the TLS listener's, e.g. ssl://127.0.0.1:41235 (with TLS).
	TLSURL string
	// Addr is host:port.
	Addr string
	// Dir holds the config, the persistence file and the log.
	Dir string

	t    testing.TB
	proc *testproc.Proc
}

// Option changes the generated broker config.
type Option func(*settings)

type settings struct {
	maxInflight int
	tlsDir      string
}

// TLS adds a TLS listener (Broker.TLSURL) with the certificate dir holds
// as hub/certs writes it: ca.pem, server.pem, server-key.pem.
func TLS(dir string) Option { return func(s *settings) { s.tlsDir = dir } }

// MaxInflight sets max_inflight_messages: QoS 1 messages sent to one client
// and not yet acked (Mosquitto's default is 20; Start's is 0, unlimited).
func MaxInflight(n int) Option { return func(s *settings) { s.maxInflight = n } }

// Start starts mosquitto on 127.0.0.1 (a free port) with persistence in
// t.TempDir() and registers its stop as cleanup. The binary is
// $FLEETWIRE_MOSQUITTO, else /usr/sbin/mosquitto, else mosquitto on PATH.
func Start(t testing.TB, opts ...Option) *Broker {
	t.Helper()
	var set settings
	for _, o := range opts {
		o(&set)
	}
	bin, err := binary()
	if err != nil {
		t.Fatalf("mosquitto: %v (Debian package mosquitto: run `make tools`)", err)
	}
	b := &Broker{t: t, Dir: t.TempDir()}
	conf := filepath.Join(b.Dir, "mosquitto.conf")
	b.proc = &testproc.Proc{
		Name:         "mosquitto",
		Args:         []string{bin, "-c", conf},
		Logs:         []string{filepath.Join(b.Dir, "mosquitto.log"), filepath.Join(b.Dir, "stdout.log")},
		Ready:        b.dial,
		StartTimeout: startTimeout,
		StopTimeout:  stopTimeout,
	}
	err = b.proc.StartFresh(func() error {
		b.Addr = testproc.FreeAddr(t)
		b.URL = "tcp://" + b.Addr
		if set.tlsDir != "" {
			b.TLSURL = "ssl://" + testproc.FreeAddr(t)
		}
		return os.WriteFile(conf, []byte(b.render(set)), 0o600)
	})
	if err != nil {
		t.Fatalf("%v:\n%s", err, b.Log())
	}
	t.Cleanup(b.Stop)
	return b
}

// render returns the broker config for b.Addr.
func (b *Broker) render(set settings) string {
	host, port, _ := net.SplitHostPort(b.Addr)
	conf := fmt.Sprintf(`# written by mqtttest
listener %s %s
allow_anonymous true
persistence true
persistence_location %s/
autosave_interval 0
max_queued_messages 0
max_inflight_messages %d
log_dest file %s
log_type error
log_type warning
log_type notice
`, port, host, b.Dir, set.maxInflight, filepath.Join(b.Dir, "mosquitto.log"))
	if set.tlsDir != "" {
		tlsHost, tlsPort, _ := net.SplitHostPort(strings.TrimPrefix(b.TLSURL, "ssl://"))
		conf += fmt.Sprintf("listener %s %s\ncafile %s\ncertfile %s\nkeyfile %s\n", tlsPort, tlsHost,
			filepath.Join(set.tlsDir, "ca.pem"), filepath.Join(set.tlsDir, "server.pem"), filepath.Join(set.tlsDir, "server-key.pem"))
	}
	if os.Getuid() == 0 {
		// Started as root, mosquitto switches to user "mosquitto", which
		// cannot write the test's temp dir; stay who we are.
		conf += "user root\n"
	}
	return conf
}

func binary() (string, error) {
	if p := os.Getenv(EnvBinary); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("$%s: %w", EnvBinary, err)
		}
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/mosquitto"); err == nil {
		return "/usr/sbin/mosquitto", nil
	}
	return exec.LookPath("mosquitto")
}

// dial returns nil when the broker accepts a TCP connection.
func (b *Broker) dial() error {
	c, err := net.DialTimeout("tcp", b.Addr, time.Second)
	if err == nil {
		c.Close()
	}
	return err
}

// start runs mosquitto and waits until it accepts connections.
func (b *Broker) start() {
	b.t.Helper()
	if err := b.proc.Start(); err != nil {
		b.t.Fatalf("%v:\n%s", err, b.Log())
	}
}

// Log returns the broker's log and output so far.
func (b *Broker) Log() string { return b.proc.Log() }

// stop sends sig and waits for the process to exit. No-op when stopped.
func (b *Broker) stop(sig syscall.Signal) {
	if err := b.proc.Stop(sig); err != nil {
		b.t.Errorf("%v", err)
	}
}

// Stop ends the broker gracefully (it writes its persistence file).
// Idempotent.
func (b *Broker) Stop() { b.stop(syscall.SIGTERM) }

// Kill ends the broker at once: what it had not saved is lost.
func (b *Broker) Kill() { b.stop(syscall.SIGKILL) }

// Restart stops the broker gracefully and starts it again on the same
// address with the same persistence file: persistent sessions and their
// queued QoS 1 messages survive.
func (b *Broker) Restart() {
	b.t.Helper()
	b.Stop()
	b.start()
}

// Reset kills the broker and starts a fresh one on the same address
// without its persistence file: every session, subscription and queued
// message is gone, as after a broker replaced by a new machine.
func (b *Broker) Reset() {
	b.t.Helper()
	b.Kill()
	if err := os.Remove(filepath.Join(b.Dir, "mosquitto.db")); err != nil && !os.IsNotExist(err) {
		b.t.Fatal(err)
	}
	b.start()
}

// Running reports whether the broker process is up.
func (b *Broker) Running() bool { return b.proc.Running() }
