package hub_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/hub/store"
	"github.com/fleetwire/fleetwire/protocol"
)

// waitFor bounds every poll; the sweep runs every 2 s, so a few ticks.
const waitFor = 10 * time.Second

// fakeSession is a live device session that records the commands pushed
// to it.
type fakeSession struct {
	got chan *protocol.Command
}

func newFakeSession() *fakeSession { return &fakeSession{got: make(chan *protocol.Command, 64)} }

func (f *fakeSession) Close(protocol.CloseCode, string) {}

func (f *fakeSession) SendCommand(ctx context.Context, cmd *protocol.Command) error {
	select {
	case f.got <- cmd:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// next returns the next pushed command, failing the test after waitFor.
func (f *fakeSession) next(t *testing.T) *protocol.Command {
	t.Helper()
	select {
	case c := <-f.got:
		return c
	case <-time.After(waitFor):
		t.Fatal("no command pushed to the session")
		return nil
	}
}

type cmdEnv struct {
	st  *store.Store
	reg *hub.Registry
	svc *hub.CommandService
}

// newCmdEnv runs a CommandService on a real SQLite store until the test
// ends.
func newCmdEnv(t *testing.T, clock ...func() time.Time) *cmdEnv {
	t.Helper()
	return newCmdEnvWrapped(t, nil, clock...)
}

// newCmdEnvWrapped is newCmdEnv with the service seeing the store through
// wrap, if not nil.
func newCmdEnvWrapped(t *testing.T, wrap func(*store.Store) hub.CommandStore, clock ...func() time.Time) *cmdEnv {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	reg := hub.NewRegistry(hub.NewMetrics(nil))
	var cs hub.CommandStore = st
	if wrap != nil {
		cs = wrap(st)
	}
	svc := hub.NewCommandService(cs, reg, hub.NewCommandMetrics(nil), nil)
	if len(clock) > 0 {
		svc.SetClock(clock[0])
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		svc.Run(ctx)
	}()
	// Registered after st.Close, so it runs first: the service stops
	// before its store closes.
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return &cmdEnv{st: st, reg: reg, svc: svc}
}

func (e *cmdEnv) device(t *testing.T, id string, labels map[string]string) {
	t.Helper()
	if _, _, err := e.st.CreateDevice(context.Background(), id, labels); err != nil {
		t.Fatal(err)
	}
}

func (e *cmdEnv) online(t *testing.T, id string) *fakeSession {
	t.Helper()
	s := newFakeSession()
	e.reg.Register(id, s)
	return s
}

func (e *cmdEnv) send(t *testing.T, req hub.SendRequest) hub.Command {
	t.Helper()
	if req.Name == "" {
		req.Name = "uptime"
	}
	c, err := e.svc.Send(context.Background(), req)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	return c
}

// pollState polls until the command is in state want.
func (e *cmdEnv) pollState(t *testing.T, id string, want hub.CommandState) hub.Command {
	t.Helper()
	var c hub.Command
	eventually(t, func() string { return fmt.Sprintf("command %s is %s, want %s", id, c.State, want) }, func() bool {
		var err error
		if c, err = e.svc.Get(context.Background(), id); err != nil {
			t.Fatal(err)
		}
		return c.State == want
	})
	return c
}

// eventually polls cond until it holds, failing with what() after waitFor.
func eventually(t *testing.T, what func() string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", waitFor, what())
		}
		time.Sleep(10 * time.Millisecond) // poll interval, not a wait for the condition
	}
}

// waiter runs Wait in the background, so the change it waits for can be
// made after it started.
func (e *cmdEnv) waiter(id string, after int64) <-chan hub.Command {
	ch := make(chan hub.Command, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		c, err := e.svc.Wait(ctx, id, after)
		if err != nil {
			c.Error = "wait: " + err.Error()
		}
		ch <- c
	}()
	return ch
}

