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

// Start starts mosquitto on 127.0.0.1 (a free port) with persistence in
// t.TempDir() and registers its stop as cleanup. The binary is
// $FLEETWIRE_MOSQUITTO, else /usr/sbin/mosquitto, else mosquitto on PATH.
func Start(t testing.TB) *Broker {
	t.Helper()
	bin, err := binary()
	if err != nil {
		t.Fatalf("mosquitto: %v (Debian package mosquitto: run `make tools`)", err)
	}
	b := &Broker{t: t, bin: bin, Dir: t.TempDir()}
	b.Addr = freeAddr(t)
	b.URL = "tcp://" + b.Addr
	host, port, _ := net.SplitHostPort(b.Addr)
	b.conf = filepath.Join(b.Dir, "mosquitto.conf")
	conf := fmt.Sprintf(`# written by mqtttest
listener %s %s
allow_anonymous true
persistence true
persistence_location %s/
autosave_interval 0
max_queued_messages 0
max_inflight_messages 0
log_dest file %s
log_type error
log_type warning
log_type notice
`, port, host, b.Dir, filepath.Join(b.Dir, "mosquitto.log"))
	if os.Getuid() == 0 {
		// Started as root, mosquitto switches to user "mosquitto", which
		// cannot write the test's temp dir; stay who we are.
		conf += "user root\n"
	}
	if err := os.WriteFile(b.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	b.start()
	t.Cleanup(b.Stop)
	return b
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
	cmd := exec.Command(b.bin, "-c", b.conf)
	out, err := os.OpenFile(filepath.Join(b.Dir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		b.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		out.Close()
		b.t.Fatalf("start mosquitto: %v", err)
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
			b.t.Fatalf("mosquitto exited at start:\n%s", b.Log())
		default:
		}
		if c, err := net.DialTimeout("tcp", b.Addr, time.Second); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("mosquitto not accepting on %s after %s:\n%s", b.Addr, startTimeout, b.Log())
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

// Running reports whether the broker process is up.
func (b *Broker) Running() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cmd != nil
}
