package collect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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

// Exec tests do not run in parallel: exec'ing a script just written can
// fail with ETXTBSY when another goroutine forks while the file is open.

// script writes an executable /bin/sh script into dir and returns its path.
func script(t *testing.T, dir, body string) string {
	t.Helper()
	path := filepath.Join(dir, "probe.sh")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// inDir returns argv that runs path with dir as its working directory, so
// a script can leave files (pids, counters) there.
func inDir(dir, path string) []string {
	return []string{"/bin/sh", "-c", `cd "$1" && exec "$2"`, "sh", dir, path}
}

// newTestExec builds an exec collector that is closed at the end of the
// test, with the defaults New would apply.
func newTestExec(t *testing.T, cfg ExecConfig) *execCollector {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "sensor"
	}
	if err := (Config{Exec: []ExecConfig{cfg}}).Validate(); err != nil {
		t.Fatal(err)
	}
	e := newExec(cfg.withDefaults(), testLogger(t))
	t.Cleanup(func() { e.Close() })
	return e
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// tWriter sends log lines to the test log.
type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func collectExec(t *testing.T, e *execCollector) ([]protocol.Point, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pts, err := e.Collect(ctx)
	checkPoints(t, pts)
	return pts, err
}

func TestExecValueTypes(t *testing.T) {
	path := script(t, t.TempDir(), `
cat <<'END'
# DHT22 on GPIO 4

temperature 21.5 room=attic
humidity 48 room=attic
offset -3
big 1e3
ok true
failed false
status "warming \"up\" \\ now" room=attic floor=2
END
printf 'crlf 7\r\n'
`)
	e := newTestExec(t, ExecConfig{Command: []string{path}})
	pts, err := collectExec(t, e)
	if err != nil {
		t.Fatal(err)
	}
	attic := map[string]string{"room": "attic"}
	want := []protocol.Point{
		{Name: "sensor.temperature", Value: 21.5, Tags: attic},
		{Name: "sensor.humidity", Value: int64(48), Tags: attic},
		{Name: "sensor.offset", Value: int64(-3)},
		{Name: "sensor.big", Value: 1000.0},
		{Name: "sensor.ok", Value: true},
		{Name: "sensor.failed", Value: false},
		{Name: "sensor.status", Value: `warming "up" \ now`, Tags: map[string]string{"room": "attic", "floor": "2"}},
		{Name: "sensor.crlf", Value: int64(7)},
	}
	if !reflect.DeepEqual(pts, want) {
		t.Errorf("points:\n got %#v\nwant %#v", pts, want)
	}
}

func TestExecArgsAndEnvironment(t *testing.T) {
	t.Setenv("FLEETWIRE_TEST_SECRET", "s3cret")
	path := script(t, t.TempDir(), `
printf 'argc %d\n' "$#"
printf 'arg1 "%s"\n' "$1"
printf 'path "%s"\n' "$PATH"
printf 'lang "%s"\n' "$LANG"
if [ -n "$FLEETWIRE_TEST_SECRET" ]; then echo leaked true; else echo leaked false; fi
if read line; then echo stdin_data true; else echo stdin_data false; fi
`)
	// An argument with a space and a '$' stays one literal argument: no
	// shell ever sees the command line.
	e := newTestExec(t, ExecConfig{Command: []string{path, "a b $HOME"}})
	pts, err := collectExec(t, e)
	if err != nil {
		t.Fatal(err)
	}
	got := byName(pts)
	want := map[string]any{
		"sensor.argc": int64(1), "sensor.arg1": "a b $HOME",
		"sensor.path": execPath, "sensor.lang": "C",
		"sensor.leaked": false, "sensor.stdin_data": false,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
}

func TestExecBadLines(t *testing.T) {
	path := script(t, t.TempDir(), `
echo 'good 1'
echo 'bad'
echo 'also_good "x"'
echo 'worse nan'
echo 'fine 2 k=v'
`)
	e := newTestExec(t, ExecConfig{Command: []string{path}})
	pts, err := collectExec(t, e)
	if got := pointNames(pts); got != "sensor.good sensor.also_good sensor.fine" {
		t.Errorf("points = %s, want the good lines", got)
	}
	var perr *ParseError
	if !errors.As(err, &perr) {
		t.Fatalf("err = %v, want a *ParseError", err)
	}
	if perr.Bad != 2 || perr.Lines[0].Line != 2 || perr.Lines[1].Line != 4 {
		t.Errorf("ParseError = %+v, want lines 2 and 4", perr)
	}
	if !strings.HasPrefix(err.Error(), "exec:sensor: 2 bad output line(s): line 2:") {
		t.Errorf("err = %q, want it to name the collector and the lines", err)
	}
}

func pointNames(pts []protocol.Point) string {
	var n []string
	for _, p := range pts {
		n = append(n, p.Name)
	}
	return strings.Join(n, " ")
}

func TestExecNonZeroExit(t *testing.T) {
	path := script(t, t.TempDir(), `
echo 'good 1'
echo 'sensor not found on GPIO 4' >&2
exit 3
`)
	e := newTestExec(t, ExecConfig{Command: []string{path}})
	pts, err := collectExec(t, e)
	if len(pts) != 0 {
		t.Errorf("points = %v, want none after a failed run", pts)
	}
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "sensor not found on GPIO 4") {
		t.Errorf("err = %v, want exit status and stderr", err)
	}
}

func TestExecSignalledExit(t *testing.T) {
	path := script(t, t.TempDir(), "echo 'x 1'\nkill -TERM $$\n")
	e := newTestExec(t, ExecConfig{Command: []string{path}})
	pts, err := collectExec(t, e)
	if len(pts) != 0 || err == nil || !strings.Contains(err.Error(), syscall.SIGTERM.String()) {
		t.Errorf("got %v, %v; want no points and the signal named", pts, err)
	}
}

func TestExecMissingProgram(t *testing.T) {
	e := newTestExec(t, ExecConfig{Command: []string{filepath.Join(t.TempDir(), "nope")}})
	pts, err := collectExec(t, e)
	if len(pts) != 0 || err == nil || !strings.Contains(err.Error(), "exec:sensor") {
		t.Errorf("got %v, %v; want no points and an error naming the collector", pts, err)
	}
}

func TestExecTimeoutKillsProcessGroup(t *testing.T) {
	dir := t.TempDir()
	path := script(t, dir, `
sleep 30 &
echo $! > child.pid
echo $$ > self.pid
echo 'early 1'
wait
`)
	e := newTestExec(t, ExecConfig{Command: inDir(dir, path), Timeout: 200 * time.Millisecond})
	start := time.Now()
	pts, err := collectExec(t, e)
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "timed out after 200ms") {
		t.Errorf("err = %v, want a timeout", err)
	}
	if len(pts) != 0 {
		t.Errorf("points = %v, want none from a killed run", pts)
	}
	// The bound is loose on purpose: the point is that the 30 s sleep,
	// which holds stdout open, did not keep the run alive.
	if took > 10*time.Second {
		t.Errorf("Collect took %s, want about the 200ms timeout", took)
	}
	for _, f := range []string{"self.pid", "child.pid"} {
		waitGone(t, readPid(t, filepath.Join(dir, f)))
	}
}

