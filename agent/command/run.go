package command

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"sync"
	"time"

	"github.com/fleetwire/fleetwire/agent/proc"
	"github.com/fleetwire/fleetwire/protocol"
)

// Output streaming (doc.go "Output").
const (
	chunkEvery = 250 * time.Millisecond // an output chunk at most this often...
	chunkBytes = 4 << 10                // ...or sooner once this much is new
	chunkMax   = 64 << 10               // bytes per stream in one chunk, to stay far below the message limit
)

// program is an accepted command's process, fully resolved.
type program struct {
	argv      []string
	env       []string
	dir       string
	timeout   time.Duration
	maxOutput int
}

// runProgram runs p in its own process group, streams its output as
// "output" results, and returns the final result. ctx ends on Close.
func (e *Executor) runProgram(ctx context.Context, id string, p program) protocol.CommandResult {
	// The run time is measured from the instant the timeout starts, so a
	// timed-out command never reports less than its timeout.
	start := time.Now()
	ctx, cancel := context.WithDeadline(ctx, start.Add(p.timeout))
	defer cancel()
	out := newCapture(p.maxOutput)
	cmd := exec.CommandContext(ctx, p.argv[0], p.argv[1:]...)
	cmd.Env, cmd.Dir = p.env, p.dir
	// stdin stays nil: /dev/null.
	cmd.Stdout, cmd.Stderr = out.writer(false), out.writer(true)
	proc.Prepare(cmd) // own process group, killed whole on timeout or Close
	stop := make(chan struct{})
	var streamer sync.WaitGroup
	streamer.Go(func() { e.stream(id, out, stop) })
	err := cmd.Run()
	took := time.Since(start)
	close(stop)
	streamer.Wait()
	res := out.result()
	res.DurationMs = uint64(took.Milliseconds())
	e.outcome(ctx, cmd, err, p.timeout, &res)
	return res
}

// outcome sets State, ExitCode and Error from how the run ended.
func (e *Executor) outcome(ctx context.Context, cmd *exec.Cmd, err error, timeout time.Duration, res *protocol.CommandResult) {
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		res.State = StateSucceeded
	case e.life.Err() != nil:
		res.State, res.Error = StateFailed, "agent stopped while the command ran; process group killed"
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		res.State, res.Error = StateTimedOut, fmt.Sprintf("timed out after %s; process group killed", timeout)
	case errors.As(err, &exitErr):
		res.State, res.ExitCode, res.Error = StateFailed, int64(exitErr.ExitCode()), exitErr.Error()
	case cmd.ProcessState != nil && cmd.ProcessState.Success():
		// exec.ErrWaitDelay: the program succeeded but something it left
		// behind kept its output open.
		res.State, res.Error = StateSucceeded, err.Error()
	default:
		res.State, res.ExitCode, res.Error = StateFailed, -1, fmt.Sprintf("start %s: %v", cmd.Path, err)
	}
}

// stream sends the output that is new since the last chunk every
// chunkEvery, or sooner when chunkBytes are waiting, until stop closes.
// The final result carries all output, so nothing is flushed at the end.
func (e *Executor) stream(id string, c *capture, stop <-chan struct{}) {
	t := time.NewTicker(chunkEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		case <-c.kick:
		}
		for {
			o, er, ok := c.chunk()
			if !ok {
				break
			}
			e.send(protocol.CommandResult{ID: id, State: StateOutput, Stdout: o, Stderr: er})
		}
	}
}

// capture keeps the first max bytes of each stream; beyond that it
// discards, but keeps accepting so the program is never blocked on a full
// pipe or killed by a write error.
type capture struct {
	max  int
	kick chan struct{} // signalled when chunkBytes are waiting

	mu        sync.Mutex
	streams   [2][]byte // stdout, stderr
	sent      [2]int    // bytes of each already sent as chunks
	truncated bool
}

func newCapture(max int) *capture {
	return &capture{max: max, kick: make(chan struct{}, 1)}
}

type captureWriter struct {
	c   *capture
	idx int
}

func (c *capture) writer(stderr bool) captureWriter {
	if stderr {
		return captureWriter{c, 1}
	}
	return captureWriter{c, 0}
}

func (w captureWriter) Write(p []byte) (int, error) {
	c := w.c
	c.mu.Lock()
	buf := c.streams[w.idx]
	if room := c.max - len(buf); len(p) > room {
		buf = append(buf, p[:room]...)
		c.truncated = true
	} else {
		buf = append(buf, p...)
	}
	c.streams[w.idx] = buf
	waiting := len(c.streams[0]) - c.sent[0] + len(c.streams[1]) - c.sent[1]
	c.mu.Unlock()
	if waiting >= chunkBytes {
		select {
		case c.kick <- struct{}{}:
		default: // a kick is already pending
		}
	}
	return len(p), nil
}

// chunk returns copies of the bytes not yet sent (at most chunkMax per
// stream) and marks them sent; ok is false when there are none.
func (c *capture) chunk() (stdout, stderr []byte, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out [2][]byte
	for i, buf := range c.streams {
		n := min(len(buf)-c.sent[i], chunkMax)
		if n > 0 {
			out[i] = append([]byte(nil), buf[c.sent[i]:c.sent[i]+n]...)
			c.sent[i] += n
			ok = true
		}
	}
	return out[0], out[1], ok
}

// result is the final result's output part: everything kept.
func (c *capture) result() protocol.CommandResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	return protocol.CommandResult{Stdout: c.streams[0], Stderr: c.streams[1], Truncated: c.truncated}
}
