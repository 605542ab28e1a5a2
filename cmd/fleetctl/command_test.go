package main

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/protocol"
)

// liveBuffer is an output stream a test can watch while fleetctl runs.
type liveBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newLiveBuffer() *liveBuffer { return &liveBuffer{changed: make(chan struct{}, 1)} }

func (b *liveBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	n, err := b.buf.Write(p)
	b.mu.Unlock()
	select {
	case b.changed <- struct{}{}:
	default:
	}
	return n, err
}

func (b *liveBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor returns the output once cond holds for it, failing the test
// after a generous deadline.
func (b *liveBuffer) waitFor(t *testing.T, what string, cond func(string) bool) string {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		if s := b.String(); cond(s) {
			return s
		}
		select {
		case <-b.changed:
		case <-deadline:
			t.Fatalf("timed out waiting for %s; output so far:\n%s", what, b.String())
		}
	}
}

// running is fleetctl running in the background.
type running struct {
	out, err *liveBuffer
	code     chan int
}

func (h *harness) start(args ...string) *running {
	r := &running{out: newLiveBuffer(), err: newLiveBuffer(), code: make(chan int, 1)}
	env := merge(h.env, nil) // the test may change h.env meanwhile
	go func() {
		r.code <- Run(context.Background(), args, System{
			Stdin: strings.NewReader(""), Stdout: r.out, Stderr: r.err,
			Getenv: func(k string) string { return env[k] },
			Now:    func() time.Time { return h.now },
		})
	}()
	return r
}

// firstLine waits for fleetctl's first stdout line (an id) and returns it.
func (r *running) firstLine(t *testing.T) string {
	t.Helper()
	out := r.out.waitFor(t, "the id line", func(s string) bool { return strings.Contains(s, "\n") })
	return strings.SplitN(out, "\n", 2)[0]
}

func (r *running) exit(t *testing.T) int {
	t.Helper()
	select {
	case c := <-r.code:
		return c
	case <-time.After(20 * time.Second):
		t.Fatalf("fleetctl did not finish; stdout:\n%s\nstderr:\n%s", r.out.String(), r.err.String())
		return 0
	}
}

