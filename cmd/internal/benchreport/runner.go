package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
)

// env is what every go test command gets on top of the environment: the
// influxd the test helpers start and the directory for latency samples.
// Paths under the working directory are shown as $PWD/... in commands.
func (m *Main) env() (run, shown []string, err error) {
	wd, err := os.Getwd()
	if err != nil {
		return nil, nil, err
	}
	for _, kv := range [][2]string{{"FLEETWIRE_INFLUXD", m.Influxd}, {"FLEETWIRE_BENCH_SAMPLES", m.Samples}} {
		abs, err := filepath.Abs(kv[1])
		if err != nil {
			return nil, nil, err
		}
		run = append(run, kv[0]+"="+abs)
		if rel, err := filepath.Rel(wd, abs); err == nil && !strings.HasPrefix(rel, "..") {
			abs = "$PWD/" + filepath.ToSlash(rel)
		}
		shown = append(shown, kv[0]+"="+abs)
	}
	return run, shown, nil
}

// runSection runs s's commands one after the other, streaming their output
// to the log and saving it, with the commands, date and failures, to
// <raw>/<id>.txt. A failed command does not stop the next one.
func (m *Main) runSection(ctx context.Context, s Section) error {
	env, shown, err := m.env()
	if err != nil {
		return err
	}
	for _, dir := range []string{m.RawDir, m.Samples} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	for _, p := range s.Plots { // stale samples must not be plotted as new ones
		for _, sr := range p.Series {
			if err := os.Remove(filepath.Join(m.Samples, sr.File)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	path := filepath.Join(m.RawDir, s.ID+".txt")
	f, err := os.Create(path + ".tmp")
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "benchreport-section: %s\n%s%s\n", s.ID, metaDate, time.Now().UTC().Format(time.RFC3339))
	var errs []error
	for _, r := range s.Runs {
		line := r.Command(shown, m.Count)
		fmt.Fprintf(f, "%s%s\n", metaCommand, line)
		if load, err := os.ReadFile("/proc/loadavg"); err == nil {
			fmt.Fprintf(f, "%s%s\n", metaLoad, strings.Fields(string(load))[0])
		}
		fmt.Fprintf(m.Log, ">> %s\n", line)
		start := time.Now()
		if err := m.goTest(ctx, f, r, env); err != nil {
			fmt.Fprintf(f, "%s%s\n", metaError, err)
			errs = append(errs, err)
		}
		fmt.Fprintf(m.Log, ">> %s done in %s\n", r.Pkg, time.Since(start).Round(time.Second))
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return err
	}
	return errors.Join(errs...)
}

// goTest runs one go test command, its stdout and stderr into out and the
// log. The error names the package and, when the output shows one, the
// reason (a build error, a panic, a timeout).
func (m *Main) goTest(ctx context.Context, out io.Writer, r Run, env []string) error {
	cmd := exec.CommandContext(ctx, "go", r.Args(m.Count)...)
	cmd.Env = append(append(os.Environ(), env...), r.Env...)
	cmd.WaitDelay = 10 * time.Second
	why := &reasonWriter{}
	w := io.MultiWriter(out, m.Log, why)
	cmd.Stdout, cmd.Stderr = w, w
	err := cmd.Run()
	if err == nil {
		return nil
	}
	if reason := why.reason(); reason != "" {
		return fmt.Errorf("go test %s: %v: %s", r.Pkg, err, reason)
	}
	return fmt.Errorf("go test %s: %w", r.Pkg, err)
}

// reasonLine matches the lines that explain a failed go test run as a
// whole (failures of single benchmarks are found by ParseRaw).
var reasonLine = regexp.MustCompile(`^(panic: .*|\S+\.go:\d+:\d+: .*|FAIL\s+\S+\s+\[.*\])$`)

// reasonWriter keeps the first line that explains a failed run.
type reasonWriter struct {
	mu    sync.Mutex
	buf   []byte
	first string
}

func (w *reasonWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := strings.IndexByte(string(w.buf), '\n')
		if i < 0 {
			break
		}
		if line := string(w.buf[:i]); w.first == "" && reasonLine.MatchString(line) {
			w.first = shorten(line, 200)
		}
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

func (w *reasonWriter) reason() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.first
}

// report loads every section's saved output, draws the plots and reads the
// notes. Plot failures are returned by name; the report still renders.
func (m *Main) report(ctx context.Context) (*Report, []string, error) {
	rp := &Report{
		Sections: m.Sections, Targets: m.Targets, Raw: map[string]*Raw{}, Plots: map[string]PlotResult{},
		Machine: DetectMachine(ctx, m.Influxd), Generated: time.Now(), NotesPath: m.Notes, RawDir: m.RawDir,
	}
	for _, s := range m.Sections {
		data, err := os.ReadFile(filepath.Join(m.RawDir, s.ID+".txt"))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		} else if err != nil {
			return nil, nil, err
		}
		if rp.Raw[s.ID], err = ParseRaw(data, filepath.Join(m.RawDir, s.ID+".txt")); err != nil {
			return nil, nil, err
		}
	}
	plotErrs, err := m.plots(rp)
	if err != nil {
		return nil, nil, err
	}
	notes, err := os.ReadFile(m.Notes)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, err
	}
	rp.Notes = notes
	return rp, plotErrs, nil
}

func (m *Main) plots(rp *Report) ([]string, error) {
	if err := os.MkdirAll(m.PlotsDir, 0o755); err != nil {
		return nil, err
	}
	var failed []string
	for _, s := range m.Sections {
		if rp.Raw[s.ID] == nil {
			continue
		}
		for _, p := range s.Plots {
			path, notes, err := MakePlot(p, m.Samples, m.PlotsDir)
			if err != nil {
				fmt.Fprintf(m.Log, ">> plot %s: %v\n", p.Name, err)
				notes = append(notes, fmt.Sprintf("Plot %q failed: %v", p.Title, err))
				failed = append(failed, "plot "+p.Name)
			}
			pr := PlotResult{Note: notes}
			if path != "" {
				rel, err := filepath.Rel(filepath.Dir(m.Out), path)
				if err != nil {
					rel = path
				}
				pr.Link = filepath.ToSlash(rel)
			}
			rp.Plots[p.Name] = pr
		}
	}
	return failed, nil
}
