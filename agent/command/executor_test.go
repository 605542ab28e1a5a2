package command

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/protocol"
)

func TestPing(t *testing.T) {
	e, s := newExecutor(t, Config{Enabled: true}, Builtins{})
	e.Handle(protocol.Command{ID: "p1", Name: NamePing})
	r := s.waitFinal(t, "p1")
	if r.State != StateSucceeded || string(r.Stdout) != "pong\n" {
		t.Fatalf("ping: %+v", r)
	}
	if got := states(s.results("p1")); !reflect.DeepEqual(got, []string{StateReceived, StateSucceeded}) {
		t.Fatalf("states %v", got)
	}
}

func TestInfo(t *testing.T) {
	e, s := newExecutor(t, Config{Enabled: true}, Builtins{Info: func() map[string]any {
		return map[string]any{"version": "1.2.3"}
	}})
	e.Handle(protocol.Command{ID: "i1", Name: NameInfo})
	r := s.waitFinal(t, "i1")
	var got map[string]any
	if err := json.Unmarshal(r.Stdout, &got); err != nil || r.State != StateSucceeded || got["version"] != "1.2.3" {
		t.Fatalf("info: %+v (%v)", r, err)
	}
}

func TestSetInterval(t *testing.T) {
	var set []time.Duration
	e, s := newExecutor(t, Config{Enabled: true}, Builtins{SetInterval: func(d time.Duration) error {
		set = append(set, d) // runs are sequential below: each waits for its result
		if d == 2*time.Second {
			return errors.New("refused")
		}
		return nil
	}})
	cases := []struct {
		args      map[string]string
		state     string
		errPart   string
		wantValue time.Duration
	}{
		{map[string]string{"interval": "30s"}, StateSucceeded, "", 30 * time.Second},
		{map[string]string{"interval": "1s"}, StateSucceeded, "", time.Second},
		{map[string]string{"interval": "24h"}, StateSucceeded, "", 24 * time.Hour},
		{map[string]string{"interval": "999ms"}, StateRejected, "not a duration in 1s..24h", 0},
		{map[string]string{"interval": "24h0m1s"}, StateRejected, "not a duration", 0},
		{map[string]string{"interval": "soon"}, StateRejected, "not a duration", 0},
		{map[string]string{}, StateRejected, `"interval" is required`, 0},
		{map[string]string{"interval": "30s", "x": "1"}, StateRejected, `"x" is not declared`, 0},
		{map[string]string{"interval": "2s"}, StateFailed, "refused", 2 * time.Second},
	}
	for i, c := range cases {
		id := "si" + strconv.Itoa(i)
		before := len(set)
		e.Handle(protocol.Command{ID: id, Name: NameSetInterval, Args: c.args})
		wantState(t, s.waitFinal(t, id), c.state, c.errPart)
		if c.wantValue != 0 && (len(set) != before+1 || set[before] != c.wantValue) {
			t.Fatalf("case %d: hook got %v", i, set[before:])
		}
		if c.wantValue == 0 && len(set) != before {
			t.Fatalf("case %d: hook called for a rejected command", i)
		}
	}
}

func TestCollectNow(t *testing.T) {
	calls := make(chan struct{}, 2)
	fail := false
	e, s := newExecutor(t, Config{Enabled: true}, Builtins{CollectNow: func() error {
		calls <- struct{}{}
		if fail {
			return errors.New("collector busy")
		}
		return nil
	}})
	e.Handle(protocol.Command{ID: "c1", Name: NameCollectNow})
	wantState(t, s.waitFinal(t, "c1"), StateSucceeded, "")
	fail = true // the run above is finished: no race
	e.Handle(protocol.Command{ID: "c2", Name: NameCollectNow})
	wantState(t, s.waitFinal(t, "c2"), StateFailed, "collector busy")
	e.Handle(protocol.Command{ID: "c3", Name: NameCollectNow, Args: map[string]string{"now": "1"}})
	wantState(t, s.waitFinal(t, "c3"), StateRejected, "takes no parameters")
	if len(calls) != 2 {
		t.Fatalf("hook called %d times, want 2", len(calls))
	}
}