func (h *harness) addDevice(id string, labels map[string]string) {
	h.t.Helper()
	if _, _, err := h.st.CreateDevice(context.Background(), id, labels); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) result(dev string, r *protocol.CommandResult) {
	h.t.Helper()
	if err := h.svc.HandleResult(context.Background(), dev, r); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) command(id string) hub.Command {
	h.t.Helper()
	c, err := h.svc.Get(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

func (h *harness) tokenFor(name string, role hub.Role) string {
	h.t.Helper()
	tok, err := h.st.CreateAPIToken(context.Background(), name, role)
	if err != nil {
		h.t.Fatal(err)
	}
	return tok
}

func fields(line string) string { return strings.Join(strings.Fields(line), " ") }

func TestCmdSendAndShow(t *testing.T) {
	h := newHarness(t)
	h.addDevice("pi-01", nil)
	out := h.ok("cmd", "send", "pi-01", "service.restart", "--arg", "unit=nginx", "-a", "mode=hard=yes", "--ttl", "10m", "--timeout", "30s")
	id := strings.TrimSpace(out)
	c := h.command(id)
	if c.DeviceID != "pi-01" || c.Name != "service.restart" || c.Args["unit"] != "nginx" || c.Args["mode"] != "hard=yes" ||
		c.TimeoutMs != 30000 || c.ExpiresAt.Sub(c.CreatedAt) != 10*time.Minute || c.SentBy != "admin" {
		t.Fatalf("stored command %+v", c)
	}
	out = h.ok("cmd", "show", id)
	for _, want := range []string{"ID:", id, "Device:", "pi-01", "service.restart", "mode=hard=yes,unit=nginx", "State:", "queued", "Sent by:", "admin"} {
		if !strings.Contains(out, want) {
			t.Errorf("show output lacks %q:\n%s", want, out)
		}
	}
	var shown struct {
		Command struct {
			ID    string `json:"id"`
			State string `json:"state"`
		} `json:"command"`
	}
	decodeJSON(t, h.ok("cmd", "show", id, "-o", "json"), &shown)
	if shown.Command.ID != id || shown.Command.State != "queued" {
		t.Fatalf("show json %+v", shown)
	}
	var sent struct {
		Command struct {
			ID       string `json:"id"`
			DeviceID string `json:"device_id"`
		} `json:"command"`
	}
	decodeJSON(t, h.ok("cmd", "send", "pi-01", "uptime", "-o", "json"), &sent)
	if sent.Command.ID == "" || sent.Command.DeviceID != "pi-01" {
		t.Fatalf("send json %+v", sent)
	}

	code, _, errs := h.run("cmd", "send", "nope", "uptime")
	if code != 1 || !strings.Contains(errs, "not found (404)") {
		t.Fatalf("unknown device: exit %d %q", code, errs)
	}
	code, _, errs = h.run("cmd", "show", "nope")
	if code != 1 || !strings.Contains(errs, "(404)") {
		t.Fatalf("unknown command: exit %d %q", code, errs)
	}
	usage := [][]string{
		{"cmd", "send", "pi-01"},
		{"cmd", "send", "--selector", "site=lab"},
		{"cmd", "send", "--selector", "site=lab", "pi-01", "uptime"},
		{"cmd", "send", "pi-01", "uptime", "--arg", "novalue"},
		{"cmd", "send", "pi-01", "uptime", "--ttl", "soon"},
		{"cmd", "show"},
	}
	for _, args := range usage {
		if code, _, errs := h.run(args...); code != 2 {
			t.Errorf("%v: exit %d, stderr %q", args, code, errs)
		}
	}
}

func TestCmdList(t *testing.T) {
	h := newHarness(t)
	h.addDevice("pi-01", nil)
	h.addDevice("pi-02", nil)
	a := strings.TrimSpace(h.ok("cmd", "send", "pi-01", "one"))
	b := strings.TrimSpace(h.ok("cmd", "send", "pi-02", "two"))
	c := strings.TrimSpace(h.ok("cmd", "send", "pi-01", "three"))
	h.result("pi-01", &protocol.CommandResult{ID: a, State: "failed", ExitCode: 4})

	lines := strings.Split(strings.TrimSpace(h.ok("cmd", "list")), "\n")
	if len(lines) != 4 || fields(lines[0]) != "ID DEVICE NAME STATE EXIT CREATED SENT BY" {
		t.Fatalf("list:\n%s", strings.Join(lines, "\n"))
	}
	if !strings.HasPrefix(fields(lines[1]), c+" pi-01 three queued - ") || !strings.HasPrefix(fields(lines[3]), a+" pi-01 one failed 4 ") ||
		!strings.HasSuffix(fields(lines[3]), " admin") {
		t.Fatalf("list rows:\n%s", strings.Join(lines, "\n"))
	}
	ids := func(args ...string) string {
		t.Helper()
		var resp struct {
			Commands []struct {
				ID string `json:"id"`
			} `json:"commands"`
		}
		decodeJSON(t, h.ok(append([]string{"cmd", "list", "-o", "json"}, args...)...), &resp)
		var out []string
		for _, c := range resp.Commands {
			out = append(out, c.ID)
		}
		return strings.Join(out, ",")
	}
	if got := ids("--device", "pi-01"); got != c+","+a {
		t.Errorf("--device: %s", got)
	}
	if got := ids("--state", "failed"); got != a {
		t.Errorf("--state: %s", got)
	}
	if got := ids("--limit", "1"); got != c {
		t.Errorf("--limit: %s", got)
	}
	if got := ids("--device", "pi-02", "--state", "queued"); got != b {
		t.Errorf("--device --state: %s", got)
	}
	code, _, errs := h.run("cmd", "list", "--state", "done")
	if code != 1 || !strings.Contains(errs, "state \"done\"") {
		t.Fatalf("bad state: exit %d %q", code, errs)
	}
}

func TestCmdCancel(t *testing.T) {
	h := newHarness(t)
	h.addDevice("pi-01", nil)
	id := strings.TrimSpace(h.ok("cmd", "send", "pi-01", "reboot"))
	out := h.ok("cmd", "cancel", id)
	if !strings.Contains(out, "Canceled command "+id) || !strings.Contains(out, "canceled by admin") {
		t.Fatalf("cancel output:\n%s", out)
	}
	if c := h.command(id); c.State != hub.StateCanceled {
		t.Fatalf("state after cancel: %s", c.State)
	}
	code, _, errs := h.run("cmd", "cancel", id)
	if code != 1 || strings.TrimSpace(errs) != "fleetctl: command "+id+" is canceled: only queued commands can be canceled (409)" {
		t.Fatalf("second cancel: exit %d %q", code, errs)
	}
}

func TestCmdSendWait(t *testing.T) {
	h := newHarness(t)
	h.addDevice("pi-01", nil)
	r := h.start("cmd", "send", "pi-01", "uptime", "--wait")
	id := r.firstLine(t)
	h.result("pi-01", &protocol.CommandResult{ID: id, State: "received"})
	h.result("pi-01", &protocol.CommandResult{ID: id, State: "succeeded", ExitCode: 0, Stdout: []byte("up 3 days\n"), Stderr: []byte("note\n"), DurationMs: 1500})
	if code := r.exit(t); code != 0 {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, r.out.String(), r.err.String())
	}
	out := r.out.String()
	for _, want := range []string{"State:      succeeded", "Exit code:  0", "Duration:   1.5s", "--- stdout ---\nup 3 days\n", "--- stderr ---\nnote\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("wait output lacks %q:\n%s", want, out)
		}
	}

	r = h.start("cmd", "send", "pi-01", "check", "--wait", "-o", "json")
	h.result("pi-01", &protocol.CommandResult{ID: h.onlyQueued(t), State: "failed", ExitCode: 3, Error: "disk full"})
	if code := r.exit(t); code != 1 {
		t.Fatalf("failed command: exit %d", code)
	}
	var final struct {
		Command struct {
			State    string `json:"state"`
			ExitCode int    `json:"exit_code"`
		} `json:"command"`
	}
	decodeJSON(t, r.out.String(), &final)
	if final.Command.State != "failed" || final.Command.ExitCode != 3 || !strings.Contains(r.err.String(), "failed (exit 3): disk full") {
		t.Fatalf("json wait: %+v, stderr %q", final, r.err.String())
	}
}

