package collect

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"sync"
	"time"

	"github.com/fleetwire/fleetwire/agent/proc"
	"github.com/fleetwire/fleetwire/protocol"
)

// execPath is the PATH a program runs with: the FHS directories only, so
// its behaviour does not depend on how the agent was started.
const execPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// maxStderr is how much of stderr is kept to explain a failure.
const maxStderr = 256

// execCollector runs a program on its own schedule. A run happens in its
// own goroutine, bounded by the configured timeout; Collect waits for a run
// it started only as long as its ctx allows, and a run that finishes later
// is returned by the next Collect. So a hanging program costs the other
// collectors at most one collection deadline, never more.
type execCollector struct {
	cfg  ExecConfig
	name string
	log  *slog.Logger
	env  []string
	now  func() time.Time

	// life bounds every run; Close cancels it.
	life   context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	running bool
	done    chan struct{} // closed when the current run ends
	pending *execResult   // a finished run not yet returned
	next    time.Time     // when the next run is due

	// stdout is reused by every run (one at a time): parsing copies what
	// it keeps.
	stdout []byte
}

type execResult struct {
	points []protocol.Point
	err    error
}

func newExec(cfg ExecConfig, log *slog.Logger) *execCollector {
	ctx, cancel := context.WithCancel(context.Background())
	return &execCollector{
		cfg:    cfg,
		name:   "exec:" + cfg.Name,
		log:    log.With("collector", "exec:"+cfg.Name),
		env:    []string{"PATH=" + execPath, "LANG=C"},
		now:    time.Now,
		life:   ctx,
		cancel: cancel,
	}
}

// Name is "exec:" followed by the configured name.
func (e *execCollector) Name() string { return e.name }

// Close kills a run in progress and waits for its goroutine. Collect fails
// after Close.
func (e *execCollector) Close() error {
	e.cancel()
	e.wg.Wait()
	return nil
}

// Collect starts a run when one is due and none is in progress, and waits
// for it until ctx ends. It returns the freshest result not returned yet,
// or nothing when there is none: each result is returned once.
func (e *execCollector) Collect(ctx context.Context) ([]protocol.Point, error) {
	if e.life.Err() != nil {
		return nil, fmt.Errorf("%s: collector closed", e.name)
	}
	e.mu.Lock()
	stale := e.pending
	e.pending = nil
	started := false
	if now := e.now(); !e.running && !now.Before(e.next) {
		e.start(now)
		started = true
	}
	done := e.done
	e.mu.Unlock()
	if started {
		select {
		case <-done:
			e.mu.Lock()
			fresh := e.pending
			e.pending = nil
			e.mu.Unlock()
			// A fresh result supersedes a stale one: both are the same
			// series, and the batcher stamps them with the same time.
			return fresh.points, fresh.err
		case <-ctx.Done():
		}
	}
	if stale != nil {
		return stale.points, stale.err
	}
	return nil, nil
}

// start launches a run. e.mu must be held.
func (e *execCollector) start(now time.Time) {
	e.running = true
	e.done = make(chan struct{})
	e.next = now.Add(e.cfg.Interval)
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		res := e.run(e.life)
		e.mu.Lock()
		e.pending = &res
		e.running = false
		close(e.done)
		e.mu.Unlock()
	}()
}

// run executes the program once and parses its output.
func (e *execCollector) run(ctx context.Context) execResult {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.Timeout)
	defer cancel()
	stdout := &capWriter{buf: e.stdout[:0], max: e.cfg.MaxOutput, overflow: cancel}
	stderr := &capWriter{max: maxStderr}
	cmd := exec.CommandContext(ctx, e.cfg.Command[0], e.cfg.Command[1:]...)
	cmd.Env = e.env
	cmd.Stdout, cmd.Stderr = stdout, stderr // stdin stays nil: /dev/null
	// Own process group, killed whole on timeout or Close.
	proc.Prepare(cmd)
	start := time.Now()
	err := cmd.Run()
	e.stdout = stdout.buf
	if err := e.runError(ctx, err, stdout, stderr, time.Since(start)); err != nil {
		return execResult{err: err}
	}
	pts, err := ParseOutput(e.cfg.Name, stdout.buf)
	e.log.Debug("exec run done", "took", time.Since(start), "points", len(pts), "bad_lines", err != nil)
	if err != nil {
		err = fmt.Errorf("%s: %w", e.name, err)
	}
	return execResult{points: pts, err: err}
}

// runError explains why a run yields no points, or returns nil.
func (e *execCollector) runError(ctx context.Context, err error, stdout, stderr *capWriter, took time.Duration) error {
	var exitErr *exec.ExitError
	switch {
	case stdout.over:
		return fmt.Errorf("%s: output exceeds %d bytes (max_output); process killed", e.name, e.cfg.MaxOutput)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("%s: timed out after %s; process group killed", e.name, e.cfg.Timeout)
	case e.life.Err() != nil:
		return fmt.Errorf("%s: collector closed; process group killed", e.name)
	case errors.As(err, &exitErr):
		msg := bytes.TrimSpace(stderr.buf)
		if len(msg) == 0 {
			return fmt.Errorf("%s: %v after %s", e.name, exitErr, took.Round(time.Millisecond))
		}
		return fmt.Errorf("%s: %v: %q", e.name, exitErr, msg)
	case err != nil:
		return fmt.Errorf("%s: %w", e.name, err)
	}
	return nil
}

// capWriter keeps the first max bytes written to it. On more, stdout
// calls overflow (to kill the program: reading on would only waste time)
// while stderr just drops the rest.
type capWriter struct {
	buf      []byte
	max      int
	over     bool
	overflow func()
}

func (w *capWriter) Write(p []byte) (int, error) {
	if room := w.max - len(w.buf); len(p) > room {
		w.buf = append(w.buf, p[:max(room, 0)]...)
		if !w.over && w.overflow != nil {
			w.overflow()
		}
		w.over = true
		// Accepting the bytes keeps the copy going until the kill lands,
		// rather than turning the overflow into a write error.
		return len(p), nil
	}
	w.buf = append(w.buf, p...)
	return len(p), nil
}