func TestRestartAfterResultSent(t *testing.T) {
	var s *sink
	sentFirst := make(chan bool, 1)
	e, s := newExecutor(t, Config{Enabled: true}, Builtins{Restart: func() {
		sentFirst <- len(s.finals("r1")) == 1
	}})
	e.Handle(protocol.Command{ID: "r1", Name: NameRestart})
	select {
	case ok := <-sentFirst:
		if !ok {
			t.Fatal("Restart called before the result was sent")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Restart not called")
	}
	wantState(t, s.waitFinal(t, "r1"), StateSucceeded, "")
	// Restart may close the executor from its own goroutine.
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestNilHooksNotSupported(t *testing.T) {
	e, s := newExecutor(t, Config{Enabled: true}, Builtins{})
	for _, name := range []string{NameInfo, NameSetInterval, NameCollectNow, NameRestart} {
		args := map[string]string(nil)
		if name == NameSetInterval {
			args = map[string]string{"interval": "5s"}
		}
		e.Handle(protocol.Command{ID: name, Name: name, Args: args})
		wantState(t, s.waitFinal(t, name), StateRejected, "not supported")
	}
}

func TestProgramSucceeds(t *testing.T) {
	dir := t.TempDir()
	prog := script(t, `echo "args: $*"; echo "pwd: $(pwd)"; env | sort; echo oops >&2`)
	cfg := Config{Enabled: true, Allow: []Allowed{{
		Name: "show", Exec: prog, Args: []string{"-n", "{lines}", "{unit}"}, Dir: dir,
		Env: map[string]string{"FOO": "bar"},
		Params: map[string]Param{
			"lines": {Pattern: "[0-9]{1,4}", Default: "10"},
			"unit":  {Enum: []string{"nginx", "ssh d"}, Required: true},
		},
	}}}
	e, s := newExecutor(t, cfg, Builtins{})
	e.Handle(protocol.Command{ID: "x1", Name: "show", Args: map[string]string{"unit": "ssh d"}})
	r := s.waitFinal(t, "x1")
	want := "args: -n 10 ssh d\npwd: " + dir + "\nFOO=bar\nLANG=C\nPATH=/usr/sbin:/usr/bin:/sbin:/bin\nPWD=" + dir + "\n"
	if r.State != StateSucceeded || r.ExitCode != 0 || string(r.Stdout) != want || string(r.Stderr) != "oops\n" || r.Truncated {
		t.Fatalf("got %+v\nstdout %q\nwant   %q", r, r.Stdout, want)
	}
}

func TestProgramFails(t *testing.T) {
	cfg := Config{Enabled: true, Allow: []Allowed{
		{Name: "fail", Exec: script(t, "echo bad >&2; exit 3")},
		{Name: "missing", Exec: "/nonexistent/prog"},
	}}
	e, s := newExecutor(t, cfg, Builtins{})
	e.Handle(protocol.Command{ID: "f1", Name: "fail"})
	r := s.waitFinal(t, "f1")
	if r.State != StateFailed || r.ExitCode != 3 || string(r.Stderr) != "bad\n" {
		t.Fatalf("got %+v", r)
	}
	e.Handle(protocol.Command{ID: "f2", Name: "missing"})
	wantState(t, s.waitFinal(t, "f2"), StateFailed, "/nonexistent/prog")
}

func TestRejectedRunsNothing(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "ran")
	allowed := Allowed{
		Name: "touch", Exec: script(t, `echo "$1" >> `+marker), Args: []string{"{unit}", "{n}"},
		Params: map[string]Param{
			"unit": {Enum: []string{"nginx", "ssh"}, Required: true},
			"n":    {Pattern: "[0-9]{1,4}|a+", Default: "1"},
		},
	}
	long := strings.Repeat("a", MaxParamLen)
	cases := []struct {
		name    string
		args    map[string]string
		errPart string
	}{
		{"nope", map[string]string{"unit": "nginx"}, `unknown command "nope"`},
		{"touch", map[string]string{"unit": "apache"}, `parameter "unit": value "apache" is not one of nginx, ssh`},
		{"touch", map[string]string{"unit": "nginx", "n": "12345"}, `parameter "n": value "12345" does not match pattern`},
		{"touch", map[string]string{"unit": "nginx", "n": "1; rm -rf /"}, "does not match pattern"},
		{"touch", map[string]string{"unit": "nginx", "extra": "1"}, `parameter "extra" is not declared`},
		{"touch", map[string]string{}, `parameter "unit" is required`},
		{"touch", map[string]string{"unit": "nginx", "n": long + "a"}, "longer than 1024"},
	}
	e, s := newExecutor(t, Config{Enabled: true, Allow: []Allowed{allowed}}, Builtins{})
	for i, c := range cases {
		id := "rej" + strconv.Itoa(i)
		e.Handle(protocol.Command{ID: id, Name: c.name, Args: c.args})
		wantState(t, s.waitFinal(t, id), StateRejected, c.errPart)
		if got := states(s.results(id)); len(got) != 1 {
			t.Fatalf("%s: states %v, want only rejected", id, got)
		}
	}
	if n := lines(t, marker); n != 0 {
		t.Fatalf("rejected commands ran %d times", n)
	}
	// A value of exactly MaxParamLen bytes is accepted.
	e.Handle(protocol.Command{ID: "edge", Name: "touch", Args: map[string]string{"unit": "ssh", "n": long}})
	wantState(t, s.waitFinal(t, "edge"), StateSucceeded, "")
	// A rejection is final: redelivery gets it again.
	e.Handle(protocol.Command{ID: "rej0", Name: "touch", Args: map[string]string{"unit": "nginx"}})
	wantState(t, s.waitFinals(t, "rej0", 2), StateRejected, `unknown command "nope"`)
}

func TestDisabledRunsNothing(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "ran")
	cfg := Config{Allow: []Allowed{{Name: "touch", Exec: script(t, "touch "+marker)}}}
	e, s := newExecutor(t, cfg, Builtins{})
	e.Handle(protocol.Command{ID: "d1", Name: "touch"})
	e.Handle(protocol.Command{ID: "d2", Name: NamePing})
	wantState(t, s.waitFinal(t, "d1"), StateRejected, errDisabled)
	wantState(t, s.waitFinal(t, "d2"), StateRejected, errDisabled)
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatalf("marker exists: %v", err)
	}
	// Disabled without a state dir works too; nothing is stored.
	s2 := &sink{}
	e2, err := New(Config{}, Builtins{}, s2.send, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	e2.Handle(protocol.Command{ID: "d3", Name: "touch"})
	wantState(t, s2.waitFinal(t, "d3"), StateRejected, errDisabled)
}

