package main

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/agent/command"
)

// notifySocket listens on a real unixgram socket, as systemd does for
// Type=notify units, and points NOTIFY_SOCKET and the watchdog variables at
// it (period: the WatchdogSec= systemd would pass).
func notifySocket(t *testing.T, period time.Duration) <-chan string {
	t.Helper()
	// sun_path holds 108 bytes: t.TempDir() can be longer.
	dir, err := os.MkdirTemp("", "sdnotify")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("WATCHDOG_USEC", strconv.FormatInt(period.Microseconds(), 10))
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	msgs := make(chan string, 1024)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	return msgs
}

// next returns the next datagram, or fails after a deadline.
func next(t *testing.T, msgs <-chan string) string {
	t.Helper()
	select {
	case m, ok := <-msgs:
		if !ok {
			t.Fatal("notify socket closed")
		}
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no sd_notify message within 10s")
		return ""
	}
}

// TestSystemdNotify runs the whole agent under a fake systemd notify
// socket: READY=1 once it runs, WATCHDOG=1 repeatedly while it collects,
// STOPPING=1 when it stops.
func TestSystemdNotify(t *testing.T) {
	msgs := notifySocket(t, 200*time.Millisecond)
	m := NewMain(&bytes.Buffer{}, &bytes.Buffer{})
	m.Config.Hub.URL = "ws://127.0.0.1:1/v1/device" // nobody listens: the link retries, collection goes on
	m.Config.Hub.AllowInsecure = true
	m.Config.Hub.Token = "fwd_test"
	m.Config.Interval = 100 * time.Millisecond
	m.Config.Spool.Dir = filepath.Join(t.TempDir(), "spool")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	if got := next(t, msgs); got != "READY=1" {
		t.Fatalf("first message %q, want READY=1", got)
	}
	for i := range 3 {
		if got := next(t, msgs); got != "WATCHDOG=1" {
			t.Fatalf("message %d after READY: %q, want WATCHDOG=1", i, got)
		}
	}
	cancel()
	if err := <-done; err != nil && ctx.Err() == nil {
		t.Fatalf("Run: %v", err)
	}
	done <- nil // for the deferred receive
	for got := next(t, msgs); got != "STOPPING=1"; got = next(t, msgs) {
		if got != "WATCHDOG=1" {
			t.Fatalf("message %q while stopping, want STOPPING=1", got)
		}
	}
}

// TestSystemdWatchdogStopsWhenStalled: no spooled batch for three intervals
// plus the slack silences the pings (so systemd restarts the agent); a
// spooled batch brings them back. A longer interval set at run time is
// followed.
func TestSystemdWatchdogStopsWhenStalled(t *testing.T) {
	msgs := notifySocket(t, 100*time.Millisecond)
	n := newSDNotifier(50*time.Millisecond, slog.New(slog.DiscardHandler))
	n.slack = 0
	stop := n.start(context.Background())
	defer stop()
	if got := next(t, msgs); got != "READY=1" {
		t.Fatalf("first message %q, want READY=1", got)
	}
	// Within 150ms of the start the loop counts as healthy.
	if got := next(t, msgs); got != "WATCHDOG=1" {
		t.Fatalf("%q, want WATCHDOG=1", got)
	}
	drainUntilSilent(t, msgs, 300*time.Millisecond)

	spooled := n.spooled(nil)
	spooled(nil)
	if got := next(t, msgs); got != "WATCHDOG=1" {
		t.Fatalf("after a spooled batch: %q, want WATCHDOG=1", got)
	}

	// agent.set-interval 1h: the same silence is now healthy.
	var set time.Duration
	b := n.builtins(command.Builtins{SetInterval: func(d time.Duration) error { set = d; return nil }})
	if err := b.SetInterval(time.Hour); err != nil || set != time.Hour {
		t.Fatalf("SetInterval: %v (passed on %v)", err, set)
	}
	deadline := time.Now().Add(500 * time.Millisecond)
	for time.Now().Before(deadline) {
		if got := next(t, msgs); got != "WATCHDOG=1" {
			t.Fatalf("with a 1h interval: %q, want WATCHDOG=1", got)
		}
	}
}

// drainUntilSilent reads pings until none arrives for quiet, failing if
// the pings do not stop within 5s.
func drainUntilSilent(t *testing.T, msgs <-chan string, quiet time.Duration) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case m := <-msgs:
			if !strings.HasPrefix(m, "WATCHDOG=1") {
				t.Fatalf("unexpected message %q", m)
			}
		case <-time.After(quiet):
			return
		}
	}
	t.Fatal("watchdog pings went on although nothing was spooled")
}