func readPid(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// waitGone polls until pid no longer runs. A zombie counts as gone: it
// has died and only waits for its reaper, which in a container may be a
// PID 1 that never reaps.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if errors.Is(err, os.ErrNotExist) {
			return
		}
		if err == nil {
			// The state follows the parenthesized command name.
			if i := strings.LastIndexByte(string(stat), ')'); i > 0 && strings.HasPrefix(string(stat[i:]), ") Z") {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d still running 5s after the run ended", pid)
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not a wait for a condition
	}
}

func TestExecMaxOutput(t *testing.T) {
	const size = 1000
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "out"), []byte(strings.Repeat("x 1\n", size/4)), 0o644); err != nil {
		t.Fatal(err)
	}
	path := script(t, dir, `cat "$(dirname "$0")/out"`+"\n")

	e := newTestExec(t, ExecConfig{Command: []string{path}, MaxOutput: size})
	pts, err := collectExec(t, e)
	if err != nil || len(pts) != size/4 {
		t.Errorf("exactly MaxOutput bytes: %d points, %v; want %d, nil", len(pts), err, size/4)
	}

	e = newTestExec(t, ExecConfig{Name: "small", Command: []string{path}, MaxOutput: size - 1})
	pts, err = collectExec(t, e)
	if len(pts) != 0 || err == nil || !strings.Contains(err.Error(), "output exceeds 999 bytes") {
		t.Errorf("one byte over MaxOutput: %d points, %v; want none and an error", len(pts), err)
	}
}

func TestExecEndlessOutputIsKilled(t *testing.T) {
	path := script(t, t.TempDir(), "while :; do echo 'x 1'; done\n")
	// The timeout is far away: the overflow itself must stop the program.
	e := newTestExec(t, ExecConfig{Command: []string{path}, MaxOutput: 4096, Timeout: time.Minute})
	pts, err := collectExec(t, e)
	if len(pts) != 0 || err == nil || !strings.Contains(err.Error(), "output exceeds 4096 bytes") {
		t.Errorf("got %d points, %v; want none and an overflow error", len(pts), err)
	}
}

