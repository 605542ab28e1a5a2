package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/hub"
)

// base is a fixed creation time with nanoseconds, to prove none are lost.
var base = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)

func newCmd(id, device string, created time.Time) hub.Command {
	return hub.Command{
		ID: id, DeviceID: device, Name: "reboot", SentBy: "ci", State: hub.StateQueued,
		CreatedAt: created, ExpiresAt: created.Add(time.Hour), TimeoutMs: 60_000, Version: 1,
	}
}

func mustCreateCommands(t testing.TB, s *Store, cmds ...hub.Command) {
	t.Helper()
	if err := s.CreateCommands(context.Background(), cmds); err != nil {
		t.Fatalf("CreateCommands: %v", err)
	}
}

func ids(cmds []hub.Command) string {
	out := make([]string, len(cmds))
	for i, c := range cmds {
		out[i] = c.ID
	}
	return strings.Join(out, ",")
}

func TestCommandRoundTrip(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	mustCreate(t, s, "pi-01", nil)
	sent, recv, fin := base.Add(time.Second), base.Add(2*time.Second), base.Add(3*time.Second)
	exit := int64(-1)
	full := hub.Command{
		ID: "c-full", BulkID: "b1", DeviceID: "pi-01", Name: "run",
		Args: map[string]string{"cmd": "uptime", "dot.key": "ü"}, SentBy: "ops",
		State: hub.StateFailed, CreatedAt: base, ExpiresAt: base.Add(time.Hour), TimeoutMs: 5000,
		SentAt: &sent, ReceivedAt: &recv, FinishedAt: &fin, ExitCode: &exit,
		Stdout: "out\xff\x00bytes", Stderr: "err", Truncated: true, DurationMs: 1234,
		Error: "exit status 255", Version: 7,
	}
	bare := newCmd("c-bare", "pi-01", base)
	empty := newCmd("c-empty", "pi-01", base)
	empty.Args = map[string]string{}
	zeroExit := newCmd("c-zero", "pi-01", base)
	zero := int64(0)
	zeroExit.ExitCode = &zero
	mustCreateCommands(t, s, full, bare, empty, zeroExit)
	for _, want := range []hub.Command{full, bare, empty, zeroExit} {
		got, err := s.GetCommand(ctx, want.ID)
		if err != nil {
			t.Fatalf("GetCommand(%s): %v", want.ID, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("GetCommand(%s)\n got %+v\nwant %+v", want.ID, got, want)
		}
	}
	got, _ := s.GetCommand(ctx, "c-bare")
	if got.Args != nil || got.SentAt != nil || got.ExitCode != nil || got.BulkID != "" {
		t.Errorf("bare command came back with values: %+v", got)
	}
	got, _ = s.GetCommand(ctx, "c-empty")
	if got.Args == nil || len(got.Args) != 0 {
		t.Errorf("empty args came back as %#v, want empty non-nil map", got.Args)
	}
	if _, err := s.GetCommand(ctx, "nope"); !errors.Is(err, hub.ErrNotFound) {
		t.Fatalf("GetCommand(unknown): %v, want ErrNotFound", err)
	}
}

func TestCreateCommandsRefusals(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	mustCreate(t, s, "pi-01", nil)
	mustCreate(t, s, "pi-02", nil)
	if err := s.RevokeDevice(ctx, "pi-02"); err != nil {
		t.Fatal(err)
	}
	mustCreateCommands(t, s, newCmd("c1", "pi-01", base))
	bad := newCmd("c-state", "pi-01", base)
	bad.State = "running"
	for name, tc := range map[string]struct {
		cmds []hub.Command
		want error
	}{
		"duplicate id":   {[]hub.Command{newCmd("c2", "pi-01", base), newCmd("c1", "pi-01", base)}, hub.ErrConflict},
		"unknown device": {[]hub.Command{newCmd("c3", "pi-01", base), newCmd("c4", "ghost", base)}, hub.ErrNotFound},
		"revoked device": {[]hub.Command{newCmd("c5", "pi-02", base)}, hub.ErrConflict},
		"bad state":      {[]hub.Command{bad}, hub.ErrInvalidInput},
	} {
		if err := s.CreateCommands(ctx, tc.cmds); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	// All or nothing: the good commands of the refused batches are gone.
	all, err := s.ListCommands(ctx, hub.CommandFilter{})
	if err != nil || ids(all) != "c1" {
		t.Fatalf("after refusals: %s, %v; want only c1", ids(all), err)
	}
	if err := s.CreateCommands(ctx, nil); err != nil {
		t.Fatalf("CreateCommands(nil): %v", err)
	}
}

func TestUpdateCommand(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	mustCreate(t, s, "pi-01", nil)
	c := newCmd("c1", "pi-01", base)
	c.Args = map[string]string{"a": "1"}
	mustCreateCommands(t, s, c)

	now := base.Add(time.Minute)
	got, err := s.UpdateCommand(ctx, "c1", func(c *hub.Command) error {
		c.State, c.SentAt = hub.StateSent, &now
		c.Version = 100 // ignored: the store owns the version
		c.ID = "other"  // ignored: the id is the key
		return nil
	})
	if err != nil || got.Version != 2 || got.State != hub.StateSent || got.ID != "c1" {
		t.Fatalf("UpdateCommand = %+v, %v", got, err)
	}
	stored, _ := s.GetCommand(ctx, "c1")
	if !reflect.DeepEqual(stored, got) {
		t.Fatalf("stored %+v\nreturned %+v", stored, got)
	}

	errStop := errors.New("stop")
	got, err = s.UpdateCommand(ctx, "c1", func(c *hub.Command) error {
		c.State = hub.StateFailed
		c.Args["a"] = "changed"
		*c.SentAt = base
		return fmt.Errorf("wrapped: %w", errStop)
	})
	if !errors.Is(err, errStop) || err.Error() != "wrapped: stop" {
		t.Fatalf("fn error came back as %v", err)
	}
	if !reflect.DeepEqual(got, stored) {
		t.Fatalf("on fn error returned %+v, want the unchanged %+v", got, stored)
	}
	if after, _ := s.GetCommand(ctx, "c1"); !reflect.DeepEqual(after, stored) {
		t.Fatalf("fn error still saved: %+v", after)
	}
	if _, err := s.UpdateCommand(ctx, "c1", func(c *hub.Command) error { c.State = "bogus"; return nil }); !errors.Is(err, hub.ErrInvalidInput) {
		t.Fatalf("bogus state: %v, want ErrInvalidInput", err)
	}
	if _, err := s.UpdateCommand(ctx, "nope", func(*hub.Command) error { return nil }); !errors.Is(err, hub.ErrNotFound) {
		t.Fatalf("UpdateCommand(unknown): %v, want ErrNotFound", err)
	}
}

// TestUpdateCommandConcurrent checks that concurrent read-modify-writes
// serialize: no increment and no version is lost.
func TestUpdateCommandConcurrent(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	mustCreate(t, s, "pi-01", nil)
	mustCreateCommands(t, s, newCmd("c1", "pi-01", base))
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			_, err := s.UpdateCommand(ctx, "c1", func(c *hub.Command) error {
				c.DurationMs++
				return nil
			})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	c, _ := s.GetCommand(ctx, "c1")
	if c.DurationMs != n || c.Version != n+1 {
		t.Fatalf("after %d updates: duration %d, version %d", n, c.DurationMs, c.Version)
	}
}

func TestListCommands(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	mustCreate(t, s, "pi-01", nil)
	mustCreate(t, s, "pi-02", nil)
	var cmds []hub.Command
	// c0..c5 one second apart; c6 and c7 share c5's time so the id breaks
	// the tie.
	for i := range 8 {
		c := newCmd(fmt.Sprintf("c%d", i), []string{"pi-01", "pi-02"}[i%2], base.Add(time.Duration(min(i, 5))*time.Second))
		if i >= 4 {
			c.BulkID = "b1"
		}
		if i == 3 || i == 6 {
			c.State = hub.StateSucceeded
		}
		cmds = append(cmds, c)
	}
	mustCreateCommands(t, s, cmds...)
	for _, tc := range []struct {
		f    hub.CommandFilter
		want string
	}{
		{hub.CommandFilter{}, "c7,c6,c5,c4,c3,c2,c1,c0"},
		{hub.CommandFilter{DeviceID: "pi-01"}, "c6,c4,c2,c0"},
		{hub.CommandFilter{BulkID: "b1"}, "c7,c6,c5,c4"},
		{hub.CommandFilter{State: hub.StateSucceeded}, "c6,c3"},
		{hub.CommandFilter{DeviceID: "pi-02", BulkID: "b1", State: hub.StateQueued}, "c7,c5"},
		{hub.CommandFilter{Limit: 3}, "c7,c6,c5"},
		{hub.CommandFilter{Limit: 3, BeforeID: "c5"}, "c4,c3,c2"},
		{hub.CommandFilter{BeforeID: "c6"}, "c5,c4,c3,c2,c1,c0"},
		{hub.CommandFilter{BeforeID: "c0"}, ""},
		{hub.CommandFilter{DeviceID: "pi-03"}, ""},
		{hub.CommandFilter{BulkID: "b2"}, ""},
	} {
		got, err := s.ListCommands(ctx, tc.f)
		if err != nil || ids(got) != tc.want {
			t.Errorf("ListCommands(%+v) = %s, %v; want %s", tc.f, ids(got), err, tc.want)
		}
	}
	if _, err := s.ListCommands(ctx, hub.CommandFilter{BeforeID: "nope"}); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("unknown BeforeID: %v, want ErrNotFound", err)
	}
	if _, err := s.ListCommands(ctx, hub.CommandFilter{State: "bogus"}); !errors.Is(err, hub.ErrInvalidInput) {
		t.Errorf("bogus state: %v, want ErrInvalidInput", err)
	}
}

// TestListCommandsLimits fills past the caps and checks default, edge and
// past-the-edge limits, for plain and bulk listings.
func TestListCommandsLimits(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	mustCreate(t, s, "pi-01", nil)
	n := MaxCommandLimit + 5
	cmds := make([]hub.Command, n)
	for i := range cmds {
		cmds[i] = newCmd(fmt.Sprintf("c%05d", i), "pi-01", base.Add(time.Duration(i)*time.Millisecond))
		cmds[i].BulkID = "b1"
	}
	mustCreateCommands(t, s, cmds...)
	for _, tc := range []struct {
		f    hub.CommandFilter
		want int
	}{
		{hub.CommandFilter{}, DefaultCommandLimit},
		{hub.CommandFilter{Limit: -1}, DefaultCommandLimit},
		{hub.CommandFilter{Limit: 1}, 1},
		{hub.CommandFilter{Limit: MaxCommandLimit}, MaxCommandLimit},
		{hub.CommandFilter{Limit: MaxCommandLimit + 1}, MaxCommandLimit},
		{hub.CommandFilter{BulkID: "b1", Limit: MaxCommandLimit + 1}, MaxCommandLimit + 1},
		{hub.CommandFilter{BulkID: "b1", Limit: MaxBulkCommandLimit}, n},
		{hub.CommandFilter{BulkID: "b1", Limit: MaxBulkCommandLimit + 1}, n},
	} {
		got, err := s.ListCommands(ctx, tc.f)
		if err != nil || len(got) != tc.want {
			t.Errorf("ListCommands(%+v): %d commands, %v; want %d", tc.f, len(got), err, tc.want)
		}
	}
	if got := listLimit(hub.CommandFilter{BulkID: "b", Limit: MaxBulkCommandLimit + 1}); got != MaxBulkCommandLimit {
		t.Errorf("bulk limit past the edge = %d, want %d", got, MaxBulkCommandLimit)
	}
	if got, _ := s.ListCommands(ctx, hub.CommandFilter{}); got[0].ID != cmds[n-1].ID {
		t.Errorf("newest first: got %s first, want %s", got[0].ID, cmds[n-1].ID)
	}
}

func TestPendingAndDueCommands(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	mustCreate(t, s, "pi-01", nil)
	mustCreate(t, s, "pi-02", nil)
	states := []hub.CommandState{hub.StateQueued, hub.StateSent, hub.StateReceived, hub.StateSucceeded,
		hub.StateFailed, hub.StateTimedOut, hub.StateRejected, hub.StateExpired, hub.StateCanceled}
	var cmds []hub.Command
	// Created newest state first, so "oldest first" is not insertion order.
	for i, st := range states {
		for j, dev := range []string{"pi-01", "pi-02"} {
			c := newCmd(fmt.Sprintf("%s-%s", dev, st), dev, base.Add(time.Duration(len(states)-i)*time.Second+time.Duration(j)))
			c.State, c.SentAt, c.ReceivedAt = st, &c.CreatedAt, &c.CreatedAt
			cmds = append(cmds, c)
		}
	}
	mustCreateCommands(t, s, cmds...)
	pending, err := s.PendingCommands(ctx, "pi-01")
	if want := "pi-01-received,pi-01-sent,pi-01-queued"; err != nil || ids(pending) != want {
		t.Fatalf("PendingCommands = %s, %v; want %s", ids(pending), err, want)
	}
	if p, err := s.PendingCommands(ctx, "ghost"); err != nil || len(p) != 0 {
		t.Fatalf("PendingCommands(ghost) = %s, %v", ids(p), err)
	}
	// A day on, every open command is due by some rule, and no final one
	// is, though each has the times that would make it due.
	q := hub.DueQuery{Now: base.Add(24 * time.Hour), QueuedOf: []string{"pi-01", "pi-02"}}
	want := "pi-01-received,pi-02-received,pi-01-sent,pi-02-sent,pi-01-queued,pi-02-queued"
	for limit, want := range map[int]string{0: want, 1: "pi-01-received", 6: want, 7: want} {
		q.Limit = limit
		if due, err := s.DueCommands(ctx, q); err != nil || ids(due) != want {
			t.Errorf("DueCommands(limit %d) = %s, %v; want %s", limit, ids(due), err, want)
		}
	}
	// A command leaving the open set leaves the partial indexes too.
	if _, err := s.UpdateCommand(ctx, "pi-01-queued", func(c *hub.Command) error { c.State = hub.StateCanceled; return nil }); err != nil {
		t.Fatal(err)
	}
	if pending, _ := s.PendingCommands(ctx, "pi-01"); ids(pending) != "pi-01-received,pi-01-sent" {
		t.Fatalf("after cancel PendingCommands = %s", ids(pending))
	}
	q.Limit = 0
	if due, _ := s.DueCommands(ctx, q); ids(due) != "pi-01-received,pi-02-received,pi-01-sent,pi-02-sent,pi-02-queued" {
		t.Fatalf("after cancel DueCommands = %s", ids(due))
	}
}

// TestDueCommandsEdges checks each rule of hub.DueQuery at its edge and one
// nanosecond short of it, and that nothing else comes back.
func TestDueCommandsEdges(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	for _, d := range []string{"pi-01", "pi-02"} {
		mustCreate(t, s, d, nil)
	}
	// Distinct durations, so a swapped parameter shows.
	const grace, redeliver, timeout = 7 * time.Second, 11 * time.Second, 3 * time.Second
	now := base.Add(time.Hour)
	at := func(d time.Duration) *time.Time { t := now.Add(d); return &t }
	var cmds []hub.Command
	add := func(id string, st hub.CommandState, f func(*hub.Command)) {
		c := newCmd(id, "pi-01", base.Add(time.Duration(len(cmds))*time.Second))
		c.State, c.TimeoutMs, c.ExpiresAt = st, timeout.Milliseconds(), now.Add(time.Hour)
		if st != hub.StateQueued {
			c.SentAt = at(0) // just pushed: not due for redelivery
		}
		if st == hub.StateReceived {
			c.ReceivedAt = at(0)
		}
		f(&c)
		cmds = append(cmds, c)
	}
	// TTL: due once now >= expires_at, unless received.
	add("queued-expires-now", hub.StateQueued, func(c *hub.Command) { c.ExpiresAt = now })
	add("queued-expires-1ns-later", hub.StateQueued, func(c *hub.Command) { c.ExpiresAt = *at(1) })
	add("sent-expires-now", hub.StateSent, func(c *hub.Command) { c.ExpiresAt = now })
	add("sent-expires-1ns-later", hub.StateSent, func(c *hub.Command) { c.ExpiresAt = *at(1) })
	add("received-expired", hub.StateReceived, func(c *hub.Command) { c.ExpiresAt = *at(-time.Hour) })
	// Result timeout: due once now >= received_at + timeout + grace.
	add("received-timeout-now", hub.StateReceived, func(c *hub.Command) { c.ReceivedAt = at(-timeout - grace) })
	add("received-timeout-1ns-later", hub.StateReceived, func(c *hub.Command) { c.ReceivedAt = at(-timeout - grace + 1) })
	add("received-no-time", hub.StateReceived, func(c *hub.Command) { c.ReceivedAt = nil })
	add("sent-received-long-ago", hub.StateSent, func(c *hub.Command) { c.ReceivedAt = at(-time.Hour) })
	// Redelivery: due once now - sent_at > redeliver.
	add("sent-1ns-past-redeliver", hub.StateSent, func(c *hub.Command) { c.SentAt = at(-redeliver - 1) })
	add("sent-at-redeliver", hub.StateSent, func(c *hub.Command) { c.SentAt = at(-redeliver) })
	add("received-1ns-past-redeliver", hub.StateReceived, func(c *hub.Command) { c.SentAt = at(-redeliver - 1) })
	add("received-at-redeliver", hub.StateReceived, func(c *hub.Command) { c.SentAt = at(-redeliver) })
	// Queued: due only for a listed device (pi-02); its sent ones keep to
	// the time rules; a command due by two rules comes back once.
	add("queued-listed", hub.StateQueued, func(c *hub.Command) { c.DeviceID = "pi-02" })
	add("queued-listed-expired", hub.StateQueued, func(c *hub.Command) { c.DeviceID, c.ExpiresAt = "pi-02", now })
	add("sent-listed", hub.StateSent, func(c *hub.Command) { c.DeviceID = "pi-02" })
	add("queued-unlisted", hub.StateQueued, func(*hub.Command) {})
	// Final commands never are, whatever their times.
	add("succeeded-old", hub.StateSucceeded, func(c *hub.Command) {
		c.ExpiresAt, c.SentAt, c.ReceivedAt = now, at(-time.Hour), at(-time.Hour)
	})
	mustCreateCommands(t, s, cmds...)

	q := hub.DueQuery{Now: now, ResultGrace: grace, RedeliverAfter: redeliver, QueuedOf: []string{"pi-02", "ghost"}}
	due, err := s.DueCommands(ctx, q)
	want := "queued-expires-now,sent-expires-now,received-timeout-now,sent-1ns-past-redeliver," +
		"received-1ns-past-redeliver,queued-listed,queued-listed-expired"
	if err != nil || ids(due) != want {
		t.Fatalf("DueCommands =\n %s, %v\nwant\n %s", ids(due), err, want)
	}
	// One nanosecond earlier, only the listed queued command is due.
	q.Now = now.Add(-1)
	if due, err := s.DueCommands(ctx, q); err != nil || ids(due) != "queued-listed,queued-listed-expired" {
		t.Fatalf("DueCommands 1ns earlier = %s, %v", ids(due), err)
	}
	q.QueuedOf = nil
	if due, err := s.DueCommands(ctx, q); err != nil || len(due) != 0 {
		t.Fatalf("DueCommands 1ns earlier, no device listed = %s, %v", ids(due), err)
	}
}

// TestDueCommandsWithoutOutput: a due command comes back whole but for
// its output, which the sweep never needs.
func TestDueCommandsWithoutOutput(t *testing.T) {
	s, _ := openTest(t)
	mustCreate(t, s, "pi-01", nil)
	c := newCmd("c1", "pi-01", base)
	c.BulkID, c.Args, c.Error = "b1", map[string]string{"a": "1"}, "e"
	c.State, c.SentAt, c.ReceivedAt = hub.StateReceived, &base, &base
	c.Stdout, c.Stderr, c.Truncated = strings.Repeat("o", 100<<10), "err", true
	mustCreateCommands(t, s, c)
	due, err := s.DueCommands(context.Background(), hub.DueQuery{Now: base.Add(time.Hour)})
	if err != nil || len(due) != 1 {
		t.Fatalf("DueCommands = %s, %v; want c1", ids(due), err)
	}
	c.Stdout, c.Stderr = "", ""
	if !reflect.DeepEqual(due[0], c) {
		t.Fatalf("due command\n got %+v\nwant %+v", due[0], c)
	}
}

// TestDueCommandsQueryPlan guards the sweep's cost: it must read the
// indexes that hold only what may be due, never scan the history or the
// open commands.
func TestDueCommandsQueryPlan(t *testing.T) {
	s, _ := openTest(t)
	for _, tc := range []struct {
		q       string
		args    []any
		indexes []string
	}{
		{pendingCommandsQuery, []any{"pi-01"}, []string{"commands_device_open"}},
		{dueCommandsQuery, []any{sql.Named("now", 1), sql.Named("sent_before", 1), sql.Named("grace", 1),
			sql.Named("devices", `["pi-01"]`), sql.Named("limit", 10)},
			[]string{"commands_unreceived_expiry (expires_at<?)", "commands_state (state=?)", "commands_device_open (device_id=?)"}},
	} {
		rows, err := s.db.Query(`EXPLAIN QUERY PLAN `+tc.q, tc.args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		p := strings.Join(plan, "; ")
		for _, ix := range tc.indexes {
			if !strings.Contains(p, "SEARCH commands USING INDEX "+ix) {
				t.Errorf("plan for %q: %s; want a search of %s", tc.q, p, ix)
			}
		}
		if strings.Contains(p, "SCAN commands") || tc.q == pendingCommandsQuery && strings.Contains(p, "TEMP B-TREE") {
			t.Errorf("plan for %q: %s", tc.q, p)
		}
	}
}

func TestDevicesMatching(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	mustCreate(t, s, "a", map[string]string{"site": "lab", "role": "gw"})
	mustCreate(t, s, "b", map[string]string{"site": "lab"})
	mustCreate(t, s, "c", map[string]string{"site": "field", "role": "gw", "hw.rev": "3"})
	mustCreate(t, s, "d", nil)
	mustCreate(t, s, "e", map[string]string{"site": "lab", "role": "gw"})
	if err := s.RevokeDevice(ctx, "e"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		sel  map[string]string
		want string
	}{
		{nil, "a,b,c,d"},
		{map[string]string{}, "a,b,c,d"},
		{map[string]string{"site": "lab"}, "a,b"},
		{map[string]string{"site": "lab", "role": "gw"}, "a"},
		{map[string]string{"role": "gw"}, "a,c"},
		{map[string]string{"hw.rev": "3"}, "c"},
		{map[string]string{"site": "LAB"}, ""},
		{map[string]string{"site": ""}, ""},
		{map[string]string{"nokey": "x"}, ""},
		{map[string]string{"site": "lab", "role": "db"}, ""},
	} {
		devs, err := s.DevicesMatching(ctx, tc.sel)
		got := make([]string, len(devs))
		for i, d := range devs {
			got[i] = d.ID
		}
		if err != nil || strings.Join(got, ",") != tc.want {
			t.Errorf("DevicesMatching(%v) = %v, %v; want %s", tc.sel, got, err, tc.want)
		}
	}
	devs, _ := s.DevicesMatching(ctx, map[string]string{"site": "field"})
	if len(devs) != 1 || devs[0].Labels["hw.rev"] != "3" || devs[0].CreatedAt.IsZero() {
		t.Fatalf("matched device not filled in: %+v", devs)
	}
}

func bulkCommands(n int) []hub.Command {
	cmds := make([]hub.Command, n)
	for i := range cmds {
		cmds[i] = newCmd(fmt.Sprintf("c%06d", i), fmt.Sprintf("d%05d", i), base)
		cmds[i].BulkID = "b1"
		cmds[i].Args = map[string]string{"x": "y"}
	}
	return cmds
}

// createBulkDevices inserts n devices in one transaction; CreateDevice
// one by one would dominate the test's time.
func createBulkDevices(t testing.TB, s *Store, n int) {
	t.Helper()
	ctx := context.Background()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	for i := range n {
		id := fmt.Sprintf("d%05d", i)
		if _, err := tx.ExecContext(ctx, `INSERT INTO devices (id, token_hash, created_at) VALUES (?, ?, 0)`, id, hashToken(id)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// TestCreateTenThousandCommands is the bulk-send size; speed is measured
// by BenchmarkCreateCommands, this proves it works in one go.
func TestCreateTenThousandCommands(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	const n = 10_000
	createBulkDevices(t, s, n)
	mustCreateCommands(t, s, bulkCommands(n)...)
	got, err := s.ListCommands(ctx, hub.CommandFilter{BulkID: "b1", Limit: MaxBulkCommandLimit})
	if err != nil || len(got) != n {
		t.Fatalf("bulk listing: %d, %v; want %d", len(got), err, n)
	}
	// A whole bulk may expire in one sweep.
	due, err := s.DueCommands(ctx, hub.DueQuery{Now: base.Add(hub.MaxCommandTTL), Limit: 50_000})
	if err != nil || len(due) != n {
		t.Fatalf("DueCommands: %d, %v; want %d", len(due), err, n)
	}
}

func BenchmarkCreateCommands(b *testing.B) {
	const n = 10_000
	s, _ := openTest(b)
	createBulkDevices(b, s, n)
	cmds := bulkCommands(n)
	for i := 0; b.Loop(); i++ {
		for j := range cmds {
			cmds[j].ID = fmt.Sprintf("r%d-%06d", i, j)
		}
		if err := s.CreateCommands(context.Background(), cmds); err != nil {
			b.Fatal(err)
		}
	}
}

// sweepFixture stores 20,000 open commands as a bulk send to offline
// devices leaves them, 100 of them in flight, and returns a sweep's query
// at which only the commands in want are due: expired, unanswered past
// the redelivery delay, past timeout + grace, queued for a listed device.
func sweepFixture(tb testing.TB) (s *Store, q hub.DueQuery, want string) {
	tb.Helper()
	const n = 20_000
	s, _ = openTest(tb)
	createBulkDevices(tb, s, n)
	cmds := bulkCommands(n)
	now := base.Add(10 * time.Minute)
	recent, old := now.Add(-time.Second), now.Add(-2*time.Minute)
	q = hub.DueQuery{Now: now, ResultGrace: 30 * time.Second, RedeliverAfter: 30 * time.Second, Limit: 50_000}
	for i := n - 100; i < n; i++ { // in flight, not due; their devices listed
		cmds[i].State, cmds[i].SentAt = hub.StateSent, &recent
		q.QueuedOf = append(q.QueuedOf, cmds[i].DeviceID)
	}
	cmds[10].ExpiresAt = now.Add(-time.Second)
	cmds[11].State, cmds[11].SentAt, cmds[11].ExpiresAt = hub.StateSent, &recent, now
	cmds[12].State, cmds[12].SentAt = hub.StateSent, &old
	cmds[13].State, cmds[13].SentAt, cmds[13].ReceivedAt = hub.StateReceived, &old, &old
	cmds[13].Stdout = strings.Repeat("o", 64<<10)
	q.QueuedOf = append(q.QueuedOf, cmds[20].DeviceID)
	mustCreateCommands(tb, s, cmds...)
	return s, q, "c000010,c000011,c000012,c000013,c000020"
}

// BenchmarkSweepCommands measures what a sweep reads from the store when
// a handful of 20,000 open commands are due.
func BenchmarkSweepCommands(b *testing.B) {
	s, q, want := sweepFixture(b)
	ctx := context.Background()
	if due, err := s.DueCommands(ctx, q); err != nil || ids(due) != want {
		b.Fatalf("DueCommands = %s, %v; want %s", ids(due), err, want)
	}
	for b.Loop() {
		if _, err := s.DueCommands(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
}
