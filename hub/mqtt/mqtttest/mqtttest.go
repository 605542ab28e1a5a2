// Package mqtttest runs a real Mosquitto broker for tests: a fresh
// mosquitto on a free loopback port with its persistence file in the
// test's temp dir, so a QoS 1 session survives Restart. Tests of the MQTT
// bridge start one with Start; a missing broker fails the test (CI never
// skips it).
package mqtttest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
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
	bin  string
	conf string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
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
	b := &Broker{t: t, bin: bin, Dir: t.TempDir()}
	b.conf = filepath.Join(b.Dir, "mosquitto.conf")
	// freeAddr's port is free only until someone else binds it: parallel
	// tests starting servers can collide, so a bind failure tries a new one.
	for attempt := 1; ; attempt++ {
		b.Addr = freeAddr(t)
		b.URL = "tcp://" + b.Addr
		if set.tlsDir != "" {
			b.TLSURL = "ssl://" + freeAddr(t)
		}
		if err := os.WriteFile(b.conf, []byte(b.render(set)), 0o600); err != nil {
			t.Fatal(err)
		}
		err := b.tryStart()
		if err == nil {
			break
		}
		if attempt == 3 || !strings.Contains(b.Log(), "Address already in use") {
			t.Fatalf("%v:\n%s", err, b.Log())
		}
		os.Remove(filepath.Join(b.Dir, "mosquitto.log"))
		os.Remove(filepath.Join(b.Dir, "stdout.log"))
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

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// start runs mosquitto and waits until it accepts connections.
func (b *Broker) start() {
	b.t.Helper()
	if err := b.tryStart(); err != nil {
		b.t.Fatalf("%v:\n%s", err, b.Log())
	}
}

// tryStart is start returning a failure (mosquitto stopped again).
func (b *Broker) tryStart() error {
	cmd := exec.Command(b.bin, "-c", b.conf)
	out, err := os.OpenFile(filepath.Join(b.Dir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("start mosquitto: %w", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); out.Close(); close(done) }()
	b.mu.Lock()
	b.cmd, b.done = cmd, done
	b.mu.Unlock()
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-done:
			b.mu.Lock()
			b.cmd = nil
			b.mu.Unlock()
			return errors.New("mosquitto exited at start")
		default:
		}
		if c, err := net.DialTimeout("tcp", b.Addr, time.Second); err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			b.Kill()
			return fmt.Errorf("mosquitto not accepting on %s after %s", b.Addr, startTimeout)
		}
		time.Sleep(20 * time.Millisecond) // poll interval while it starts
	}
}

// Log returns the broker's log and output so far.
func (b *Broker) Log() string {
	var s string
	for _, f := range []string{"mosquitto.log", "stdout.log"} {
		data, _ := os.ReadFile(filepath.Join(b.Dir, f))
		s += string(data)
	}
	return s
}

// signal sends sig and waits for the process to exit. No-op when stopped.
func (b *Broker) signal(sig syscall.Signal) {
	b.mu.Lock()
	cmd, done := b.cmd, b.done
	b.cmd = nil
	b.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(stopTimeout):
		cmd.Process.Kill()
		<-done
		b.t.Errorf("mosquitto did not exit on %v within %s", sig, stopTimeout)
	}
}

// Stop ends the broker gracefully (it writes its persistence file).
// Idempotent.
func (b *Broker) Stop() { b.signal(syscall.SIGTERM) }

// Kill ends the broker at once: what it had not saved is lost.
func (b *Broker) Kill() { b.signal(syscall.SIGKILL) }

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
func (b *Broker) Running() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cmd != nil
}