func TestCommandID(t *testing.T) {
	e, s := newExecutor(t, Config{Enabled: true}, Builtins{})
	e.Handle(protocol.Command{ID: strings.Repeat("i", maxIDLen), Name: NamePing})
	wantState(t, s.waitFinal(t, strings.Repeat("i", maxIDLen)), StateSucceeded, "")
	e.Handle(protocol.Command{ID: strings.Repeat("i", maxIDLen+1), Name: NamePing})
	wantState(t, s.waitFinal(t, strings.Repeat("i", maxIDLen+1)), StateRejected, "command id must be")
	e.Handle(protocol.Command{ID: "", Name: NamePing})
	wantState(t, s.waitFinal(t, ""), StateRejected, "command id must be")
}

func TestTimeoutKillsGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child")
	prog := script(t, "sleep 300 & echo $! > "+pidFile+".tmp; mv "+pidFile+".tmp "+pidFile+"; wait")
	cases := []struct {
		id      string
		timeout time.Duration
		hubMs   uint64
	}{
		{"config", 300 * time.Millisecond, 0},
		{"hub", time.Minute, 300}, // the hub's smaller limit wins
	}
	for _, c := range cases {
		os.Remove(pidFile)
		cfg := Config{Enabled: true, Allow: []Allowed{{Name: "hang", Exec: prog, Timeout: c.timeout}}}
		e, s := newExecutor(t, cfg, Builtins{})
		e.Handle(protocol.Command{ID: c.id, Name: "hang", TimeoutMs: c.hubMs})
		r := s.waitFinal(t, c.id)
		wantState(t, r, StateTimedOut, "timed out after 300ms")
		if r.DurationMs < 300 || r.DurationMs > 5000 {
			t.Fatalf("duration %dms", r.DurationMs)
		}
		b, err := os.ReadFile(pidFile)
		if err != nil {
			t.Fatal(err)
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		waitFor(t, "child gone", func() bool { return gone(pid) })
	}
}

// gone reports whether pid no longer runs (absent, or a zombie nobody
// reaped yet).
func gone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	return len(fields) > 0 && fields[0] == "Z"
}