func TestCommandLifecycleOnline(t *testing.T) {
	ctx := context.Background()
	e := newCmdEnv(t)
	e.device(t, "pi-01", nil)
	e.device(t, "pi-02", nil)
	sess := e.online(t, "pi-01")

	c := e.send(t, hub.SendRequest{DeviceID: "pi-01", Name: "run", Args: map[string]string{"cmd": "uptime"}, Timeout: 5 * time.Second, SentBy: "ops"})
	// The device is online: stored as sent at once (one write less).
	if c.State != hub.StateSent || c.SentAt == nil || c.Version != 1 || c.SentBy != "ops" {
		t.Fatalf("Send = %+v", c)
	}
	msg := sess.next(t)
	if msg.ID != c.ID || msg.Name != "run" || msg.Args["cmd"] != "uptime" || msg.TimeoutMs != 5000 {
		t.Fatalf("pushed %+v", msg)
	}
	got, err := e.svc.Get(ctx, c.ID)
	if err != nil || got.State != hub.StateSent || got.SentAt == nil || got.Version != 1 {
		t.Fatalf("after push: %+v, %v", got, err)
	}

	// Nothing changes: Wait gives up with ctx and returns the command.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	w, err := e.svc.Wait(short, c.ID, got.Version)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || w.Version != got.Version {
		t.Fatalf("Wait without change = %+v, %v", w, err)
	}

	steps := []struct {
		res    protocol.CommandResult
		state  hub.CommandState
		stdout string
	}{
		{protocol.CommandResult{State: "received"}, hub.StateReceived, ""},
		{protocol.CommandResult{State: "output", Stdout: []byte("hello ")}, hub.StateReceived, "hello "},
		{protocol.CommandResult{State: "output", Stdout: []byte("world")}, hub.StateReceived, "hello world"},
		{protocol.CommandResult{State: "succeeded", Stdout: []byte("final"), DurationMs: 12}, hub.StateSucceeded, "final"},
	}
	version := got.Version
	for _, st := range steps {
		ch := e.waiter(c.ID, version)
		res := st.res
		res.ID = c.ID
		if err := e.svc.HandleResult(ctx, "pi-01", &res); err != nil {
			t.Fatalf("HandleResult(%s): %v", res.State, err)
		}
		w := <-ch
		if w.Version != version+1 || w.State != st.state || w.Stdout != st.stdout {
			t.Fatalf("after %s result Wait = state %s version %d stdout %q (%s); want %s %d %q",
				res.State, w.State, w.Version, w.Stdout, w.Error, st.state, version+1, st.stdout)
		}
		version = w.Version
	}
	final, _ := e.svc.Get(ctx, c.ID)
	if final.ExitCode == nil || *final.ExitCode != 0 || final.FinishedAt == nil || final.ReceivedAt == nil || final.DurationMs != 12 {
		t.Fatalf("final command = %+v", final)
	}
	// Terminal: Wait returns at once even with nothing newer.
	if w, err := e.svc.Wait(ctx, c.ID, final.Version); err != nil || w.Version != final.Version {
		t.Fatalf("Wait on terminal = %+v, %v", w, err)
	}

	// A duplicate final report is accepted and ignored.
	dup := protocol.CommandResult{ID: c.ID, State: "failed", ExitCode: 3, Stdout: []byte("other")}
	if err := e.svc.HandleResult(ctx, "pi-01", &dup); err != nil {
		t.Fatalf("duplicate result: %v", err)
	}
	// A result from another device is refused.
	wrong := protocol.CommandResult{ID: c.ID, State: "failed", ExitCode: 1}
	if err := e.svc.HandleResult(ctx, "pi-02", &wrong); !errors.Is(err, hub.ErrInvalidInput) {
		t.Fatalf("result from the wrong device: %v, want ErrInvalidInput", err)
	}
	after, _ := e.svc.Get(ctx, c.ID)
	if after.State != hub.StateSucceeded || after.Version != final.Version || after.Stdout != "final" || *after.ExitCode != 0 {
		t.Fatalf("after duplicate and foreign results: %+v", after)
	}
	if err := e.svc.HandleResult(ctx, "pi-01", &protocol.CommandResult{ID: "nope", State: "received"}); !errors.Is(err, hub.ErrNotFound) {
		t.Fatalf("result for an unknown command: %v, want ErrNotFound", err)
	}
}

func TestCommandOfflineThenConnect(t *testing.T) {
	ctx := context.Background()
	e := newCmdEnv(t)
	e.device(t, "pi-01", nil)
	c := e.send(t, hub.SendRequest{DeviceID: "pi-01"})
	// With no session nothing can move it on: Wait sees no change.
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	w, err := e.svc.Wait(short, c.ID, c.Version)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || w.State != hub.StateQueued || w.Version != 1 {
		t.Fatalf("offline command: %+v, %v; want still queued", w, err)
	}

	sess := e.online(t, "pi-01")
	e.svc.DeviceConnected("pi-01")
	if msg := sess.next(t); msg.ID != c.ID {
		t.Fatalf("pushed %s, want %s", msg.ID, c.ID)
	}
	if got := e.pollState(t, c.ID, hub.StateSent); got.SentAt == nil {
		t.Fatalf("sent without SentAt: %+v", got)
	}
}