// onlyQueued waits until exactly one command is queued and returns its id
// (for runs whose stdout shows no id).
func (h *harness) onlyQueued(t *testing.T) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		list, err := h.svc.List(context.Background(), hub.CommandFilter{State: hub.StateQueued})
		if err != nil {
			t.Fatal(err)
		}
		if len(list) == 1 {
			return list[0].ID
		}
		<-tick.C
	}
	t.Fatal("no queued command appeared")
	return ""
}

func TestCmdSendFollow(t *testing.T) {
	h := newHarness(t)
	h.addDevice("pi-01", nil)
	r := h.start("cmd", "send", "pi-01", "logs", "--follow")
	id := r.firstLine(t)
	h.result("pi-01", &protocol.CommandResult{ID: id, State: "output", Stdout: []byte("line 1\n")})
	r.out.waitFor(t, "the first chunk", func(s string) bool { return strings.Contains(s, "line 1\n") })
	h.result("pi-01", &protocol.CommandResult{ID: id, State: "output", Stdout: []byte("line 2"), Stderr: []byte("warn\n")})
	r.err.waitFor(t, "the stderr chunk", func(s string) bool { return strings.Contains(s, "warn\n") })
	// The final result carries the whole output; only its new tail prints.
	h.result("pi-01", &protocol.CommandResult{ID: id, State: "failed", ExitCode: 1, DurationMs: 250,
		Stdout: []byte("line 1\nline 2 done"), Stderr: []byte("warn\n")})
	if code := r.exit(t); code != 1 {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, r.out.String(), r.err.String())
	}
	want := id + "\nline 1\nline 2 done\nfailed (exit 1, 250ms)\n"
	if got := r.out.String(); got != want {
		t.Fatalf("follow stdout:\n%q\nwant\n%q", got, want)
	}
	if got := r.err.String(); !strings.HasPrefix(got, "warn\nfleetctl: command "+id+" on pi-01 failed (exit 1, 250ms)") {
		t.Fatalf("follow stderr %q", got)
	}
}

