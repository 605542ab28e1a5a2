package command

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fleetwire/fleetwire/protocol"
)

// TestMain fails the package if a run, streamer or prune goroutine
// outlives its executor's Close.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// sink records every result the executor sends, in order.
type sink struct {
	mu  sync.Mutex
	all []protocol.CommandResult
}

func (s *sink) send(r protocol.CommandResult) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.all = append(s.all, r)
}

func (s *sink) results(id string) []protocol.CommandResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []protocol.CommandResult
	for _, r := range s.all {
		if r.ID == id {
			out = append(out, r)
		}
	}
	return out
}

func isFinal(r protocol.CommandResult) bool {
	return r.State != StateReceived && r.State != StateOutput
}

func (s *sink) finals(id string) []protocol.CommandResult {
	var out []protocol.CommandResult
	for _, r := range s.results(id) {
		if isFinal(r) {
			out = append(out, r)
		}
	}
	return out
}

// waitFinals polls until id has n final results and returns the last.
func (s *sink) waitFinals(t *testing.T, id string, n int) protocol.CommandResult {
	t.Helper()
	var got []protocol.CommandResult
	waitFor(t, fmt.Sprintf("%d final results for %s", n, id), func() bool {
		got = s.finals(id)
		return len(got) >= n
	})
	if len(got) != n {
		t.Fatalf("%s: %d final results, want %d: %+v", id, len(got), n, got)
	}
	return got[n-1]
}

func (s *sink) waitFinal(t *testing.T, id string) protocol.CommandResult {
	t.Helper()
	return s.waitFinals(t, id, 1)
}

// waitFor polls cond with a deadline; tests never sleep to wait.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// script writes an executable /bin/sh script and returns its path.
func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "s.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// newExecutor starts an executor with a fresh state dir unless cfg names
// one, and closes it at the end of the test.
func newExecutor(t *testing.T, cfg Config, b Builtins) (*Executor, *sink) {
	t.Helper()
	if cfg.StateDir == "" {
		cfg.StateDir = filepath.Join(t.TempDir(), "state")
	}
	s := &sink{}
	e, err := New(cfg, b, s.send, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return e, s
}

// lines counts the lines of a marker file; a missing file is 0 runs.
func lines(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(b, []byte("\n"))
}

func wantState(t *testing.T, r protocol.CommandResult, state, errPart string) {
	t.Helper()
	if r.State != state || !strings.Contains(r.Error, errPart) {
		t.Fatalf("result %+v: want state %s, error containing %q", r, state, errPart)
	}
}

func states(rs []protocol.CommandResult) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.State)
	}
	return slices.Compact(out)
}
