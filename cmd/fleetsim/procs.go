package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// fdsPerDevice is what one simulated device holds open: its TCP
// connection, and its spool's lock file and directory.
const fdsPerDevice = 3

// maxPerProc caps a process's devices even when the open-file limit is
// high: beyond it, one process's GC and scheduler become the bottleneck.
const maxPerProc = 15000

// perProc is how many devices one process can run under an open-file
// limit of nofile (a margin for everything else a process opens).
func perProc(nofile uint64) int {
	if nofile < 1024 {
		return max(int(nofile)/2/fdsPerDevice, 1)
	}
	return min(maxPerProc, int(nofile-512)/fdsPerDevice)
}

// autoProcs is the number of processes --procs 0 chooses.
func autoProcs(devices int) int {
	per := perProc(openFileLimit())
	return (devices + per - 1) / per
}

// slice returns the devices [first, first+count) of process k of n.
func slice(devices, k, n int) (first, count int) {
	first = k * devices / n
	return first, (k+1)*devices/n - first
}

// runParent re-executes this program procs times, each child running a
// slice of the fleet, and aggregates their snapshots.
func runParent(ctx context.Context, cfg *Config, procs int, progress *progress, logf func(string, ...any)) (*Snapshot, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("re-execute: %w", err)
	}
	logf("running %d devices in %d processes", cfg.Devices, procs)
	var mu sync.Mutex
	latest := make([]*Snapshot, procs)
	cmds := make([]*exec.Cmd, procs)
	exited := make(chan error, procs)
	for k := range procs {
		child := *cfg
		child.First, child.Count = slice(cfg.Devices, k, procs)
		child.Procs, child.Create, child.Ramp = 1, false, cfg.Ramp/float64(procs)
		data, err := json.Marshal(child)
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), envChild+"="+string(data))
		cmd.Stderr = progress.w
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			stopChildren(cmds[:k], exited, k)
			return nil, fmt.Errorf("start process %d: %w", k, err)
		}
		cmds[k] = cmd
		go func() {
			sc := bufio.NewScanner(out)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				var s Snapshot
				if json.Unmarshal(sc.Bytes(), &s) == nil {
					mu.Lock()
					latest[k] = &s
					mu.Unlock()
				}
			}
			if err := cmd.Wait(); err != nil {
				exited <- fmt.Errorf("process %d (devices %d-%d): %w", k, child.First, child.First+child.Count-1, err)
				return
			}
			exited <- nil
		}()
	}
	merged := func() *Snapshot {
		mu.Lock()
		defer mu.Unlock()
		return mergeAll(latest)
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var firstErr error
	for running := procs; running > 0; {
		select {
		case <-t.C:
			if s := merged(); s.Devices > 0 { // some child has reported
				progress.show(s)
			}
		case err := <-exited:
			running--
			if err != nil && firstErr == nil && ctx.Err() == nil {
				firstErr = err
				signalAll(cmds) // one slice failed: stop the rest
			}
		case <-ctx.Done():
			signalAll(cmds)
			ctx = context.Background() // signal once; keep waiting
		}
	}
	return merged(), firstErr
}

// signalAll asks every child to stop (they finish with a final snapshot).
func signalAll(cmds []*exec.Cmd) {
	for _, c := range cmds {
		if c != nil && c.Process != nil {
			_ = c.Process.Signal(syscall.SIGTERM)
		}
	}
}

func stopChildren(cmds []*exec.Cmd, exited <-chan error, n int) {
	signalAll(cmds)
	for range n {
		<-exited
	}
}

// progress prints the once-a-second line: rewritten in place on a
// terminal, one line per second otherwise.
type progress struct {
	w     io.Writer
	tty   bool
	prev  *Snapshot
	shown bool
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *progress) show(s *Snapshot) {
	line := progressLine(s, p.prev)
	p.prev = s
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.shown = true
		return
	}
	fmt.Fprintln(p.w, line)
}

func (p *progress) end() {
	if p.shown {
		fmt.Fprintln(p.w)
		p.shown = false
	}
}