func TestOutputCap(t *testing.T) {
	cases := []struct {
		name      string
		body      string
		stdout    string
		stderr    string
		truncated bool
	}{
		{"at", "printf 0123456789; printf abcdefghij >&2", "0123456789", "abcdefghij", false},
		{"past", "printf 0123456789X", "0123456789", "", true},
		{"stderrpast", "printf 0123456789X >&2", "", "0123456789", true},
		// Far past the cap the program is drained, not killed.
		{"drain", "head -c 1000000 /dev/zero; echo done >&2", "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", "done\n", true},
	}
	var allow []Allowed
	for _, c := range cases {
		allow = append(allow, Allowed{Name: c.name, Exec: script(t, c.body)})
	}
	e, s := newExecutor(t, Config{Enabled: true, MaxOutput: 10, Allow: allow}, Builtins{})
	for _, c := range cases {
		e.Handle(protocol.Command{ID: c.name, Name: c.name})
		r := s.waitFinal(t, c.name)
		if r.State != StateSucceeded || string(r.Stdout) != c.stdout || string(r.Stderr) != c.stderr || r.Truncated != c.truncated {
			t.Fatalf("%s: got %+v", c.name, r)
		}
		var chunked []byte
		for _, o := range s.results(c.name) {
			if o.State == StateOutput {
				chunked = append(chunked, o.Stdout...)
			}
		}
		if len(chunked) > 10 {
			t.Fatalf("%s: %d bytes of chunks past the cap", c.name, len(chunked))
		}
	}
}

func TestPerCommandMaxOutput(t *testing.T) {
	cfg := Config{Enabled: true, MaxOutput: 10, Allow: []Allowed{{Name: "big", Exec: script(t, "printf 01234567890123456789X"), MaxOutput: 20}}}
	e, s := newExecutor(t, cfg, Builtins{})
	e.Handle(protocol.Command{ID: "b", Name: "big"})
	if r := s.waitFinal(t, "b"); len(r.Stdout) != 20 || !r.Truncated {
		t.Fatalf("got %+v", r)
	}
}

func TestOutputChunksBeforeFinal(t *testing.T) {
	cfg := Config{Enabled: true, Allow: []Allowed{{Name: "slow", Exec: script(t, "echo one; sleep 0.6; echo two >&2")}}}
	e, s := newExecutor(t, cfg, Builtins{})
	e.Handle(protocol.Command{ID: "s1", Name: "slow"})
	r := s.waitFinal(t, "s1")
	if string(r.Stdout) != "one\n" || string(r.Stderr) != "two\n" {
		t.Fatalf("final %+v", r)
	}
	all := s.results("s1")
	if all[0].State != StateReceived || all[1].State != StateOutput || string(all[1].Stdout) != "one\n" || all[1].Stderr != nil {
		t.Fatalf("want received, then a chunk with only \"one\": %+v", all)
	}
	if !isFinal(all[len(all)-1]) {
		t.Fatalf("final result is not last: %+v", all)
	}
}

func TestChunkOnSize(t *testing.T) {
	// 5000 bytes then a pause: the size trigger sends them well before the
	// 250ms tick would; the whole run outlasts the tick either way, so
	// this checks the content of chunks, not their timing.
	cfg := Config{Enabled: true, Allow: []Allowed{{Name: "burst", Exec: script(t, "head -c 5000 /dev/zero; sleep 0.4")}}}
	e, s := newExecutor(t, cfg, Builtins{})
	e.Handle(protocol.Command{ID: "b1", Name: "burst"})
	s.waitFinal(t, "b1")
	n := 0
	for _, r := range s.results("b1") {
		if r.State == StateOutput {
			n += len(r.Stdout)
		}
	}
	if n != 5000 {
		t.Fatalf("chunks carried %d bytes, want 5000", n)
	}
}

func TestCloseKillsRunning(t *testing.T) {
	started := filepath.Join(t.TempDir(), "started")
	cfg := Config{Enabled: true, Allow: []Allowed{{Name: "hang", Exec: script(t, "touch "+started+"; sleep 300")}}}
	s := &sink{}
	cfg.StateDir = t.TempDir()
	e, err := New(cfg, Builtins{}, s.send, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.Handle(protocol.Command{ID: "h", Name: "hang"})
	waitFor(t, "program started", func() bool { _, err := os.Stat(started); return err == nil })
	e.Close()
	wantState(t, s.waitFinal(t, "h"), StateFailed, "agent stopped")
	e.Handle(protocol.Command{ID: "after", Name: NamePing})
	if len(s.results("after")) != 0 {
		t.Fatal("command handled after Close")
	}
}
