package testproc

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary is the server process when these are set: it serves on
// $TESTPROC_LISTEN, greeting each connection with "ok" (or prints the bind
// error and exits, as a server does on a port collision). $TESTPROC_MODE
// "exit" prints and exits at once; "hang" ignores SIGTERM.
const (
	listenEnv = "TESTPROC_LISTEN"
	modeEnv   = "TESTPROC_MODE"
)

func TestMain(m *testing.M) {
	mode, addr := os.Getenv(modeEnv), os.Getenv(listenEnv)
	if mode == "" && addr == "" {
		os.Exit(m.Run())
	}
	if mode == "exit" {
		fmt.Fprintln(os.Stderr, "boom: bad config")
		os.Exit(3)
	}
	if mode == "hang" {
		signal.Ignore(syscall.SIGTERM)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for {
		if c, err := l.Accept(); err == nil {
			c.Write([]byte("ok"))
			c.Close()
		}
	}
}

// child returns a Proc running this test binary, ready when *addr greets.
// The greeting tells the child from a listener the test holds on the port.
func child(t *testing.T, addr *string, env ...string) *Proc {
	return &Proc{
		Name: "child",
		Args: []string{os.Args[0]},
		Env:  env,
		Logs: []string{filepath.Join(t.TempDir(), "child.log")},
		Ready: func() error {
			c, err := net.DialTimeout("tcp", *addr, time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			_, err = c.Read(make([]byte, 2))
			return err
		},
		StartTimeout: 10 * time.Second,
		StopTimeout:  10 * time.Second,
	}
}

// startOn runs StartFresh where attempt n (from 1) listens on addrs[n-1]
// and returns the attempts made.
func startOn(t *testing.T, addrs ...string) (*Proc, int, error) {
	var addr string
	p := child(t, &addr)
	n := 0
	err := p.StartFresh(func() error {
		addr = addrs[n]
		p.Env = []string{listenEnv + "=" + addr}
		n++
		return nil
	})
	t.Cleanup(func() { p.Stop(syscall.SIGKILL) })
	return p, n, err
}

func TestStartFreshRetriesPortCollision(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	p, n, err := startOn(t, taken.Addr().String(), FreeAddr(t))
	if err != nil || n != 2 || !p.Running() {
		t.Fatalf("err %v after %d attempts, running %v; log:\n%s", err, n, p.Running(), p.Log())
	}
	if strings.Contains(p.Log(), "in use") {
		t.Errorf("log of the failed attempt kept:\n%s", p.Log())
	}
	if err := p.Stop(syscall.SIGTERM); err != nil || p.Running() {
		t.Errorf("stop: %v, running %v", err, p.Running())
	}
}

func TestStartFreshGivesUpAfterThreeCollisions(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	a := taken.Addr().String()
	p, n, err := startOn(t, a, a, a, a)
	if err == nil || n != 3 || p.Running() || !strings.Contains(err.Error(), "child exited during startup") {
		t.Fatalf("err %v after %d attempts, running %v", err, n, p.Running())
	}
	if !strings.Contains(p.Log(), "address already in use") {
		t.Errorf("log lacks the bind error:\n%s", p.Log())
	}
}

func TestStartFailsFastWhenProcessExits(t *testing.T) {
	addr := FreeAddr(t)
	p := child(t, &addr, modeEnv+"=exit")
	n := 0
	start := time.Now()
	err := p.StartFresh(func() error { n++; return nil })
	if err == nil || n != 1 || err.Error() != "child not ready: child exited during startup" {
		t.Fatalf("err %v after %d attempts", err, n)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s, want well under the start timeout", d)
	}
	if !strings.Contains(p.Log(), "boom: bad config") {
		t.Errorf("log lacks the child's output: %q", p.Log())
	}
}

func TestStartTimeoutKillsProcess(t *testing.T) {
	addr := FreeAddr(t)
	p := child(t, &addr, modeEnv+"=hang", listenEnv+"=127.0.0.1:0")
	p.StartTimeout = 200 * time.Millisecond
	err := p.Start()
	if err == nil || !strings.Contains(err.Error(), "child not ready: after 200ms: dial tcp") || p.Running() {
		t.Fatalf("err %v, running %v", err, p.Running())
	}
	if err := p.Signal(syscall.SIGSTOP); err == nil || err.Error() != "child is not running" {
		t.Errorf("signal when stopped: %v", err)
	}
}

func TestStopKillsProcessIgnoringSignal(t *testing.T) {
	addr := FreeAddr(t)
	p := child(t, &addr, modeEnv+"=hang", listenEnv+"="+addr)
	p.StopTimeout = 200 * time.Millisecond
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	err := p.Stop(syscall.SIGTERM)
	if err == nil || err.Error() != "child ignored terminated for 200ms, killed" || p.Running() {
		t.Fatalf("err %v, running %v", err, p.Running())
	}
	if err := p.Stop(syscall.SIGTERM); err != nil {
		t.Errorf("second stop: %v", err)
	}
}
