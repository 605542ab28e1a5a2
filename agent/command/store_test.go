package command

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/protocol"
)

// counter is a program that appends a line to marker per run and prints.
func counter(t *testing.T, marker string) Config {
	return Config{Enabled: true, StateDir: filepath.Join(t.TempDir(), "state"), Allow: []Allowed{
		{Name: "count", Exec: script(t, "echo run >> "+marker+"; echo counted; exit 4")},
	}}
}

func TestRedeliveryOfFinishedResendsResult(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "runs")
	cfg := counter(t, marker)
	e, s := newExecutor(t, cfg, Builtins{})
	e.Handle(protocol.Command{ID: "k", Name: "count"})
	first := s.waitFinal(t, "k")
	e.Handle(protocol.Command{ID: "k", Name: "count"})
	again := s.waitFinals(t, "k", 2)
	if !reflect.DeepEqual(first, again) || first.ExitCode != 4 || string(first.Stdout) != "counted\n" {
		t.Fatalf("first %+v\nagain %+v", first, again)
	}
	// A restarted agent (new executor, same state dir) answers the same.
	e.Close()
	e2, s2 := newExecutor(t, cfg, Builtins{})
	e2.Handle(protocol.Command{ID: "k", Name: "count"})
	if r := s2.waitFinal(t, "k"); !reflect.DeepEqual(r, first) {
		t.Fatalf("after restart %+v", r)
	}
	if got := states(s2.results("k")); len(got) != 1 {
		t.Fatalf("after restart states %v, want only the final", got)
	}
	if n := lines(t, marker); n != 1 {
		t.Fatalf("ran %d times, want 1", n)
	}
}

func TestRedeliveryWhileRunningIgnored(t *testing.T) {
	dir := t.TempDir()
	marker, gate := filepath.Join(dir, "runs"), filepath.Join(dir, "gate")
	body := "echo run >> " + marker + "; while [ ! -e " + gate + " ]; do sleep 0.02; done"
	cfg := Config{Enabled: true, Allow: []Allowed{{Name: "wait", Exec: script(t, body)}}}
	e, s := newExecutor(t, cfg, Builtins{})
	e.Handle(protocol.Command{ID: "w", Name: "wait"})
	waitFor(t, "first run", func() bool { return lines(t, marker) == 1 })
	e.Handle(protocol.Command{ID: "w", Name: "wait"})
	e.Handle(protocol.Command{ID: "w", Name: "wait"})
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	wantState(t, s.waitFinal(t, "w"), StateSucceeded, "")
	if got := states(s.results("w")); !reflect.DeepEqual(got, []string{StateReceived, StateSucceeded}) {
		t.Fatalf("states %v", got)
	}
	if n := lines(t, marker); n != 1 {
		t.Fatalf("ran %d times, want 1", n)
	}
}

func TestStartedNotFinishedAfterRestart(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "runs")
	cfg := counter(t, marker)
	// What a crash mid-run leaves behind: the started record only.
	st, err := openStore(cfg.StateDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.save(record{ID: "crashed", Name: "count", Started: time.Now()}); err != nil {
		t.Fatal(err)
	}
	e, s := newExecutor(t, cfg, Builtins{})
	e.Handle(protocol.Command{ID: "crashed", Name: "count"})
	first := s.waitFinal(t, "crashed")
	wantState(t, first, StateFailed, errRestarted)
	e.Handle(protocol.Command{ID: "crashed", Name: "count"})
	if again := s.waitFinals(t, "crashed", 2); !reflect.DeepEqual(first, again) {
		t.Fatalf("stored final differs: %+v", again)
	}
	if n := lines(t, marker); n != 0 {
		t.Fatalf("ran %d times, want 0", n)
	}
}

func TestCorruptRecordNotRun(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "runs")
	cfg := counter(t, marker)
	st, err := openStore(cfg.StateDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(st.path("bad"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(st.path("other"), []byte(`{"id":"someone else"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	e, s := newExecutor(t, cfg, Builtins{})
	for _, id := range []string{"bad", "other"} {
		e.Handle(protocol.Command{ID: id, Name: "count"})
		wantState(t, s.waitFinal(t, id), StateFailed, "unreadable")
	}
	if n := lines(t, marker); n != 0 {
		t.Fatalf("ran %d times, want 0", n)
	}
}

func TestStateModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	e, s := newExecutor(t, Config{Enabled: true, StateDir: dir}, Builtins{})
	e.Handle(protocol.Command{ID: "m", Name: NamePing})
	s.waitFinal(t, "m")
	info, err := os.Stat(dir)
	if err != nil || info.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode %v (%v)", info.Mode(), err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("%d files in state dir, want 1", len(entries))
	}
	if fi, _ := entries[0].Info(); fi.Mode().Perm() != 0o600 {
		t.Fatalf("record mode %v", fi.Mode())
	}
}

// fill writes n records whose mtimes are age old, one second apart.
func fill(t *testing.T, st *store, prefix string, n int, age time.Duration) {
	t.Helper()
	base := time.Now().Add(-age)
	for i := range n {
		id := fmt.Sprintf("%s%d", prefix, i)
		if err := os.WriteFile(st.path(id), []byte(`{"id":"`+id+`"}`), 0o600); err != nil {
			t.Fatal(err)
		}
		mt := base.Add(-time.Duration(i) * time.Second)
		if err := os.Chtimes(st.path(id), mt, mt); err != nil {
			t.Fatal(err)
		}
	}
}

func countRecords(t *testing.T, dir string) int {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".json") {
			n++
		}
	}
	return n
}

func TestPruneKeepsNewestAndYoung(t *testing.T) {
	cases := []struct {
		name       string
		old, young int
		want       int
	}{
		{"old at keepNewest", keepNewest, 0, keepNewest},
		{"old past keepNewest", keepNewest + 1, 0, keepNewest},
		{"young beyond keepNewest kept", 0, keepNewest + 5, keepNewest + 5},
		{"young fill the newest slots", 10, keepNewest, keepNewest},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, err := openStore(t.TempDir(), nil)
			if err != nil {
				t.Fatal(err)
			}
			fill(t, st, "old", c.old, keepAge+time.Hour)
			fill(t, st, "young", c.young, time.Hour)
			if err := st.prune(time.Now()); err != nil {
				t.Fatal(err)
			}
			if n := countRecords(t, st.dir); n != c.want {
				t.Fatalf("%d records left, want %d", n, c.want)
			}
			if _, found, _ := st.load("young0"); c.young > 0 && !found {
				t.Fatal("newest record pruned")
			}
		})
	}
}

func TestPruneHardCap(t *testing.T) {
	st, err := openStore(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	fill(t, st, "y", keepMax+1, time.Minute)
	if err := st.prune(time.Now()); err != nil {
		t.Fatal(err)
	}
	if n := countRecords(t, st.dir); n != keepMax {
		t.Fatalf("%d records left, want %d", n, keepMax)
	}
	if _, found, _ := st.load(fmt.Sprintf("y%d", keepMax)); found {
		t.Fatal("oldest record kept past the cap")
	}
}

func TestPruneRemovesStaleTemp(t *testing.T) {
	st, err := openStore(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	stale, fresh := filepath.Join(st.dir, ".tmp-1"), filepath.Join(st.dir, ".tmp-2")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * time.Hour)
	os.Chtimes(stale, old, old)
	if err := st.prune(time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatal("stale temp file kept")
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Fatal("fresh temp file (a save in progress) removed")
	}
}