func TestExecDoesNotBlockPastDeadline(t *testing.T) {
	dir := t.TempDir()
	path := script(t, dir, "echo $$ > self.pid\nexec sleep 30\n")
	e := newTestExec(t, ExecConfig{Command: inDir(dir, path), Timeout: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	pts, err := e.Collect(ctx)
	if pts != nil || err != nil {
		t.Errorf("Collect past its deadline = %v, %v; want nothing yet", pts, err)
	}
	e.mu.Lock()
	running := e.running
	e.mu.Unlock()
	if !running {
		t.Fatal("the run should still be going")
	}
	// A run in progress is neither waited for again nor started twice.
	pts, err = collectExec(t, e)
	if pts != nil || err != nil {
		t.Errorf("Collect while a run is going = %v, %v; want nothing", pts, err)
	}
	pid := waitPidFile(t, filepath.Join(dir, "self.pid"))
	e.Close()
	waitGone(t, pid)
	if _, err := collectExec(t, e); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Collect after Close = %v, want an error", err)
	}
}

func waitPidFile(t *testing.T, path string) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if b, err := os.ReadFile(path); err == nil && strings.HasSuffix(string(b), "\n") {
			return readPid(t, path)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not written within 5s", path)
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
}

// counterCommand is a program that prints "run <n>", n counting its runs,
// once the file "go" exists in dir.
func counterCommand(t *testing.T, dir string) []string {
	path := script(t, dir, `
while [ ! -e go ]; do sleep 0.01; done
n=$(cat count 2>/dev/null || echo 0)
n=$((n+1))
echo $n > count
echo "run $n"
`)
	return inDir(dir, path)
}

func TestExecLateResultComesNextTime(t *testing.T) {
	dir := t.TempDir()
	e := newTestExec(t, ExecConfig{Timeout: time.Minute, Command: counterCommand(t, dir)})
	canceled, cancel := context.WithCancel(context.Background())
	cancel()

	// Run 1 blocks until "go" exists; Collect does not wait for it.
	if pts, err := e.Collect(canceled); pts != nil || err != nil {
		t.Fatalf("first Collect = %v, %v; want nothing yet", pts, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitRunDone(t, e)
	// Run 2 starts but cannot finish before this deadline: run 1's result
	// is returned instead.
	pts, err := e.Collect(canceled)
	if err != nil || !reflect.DeepEqual(byName(pts), map[string]any{"sensor.run": int64(1)}) {
		t.Fatalf("second Collect = %v, %v; want run 1", pts, err)
	}
	waitRunDone(t, e)
	// Run 3 finishes in time and supersedes run 2's older result.
	pts, err = collectExec(t, e)
	if err != nil || !reflect.DeepEqual(byName(pts), map[string]any{"sensor.run": int64(3)}) {
		t.Fatalf("third Collect = %v, %v; want run 3", pts, err)
	}
}

func waitRunDone(t *testing.T, e *execCollector) {
	t.Helper()
	e.mu.Lock()
	done := e.done
	e.mu.Unlock()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("run did not finish within 10s")
	}
}

func TestExecInterval(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	e := newTestExec(t, ExecConfig{Interval: time.Hour, Command: counterCommand(t, dir)})
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	e.now = func() time.Time { return now }

	expect := func(step string, run int64) {
		t.Helper()
		pts, err := collectExec(t, e)
		var got, want map[string]any
		if len(pts) > 0 {
			got = byName(pts)
		}
		if run > 0 {
			want = map[string]any{"sensor.run": run}
		}
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: got %v, %v; want %v", step, got, err, want)
		}
	}
	expect("first", 1)
	now = now.Add(time.Hour - time.Nanosecond)
	expect("just before the interval", 0)
	now = now.Add(time.Nanosecond)
	expect("at the interval", 2)
	expect("right after", 0)
	if b, _ := os.ReadFile(filepath.Join(dir, "count")); strings.TrimSpace(string(b)) != "2" {
		t.Errorf("program ran %q times, want 2", b)
	}
}

func TestNewExecViaNew(t *testing.T) {
	path := script(t, t.TempDir(), "echo 'v 1'\n")
	cs, err := New(Config{
		Disabled: builtinNames,
		Exec:     []ExecConfig{{Name: "custom", Command: []string{path}}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeAll(cs) })
	if len(cs) != 1 {
		t.Fatalf("got %d collectors, want 1", len(cs))
	}
	e := cs[0].(*execCollector)
	if e.cfg.Timeout != DefaultExecTimeout || e.cfg.MaxOutput != DefaultMaxOutput {
		t.Errorf("defaults not applied: %+v", e.cfg)
	}
	pts, err := collectExec(t, e)
	if err != nil || pointNames(pts) != "custom.v" {
		t.Errorf("got %v, %v; want custom.v", pts, err)
	}
}
