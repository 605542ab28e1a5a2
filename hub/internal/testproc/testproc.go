// Package testproc runs one external server process for a test (influxd,
// mosquitto): on a free loopback port, its output in a log file, started
// again on a new port when a parallel test took the port first, and stopped
// with a deadline. The test-support packages influxtest and mqtttest wrap it.
package testproc

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Proc is one server process, restartable with the same arguments.
// Set the exported fields before the first start; don't change them after.
type Proc struct {
	// Name is the process's name in errors, e.g. "influxd".
	Name string
	// Args is the command line; Args[0] is the binary.
	Args []string
	// Env is the environment; nil inherits the test's.
	Env []string
	// Logs are the files Log reads, in order; stdout and stderr are
	// appended to the last one.
	Logs []string
	// Ready returns nil once the process accepts connections.
	Ready func() error
	// StartTimeout bounds waiting for Ready; StopTimeout waiting for the
	// exit after a signal.
	StartTimeout, StopTimeout time.Duration

	// mu is held for a whole start or stop, so Running never sees one half
	// done.
	mu   sync.Mutex
	cmd  *exec.Cmd     // nil while stopped
	done chan struct{} // closes when cmd has exited
}

// FreeAddr returns a loopback address ("127.0.0.1:port") with a port the
// kernel had free. It is free only until someone else binds it.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

// StartFresh calls configure, which picks free ports and writes the config,
// then Start. A FreeAddr port can be taken by a parallel test before the
// process binds it, so a start whose log says "address already in use" is
// tried again, with the old logs removed, up to three times in all.
func (p *Proc) StartFresh(configure func() error) error {
	for attempt := 1; ; attempt++ {
		if err := configure(); err != nil {
			return err
		}
		err := p.Start()
		if err == nil || attempt == 3 ||
			!strings.Contains(strings.ToLower(p.Log()), "address already in use") {
			return err
		}
		for _, f := range p.Logs {
			os.Remove(f)
		}
	}
}

// Start runs the process and waits until Ready, it exits or StartTimeout
// passes; on failure the process is killed again.
func (p *Proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return fmt.Errorf("%s already running", p.Name)
	}
	logf, err := os.OpenFile(p.Logs[len(p.Logs)-1], os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(p.Args[0], p.Args[1:]...)
	cmd.Stdout, cmd.Stderr, cmd.Env = logf, logf, p.Env
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.Args[0], err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	if err := p.waitReady(done); err != nil {
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("%s not ready: %w", p.Name, err)
	}
	p.cmd, p.done = cmd, done
	return nil
}

// waitReady polls Ready until it succeeds, the process exits (done) or
// StartTimeout passes. The exit is checked after Ready, so another process
// answering on a port this one failed to bind does not count as ready.
func (p *Proc) waitReady(done <-chan struct{}) error {
	deadline := time.Now().Add(p.StartTimeout)
	for {
		err := p.Ready()
		select {
		case <-done:
			return fmt.Errorf("%s exited during startup", p.Name)
		default:
		}
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %w", p.StartTimeout, err)
		}
		select {
		case <-done:
		case <-time.After(20 * time.Millisecond): // poll interval
		}
	}
}

// Stop sends sig and waits for the exit; after StopTimeout it kills the
// process and returns an error. A paused process gets SIGCONT first, as it
// cannot act on SIGTERM. No-op when stopped.
func (p *Proc) Stop(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	cmd, done := p.cmd, p.done
	if cmd == nil {
		return nil
	}
	p.cmd = nil
	_ = cmd.Process.Signal(syscall.SIGCONT)
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
		return nil
	case <-time.After(p.StopTimeout):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("%s ignored %v for %s, killed", p.Name, sig, p.StopTimeout)
	}
}

// Signal sends sig (e.g. SIGSTOP to pause) to the running process.
func (p *Proc) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return fmt.Errorf("%s is not running", p.Name)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %v: %w", sig, err)
	}
	return nil
}

// Running reports whether the process was started and not stopped since.
func (p *Proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

// Log returns the log files' contents so far, concatenated.
func (p *Proc) Log() string {
	var b strings.Builder
	for _, f := range p.Logs {
		data, _ := os.ReadFile(f)
		b.Write(data)
	}
	return b.String()
}