func TestCmdBulk(t *testing.T) {
	h := newHarness(t)
	h.addDevice("pi-a", map[string]string{"site": "lab"})
	h.addDevice("pi-b", map[string]string{"site": "lab"})
	h.addDevice("pi-c", map[string]string{"site": "home"})

	code, out, errs := h.run("cmd", "send", "--selector", "site=home", "uptime")
	if code != 0 || !strings.HasPrefix(out, "b") || !strings.Contains(errs, "Sent to 1 device(s)") {
		t.Fatalf("bulk without wait: exit %d %q %q", code, out, errs)
	}

	r := h.start("cmd", "send", "--selector", "site=lab", "uptime", "--wait")
	bulk := r.firstLine(t)
	cmds, err := h.svc.List(context.Background(), hub.CommandFilter{BulkID: bulk})
	if err != nil || len(cmds) != 2 {
		t.Fatalf("bulk %s commands %+v %v", bulk, cmds, err)
	}
	r.err.waitFor(t, "the first progress line", func(s string) bool { return strings.Contains(s, "0/2 done: queued=2\n") })
	for _, c := range cmds {
		if c.DeviceID == "pi-a" {
			h.result("pi-a", &protocol.CommandResult{ID: c.ID, State: "succeeded", DurationMs: 40})
		} else {
			h.result("pi-b", &protocol.CommandResult{ID: c.ID, State: "failed", ExitCode: 2, Error: "no such\nunit", DurationMs: 7})
		}
	}
	if code := r.exit(t); code != 1 {
		t.Fatalf("bulk with a failure: exit %d\nstdout %s\nstderr %s", code, r.out.String(), r.err.String())
	}
	lines := strings.Split(strings.TrimSpace(r.out.String()), "\n")
	if len(lines) != 4 || lines[0] != bulk || fields(lines[1]) != "DEVICE STATE EXIT DURATION ERROR" ||
		fields(lines[2]) != "pi-a succeeded 0 40ms -" || fields(lines[3]) != "pi-b failed 2 7ms no such unit" {
		t.Fatalf("bulk summary:\n%s", r.out.String())
	}
	errs = r.err.String()
	if !strings.Contains(errs, "2/2 done: succeeded=1 failed=1\n") || !strings.Contains(errs, "1 of 2 device(s) did not succeed") ||
		strings.Contains(errs, "\r") {
		t.Fatalf("bulk stderr:\n%s", errs)
	}
	if n := strings.Count(errs, "0/2 done: queued=2\n"); n != 1 {
		t.Fatalf("an unchanged progress line was repeated %d times:\n%s", n, errs)
	}
}

func TestCmdBulkJSON(t *testing.T) {
	h := newHarness(t)
	h.addDevice("pi-a", map[string]string{"site": "lab"})
	r := h.start("cmd", "send", "--selector", "site=lab", "uptime", "--wait", "-o", "json")
	h.result("pi-a", &protocol.CommandResult{ID: h.onlyQueued(t), State: "succeeded"})
	if code := r.exit(t); code != 0 {
		t.Fatalf("exit %d: %s", code, r.err.String())
	}
	var resp struct {
		Bulk struct {
			Total   int            `json:"total"`
			Done    bool           `json:"done"`
			ByState map[string]int `json:"by_state"`
		} `json:"bulk"`
	}
	decodeJSON(t, r.out.String(), &resp)
	if resp.Bulk.Total != 1 || !resp.Bulk.Done || resp.Bulk.ByState["succeeded"] != 1 {
		t.Fatalf("bulk json %+v", resp)
	}
}