func TestCommandExpiresOffline(t *testing.T) {
	ctx := context.Background()
	e := newCmdEnv(t)
	e.device(t, "pi-01", nil)
	c := e.send(t, hub.SendRequest{DeviceID: "pi-01", TTL: time.Second})
	if !c.ExpiresAt.Equal(c.CreatedAt.Add(time.Second)) {
		t.Fatalf("ExpiresAt %s, CreatedAt %s", c.ExpiresAt, c.CreatedAt)
	}
	w := <-e.waiter(c.ID, c.Version)
	if w.State != hub.StateExpired || w.FinishedAt == nil || w.Error == "" || strings.HasPrefix(w.Error, "wait:") {
		t.Fatalf("after TTL: %+v", w)
	}
	if _, err := e.svc.Cancel(ctx, c.ID, "ops"); !errors.Is(err, hub.ErrConflict) {
		t.Fatalf("cancel expired: %v, want ErrConflict", err)
	}
	// A device that connects late is not handed it.
	if p, err := e.st.PendingCommands(ctx, "pi-01"); err != nil || len(p) != 0 {
		t.Fatalf("pending after expiry: %d, %v", len(p), err)
	}
}

func TestCommandCancel(t *testing.T) {
	ctx := context.Background()
	e := newCmdEnv(t)
	e.device(t, "pi-off", nil)
	e.device(t, "pi-on", nil)
	sess := e.online(t, "pi-on")

	queued := e.send(t, hub.SendRequest{DeviceID: "pi-off"})
	c, err := e.svc.Cancel(ctx, queued.ID, "ops")
	if err != nil || c.State != hub.StateCanceled || c.FinishedAt == nil || !strings.Contains(c.Error, "ops") || c.Version != 2 {
		t.Fatalf("Cancel queued = %+v, %v", c, err)
	}
	if _, err := e.svc.Cancel(ctx, queued.ID, "ops"); !errors.Is(err, hub.ErrConflict) {
		t.Fatalf("Cancel twice: %v, want ErrConflict", err)
	}

	sent := e.send(t, hub.SendRequest{DeviceID: "pi-on"})
	sess.next(t)
	if _, err := e.svc.Cancel(ctx, sent.ID, "ops"); !errors.Is(err, hub.ErrConflict) {
		t.Fatalf("Cancel sent: %v, want ErrConflict", err)
	}
	if got, _ := e.svc.Get(ctx, sent.ID); got.State != hub.StateSent {
		t.Fatalf("refused cancel changed the command: %+v", got)
	}
	if _, err := e.svc.Cancel(ctx, "nope", "ops"); !errors.Is(err, hub.ErrNotFound) {
		t.Fatalf("Cancel unknown: %v, want ErrNotFound", err)
	}
}