func TestViewerRefused(t *testing.T) {
	h := newHarness(t)
	h.addDevice("pi-01", nil)
	id := strings.TrimSpace(h.ok("cmd", "send", "pi-01", "uptime"))
	h.env["FLEETCTL_TOKEN"] = h.tokenFor("dash", hub.RoleViewer)
	for _, args := range [][]string{{"cmd", "send", "pi-01", "uptime"}, {"cmd", "cancel", id}} {
		code, _, errs := h.run(args...)
		if code != 1 || !strings.Contains(errs, `needs the operator role; API token "dash" has the viewer role (403)`) {
			t.Fatalf("%v as viewer: exit %d %q", args, code, errs)
		}
	}
	code, _, errs := h.run("device", "add", "pi-02")
	if code != 1 || !strings.Contains(errs, "needs the admin role") {
		t.Fatalf("device add as viewer: exit %d %q", code, errs)
	}
	if out := h.ok("cmd", "list"); !strings.Contains(out, id) {
		t.Fatalf("viewer list:\n%s", out)
	}
	if c := h.command(id); c.State != hub.StateQueued {
		t.Fatalf("refused cancel changed the command: %s", c.State)
	}
	if list, _ := h.svc.List(context.Background(), hub.CommandFilter{}); len(list) != 1 {
		t.Fatalf("refused send created a command: %d", len(list))
	}
}

func TestTokenCommands(t *testing.T) {
	h := newHarness(t)
	h.addDevice("pi-01", nil)
	out := h.ok("token", "create", "ci", "--role", "operator")
	if !strings.Contains(out, "Created API token ci with role operator") || !strings.Contains(out, "shown only this once") {
		t.Fatalf("create output:\n%s", out)
	}
	var tok string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.TrimSpace(line); strings.HasPrefix(f, "fwa_") {
			tok = f
		}
	}
	if info, err := h.st.AuthenticateAPIToken(context.Background(), tok); err != nil || info.Name != "ci" || info.Role != hub.RoleOperator {
		t.Fatalf("printed token: %+v %v", info, err)
	}
	var created struct {
		Name, Role, Token string
	}
	decodeJSON(t, h.ok("token", "create", "dash", "--role", "viewer", "-o", "json"), &created)
	if created.Name != "dash" || created.Role != "viewer" || !strings.HasPrefix(created.Token, "fwa_") {
		t.Fatalf("create json %+v", created)
	}

	lines := strings.Split(strings.TrimSpace(h.ok("token", "list")), "\n")
	if len(lines) != 4 || fields(lines[0]) != "NAME ROLE CREATED" {
		t.Fatalf("list:\n%s", strings.Join(lines, "\n"))
	}
	rows := map[string]bool{}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		rows[f[0]+" "+f[1]] = true
	}
	if !rows["admin admin"] || !rows["ci operator"] || !rows["dash viewer"] {
		t.Fatalf("list rows:\n%s", strings.Join(lines, "\n"))
	}

	admin := h.env["FLEETCTL_TOKEN"]
	h.env["FLEETCTL_TOKEN"] = tok
	h.ok("cmd", "send", "pi-01", "uptime") // the operator token works
	code, _, errs := h.run("token", "list")
	if code != 1 || !strings.Contains(errs, "needs the admin role") {
		t.Fatalf("token list as operator: exit %d %q", code, errs)
	}
	h.env["FLEETCTL_TOKEN"] = admin

	if out := h.ok("token", "delete", "ci", "--yes"); !strings.Contains(out, "Deleted API token ci") {
		t.Fatalf("delete output %q", out)
	}
	h.env["FLEETCTL_TOKEN"] = tok
	if code, _, errs := h.run("cmd", "list"); code != 1 || !strings.Contains(errs, "invalid API token (401)") {
		t.Fatalf("deleted token: exit %d %q", code, errs)
	}
	h.env["FLEETCTL_TOKEN"] = admin

	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"token", "create", "x"}, 2, "--role is required"},
		{[]string{"token", "create", "x", "--role", "root"}, 1, "(400)"},
		{[]string{"token", "create", "dash", "--role", "viewer"}, 1, "(409)"},
		{[]string{"token", "delete", "ci", "--yes"}, 1, "not found (404)"},
		{[]string{"token", "delete", "admin", "--yes"}, 1, "last admin token"},
		{[]string{"token", "delete", "dash"}, 1, "not deleted"},
	}
	for _, c := range cases {
		if code, _, errs := h.run(c.args...); code != c.code || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d (want %d), stderr %q (want %q)", c.args, code, c.code, errs, c.want)
		}
	}
}