func TestSendBulk(t *testing.T) {
	ctx := context.Background()
	e := newCmdEnv(t)
	var want []string
	for i := range 5 {
		id := fmt.Sprintf("g1-%d", i)
		e.device(t, id, map[string]string{"group": "g1"})
		want = append(want, id)
	}
	e.device(t, "g2-0", map[string]string{"group": "g2"})
	e.device(t, "g1-revoked", map[string]string{"group": "g1"})
	if err := e.st.RevokeDevice(ctx, "g1-revoked"); err != nil {
		t.Fatal(err)
	}
	sessions := map[string]*fakeSession{"g1-1": e.online(t, "g1-1"), "g1-3": e.online(t, "g1-3"), "g2-0": e.online(t, "g2-0")}

	st, err := e.svc.SendBulk(ctx, hub.SendRequest{Selector: map[string]string{"group": "g1"}, Name: "reboot", SentBy: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	var devs []string
	byDevice := map[string]string{}
	for _, c := range st.Commands {
		devs = append(devs, c.DeviceID)
		byDevice[c.DeviceID] = c.ID
		if c.BulkID != st.BulkID {
			t.Errorf("command %s has bulk %q, want %q", c.ID, c.BulkID, st.BulkID)
		}
	}
	slices.Sort(devs)
	// Two of the five are online: those are stored as sent.
	if st.Total != 5 || st.ByState[hub.StateQueued] != 3 || st.ByState[hub.StateSent] != 2 || st.Done || !slices.Equal(devs, want) {
		t.Fatalf("SendBulk = total %d, by state %v, done %v, devices %v", st.Total, st.ByState, st.Done, devs)
	}
	for _, id := range []string{"g1-1", "g1-3"} {
		if msg := sessions[id].next(t); msg.ID != byDevice[id] || msg.Name != "reboot" {
			t.Fatalf("%s got %+v, want command %s", id, msg, byDevice[id])
		}
	}
	deadline := time.Now().Add(waitFor)
	for {
		b, err := e.svc.Bulk(ctx, st.BulkID)
		if err != nil {
			t.Fatal(err)
		}
		if b.Total == 5 && b.ByState[hub.StateSent] == 2 && b.ByState[hub.StateQueued] == 3 && !b.Done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Bulk = total %d, by state %v; want 2 sent, 3 queued", b.Total, b.ByState)
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	select {
	case msg := <-sessions["g2-0"].got:
		t.Fatalf("device outside the selector got %+v", msg)
	default:
	}
	if _, err := e.svc.SendBulk(ctx, hub.SendRequest{Selector: map[string]string{"group": "none"}, Name: "reboot"}); !errors.Is(err, hub.ErrNotFound) {
		t.Fatalf("SendBulk matching nothing: %v, want ErrNotFound", err)
	}
	if _, err := e.svc.Bulk(ctx, "nope"); !errors.Is(err, hub.ErrNotFound) {
		t.Fatalf("Bulk(unknown): %v, want ErrNotFound", err)
	}
}

func TestSendValidation(t *testing.T) {
	ctx := context.Background()
	e := newCmdEnv(t)
	e.device(t, "pi-01", nil)
	args := func(n, valueLen int) map[string]string {
		m := map[string]string{}
		for i := range n {
			m[fmt.Sprintf("a%d", i)] = strings.Repeat("v", valueLen)
		}
		return m
	}
	for _, tc := range []struct {
		name string
		req  hub.SendRequest
		ok   bool
	}{
		{"name at limit", hub.SendRequest{Name: strings.Repeat("n", 128)}, true},
		{"name past limit", hub.SendRequest{Name: strings.Repeat("n", 129)}, false},
		{"empty name", hub.SendRequest{Name: ""}, false},
		{"bad name", hub.SendRequest{Name: "rm -rf"}, false},
		{"args at limit", hub.SendRequest{Name: "x", Args: args(hub.MaxCommandArgs, 1)}, true},
		{"args past limit", hub.SendRequest{Name: "x", Args: args(hub.MaxCommandArgs+1, 1)}, false},
		{"arg at length limit", hub.SendRequest{Name: "x", Args: args(1, hub.MaxCommandArgLen)}, true},
		{"arg past length limit", hub.SendRequest{Name: "x", Args: args(1, hub.MaxCommandArgLen+1)}, false},
		{"bad arg name", hub.SendRequest{Name: "x", Args: map[string]string{"1a": "v"}}, false},
		{"ttl 1s", hub.SendRequest{Name: "x", TTL: time.Second}, true},
		{"ttl under 1s", hub.SendRequest{Name: "x", TTL: time.Second - 1}, false},
		{"ttl negative", hub.SendRequest{Name: "x", TTL: -time.Hour}, false},
		{"ttl at max", hub.SendRequest{Name: "x", TTL: hub.MaxCommandTTL}, true},
		{"ttl past max", hub.SendRequest{Name: "x", TTL: hub.MaxCommandTTL + 1}, false},
		{"timeout 1s", hub.SendRequest{Name: "x", Timeout: time.Second}, true},
		{"timeout under 1s", hub.SendRequest{Name: "x", Timeout: time.Second - 1}, false},
		{"timeout at max", hub.SendRequest{Name: "x", Timeout: hub.MaxCommandTimeout}, true},
		{"timeout past max", hub.SendRequest{Name: "x", Timeout: hub.MaxCommandTimeout + 1}, false},
	} {
		tc.req.DeviceID = "pi-01"
		c, err := e.svc.Send(ctx, tc.req)
		switch {
		case tc.ok && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case !tc.ok && !errors.Is(err, hub.ErrInvalidInput):
			t.Errorf("%s: %v (command %q), want ErrInvalidInput", tc.name, err, c.ID)
		}
	}
	// Defaults apply to zero TTL and timeout.
	c := e.send(t, hub.SendRequest{DeviceID: "pi-01"})
	if c.ExpiresAt.Sub(c.CreatedAt) != hub.DefaultCommandTTL || c.TimeoutMs != hub.DefaultCommandTimeout.Milliseconds() {
		t.Fatalf("defaults: ttl %s, timeout %dms", c.ExpiresAt.Sub(c.CreatedAt), c.TimeoutMs)
	}
	if _, err := e.svc.Send(ctx, hub.SendRequest{Name: "x"}); !errors.Is(err, hub.ErrInvalidInput) {
		t.Fatalf("no device: %v, want ErrInvalidInput", err)
	}
	if _, err := e.svc.Send(ctx, hub.SendRequest{DeviceID: "ghost", Name: "x"}); !errors.Is(err, hub.ErrNotFound) {
		t.Fatalf("unknown device: %v, want ErrNotFound", err)
	}
	// Only the 7 valid requests and the defaults one were stored.
	if list, err := e.svc.List(ctx, hub.CommandFilter{DeviceID: "pi-01"}); err != nil || len(list) != 8 {
		t.Fatalf("stored %d commands, %v; want 8", len(list), err)
	}
}

// TestReceivedWithoutResultTimesOut: a device that took a command and then
// reports nothing is timed out by the hub after the timeout plus grace.
func TestReceivedWithoutResultTimesOut(t *testing.T) {
	var skew atomic.Int64
	e := newCmdEnv(t, func() time.Time { return time.Now().Add(time.Duration(skew.Load())) })
	e.device(t, "pi-01", nil)
	sess := e.online(t, "pi-01")
	c := e.send(t, hub.SendRequest{DeviceID: "pi-01", Timeout: time.Second})
	sess.next(t)
	if err := e.svc.HandleResult(context.Background(), "pi-01", &protocol.CommandResult{ID: c.ID, State: "received"}); err != nil {
		t.Fatal(err)
	}
	got, err := e.svc.Get(context.Background(), c.ID)
	if err != nil || got.State != hub.StateReceived {
		t.Fatalf("after received: %+v %v", got, err)
	}
	// Before timeout + 30 s grace, a sweep (every 2 s) changes nothing...
	skew.Store(int64(25 * time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if w, err := e.svc.Wait(ctx, c.ID, got.Version); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("changed before the grace ended: %+v %v", w, err)
	}
	// ...past it, the command is timed out.
	skew.Store(int64(32 * time.Second))
	w := <-e.waiter(c.ID, got.Version)
	if w.State != hub.StateTimedOut || w.Error == "" || strings.HasPrefix(w.Error, "wait:") {
		t.Fatalf("past timeout + grace: %+v", w)
	}
}

// TestOutputPastCapWritesNothing: once a stream is full and marked
// truncated, more output neither rewrites the command nor wakes waiters.
func TestOutputPastCapWritesNothing(t *testing.T) {
	ctx := context.Background()
	e := newCmdEnv(t)
	e.device(t, "pi-01", nil)
	sess := e.online(t, "pi-01")
	c := e.send(t, hub.SendRequest{DeviceID: "pi-01"})
	sess.next(t)
	big := []byte(strings.Repeat("x", hub.MaxCommandOutput+1))
	for i := 0; i < 2; i++ {
		if err := e.svc.HandleResult(ctx, "pi-01", &protocol.CommandResult{ID: c.ID, State: "output", Stdout: big}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := e.svc.Get(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Stdout) != hub.MaxCommandOutput || !got.Truncated {
		t.Fatalf("stdout %d bytes, truncated %v", len(got.Stdout), got.Truncated)
	}
	if got.Version != c.Version+1 {
		t.Fatalf("version %d after two capped chunks, want %d (only the first writes)", got.Version, c.Version+1)
	}
}

// dueRecorder is the real store, recording what the sweeps read.
// PendingCommands answers at once for "ghost", a device that does not
// exist: a test floods the delivery queue with it, and under the race
// detector 16,384 real queries take longer than the test may wait.
type dueRecorder struct {
	*store.Store
	mu     sync.Mutex
	sweeps int
	read   []string // command ids
}

func (r *dueRecorder) DueCommands(ctx context.Context, q hub.DueQuery) ([]hub.Command, error) {
	cmds, err := r.Store.DueCommands(ctx, q)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sweeps++
	for _, c := range cmds {
		r.read = append(r.read, c.ID)
	}
	return cmds, err
}

func (r *dueRecorder) PendingCommands(ctx context.Context, deviceID string) ([]hub.Command, error) {
	if deviceID == "ghost" {
		return nil, nil
	}
	return r.Store.PendingCommands(ctx, deviceID)
}

func (r *dueRecorder) snapshot() (sweeps int, read []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sweeps, slices.Clone(r.read)
}

// TestSweepSkipsWaitingCommands: commands queued for offline devices (a
// bulk send) and in flight to an online one are not read by the sweeps;
// the one command due is.
func TestSweepSkipsWaitingCommands(t *testing.T) {
	ctx := context.Background()
	rec := &dueRecorder{}
	e := newCmdEnvWrapped(t, func(st *store.Store) hub.CommandStore { rec.Store = st; return rec })
	const n = 200
	for i := range n {
		e.device(t, fmt.Sprintf("off-%03d", i), map[string]string{"group": "off"})
	}
	e.device(t, "pi-on", nil)
	sess := e.online(t, "pi-on")
	if _, err := e.svc.SendBulk(ctx, hub.SendRequest{Selector: map[string]string{"group": "off"}, Name: "reboot"}); err != nil {
		t.Fatal(err)
	}
	e.send(t, hub.SendRequest{DeviceID: "pi-on"})
	sess.next(t)
	short := e.send(t, hub.SendRequest{DeviceID: "off-000", TTL: time.Second})
	e.pollState(t, short.ID, hub.StateExpired)
	// One whole sweep more after the expiry.
	after, _ := rec.snapshot()
	var sweeps int
	eventually(t, func() string { return fmt.Sprintf("%d sweeps after the expiry, want 2", sweeps-after) },
		func() bool { sweeps, _ = rec.snapshot(); return sweeps >= after+2 })
	sweeps, read := rec.snapshot()
	if len(read) == 0 || slices.ContainsFunc(read, func(id string) bool { return id != short.ID }) {
		t.Fatalf("%d sweeps read %d commands (%v...), want only the expired %s", sweeps, len(read), read[:min(3, len(read))], short.ID)
	}
}

// blockingSession takes a command only once released, telling entered
// when it starts waiting.
type blockingSession struct {
	entered chan struct{}
	release chan struct{}
}

func (b *blockingSession) Close(protocol.CloseCode, string) {}

func (b *blockingSession) SendCommand(ctx context.Context, _ *protocol.Command) error {
	b.entered <- struct{}{}
	select {
	case <-b.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestSweepRetriesDroppedDelivery: a device connects while the delivery
// workers are swamped, so its connect-time delivery is dropped; the
// sweep reads its queued command and pushes it all the same.
func TestSweepRetriesDroppedDelivery(t *testing.T) {
	rec := &dueRecorder{}
	e := newCmdEnvWrapped(t, func(st *store.Store) hub.CommandStore { rec.Store = st; return rec })
	e.device(t, "slow", nil)
	e.device(t, "pi-01", nil)
	c := e.send(t, hub.SendRequest{DeviceID: "pi-01"}) // offline: queued
	// Both workers stuck pushing to a slow device...
	slow := &blockingSession{entered: make(chan struct{}, 2), release: make(chan struct{})}
	e.reg.Register("slow", slow)
	for range 2 {
		e.send(t, hub.SendRequest{DeviceID: "slow"})
		select {
		case <-slow.entered:
		case <-time.After(waitFor):
			t.Fatal("no worker took the slow device's command")
		}
	}
	// ...and more deliveries than their queue holds.
	for range 20_000 {
		e.svc.DeviceConnected("ghost")
	}
	sess := e.online(t, "pi-01")
	e.svc.DeviceConnected("pi-01") // dropped
	close(slow.release)
	if msg := sess.next(t); msg.ID != c.ID {
		t.Fatalf("pushed %s, want %s", msg.ID, c.ID)
	}
	e.pollState(t, c.ID, hub.StateSent)
	if _, read := rec.snapshot(); !slices.Contains(read, c.ID) {
		t.Fatalf("sweeps read %v, not %s: its delivery was not dropped", read, c.ID)
	}
}
