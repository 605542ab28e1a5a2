// Command benchreport runs the benchmark suite (suite.go) and writes
// BENCHMARKS.md with the machine, the exact commands, medians over the
// -count runs, issue 5's targets and SVG plots of the latency samples.
//
//	go run ./cmd/internal/benchreport                  # everything (make bench)
//	ONLY=codec,wire go run ./cmd/internal/benchreport  # some sections; the rest from .bench/
//	go run ./cmd/internal/benchreport --from .bench    # re-render only
//
// Raw go test output is kept in .bench/<section>.txt; a rerun of some
// sections merges with the saved output of the others. The exit code is
// non-zero when a section run now failed (with --from: when any saved
// section had failed), after everything has been written.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	m := NewMain(os.Stderr)
	if err := m.ParseFlags(os.Args[1:], os.Getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(2)
	}
	if err := m.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}

// Main is the program: flags, then Run.
type Main struct {
	From     string // render only, from this raw directory
	RawDir   string
	Samples  string
	Out      string
	PlotsDir string
	Notes    string
	Count    int
	Only     []string
	Influxd  string

	Sections []Section
	Targets  []Target
	Log      io.Writer // progress and go test's output
}

// NewMain returns a Main for the project's suite.
func NewMain(log io.Writer) *Main {
	return &Main{Sections: Suite, Targets: Targets, Log: log}
}

// ParseFlags reads the flags, with COUNT, ONLY and FLEETWIRE_INFLUXD from
// getenv as defaults.
func (m *Main) ParseFlags(args []string, getenv func(string) string) error {
	fs := flag.NewFlagSet("benchreport", flag.ContinueOnError)
	fs.SetOutput(m.Log)
	count := 3
	if c := getenv("COUNT"); c != "" {
		n, err := strconv.Atoi(c)
		if err != nil || n < 1 {
			return fmt.Errorf("COUNT=%q: want a positive integer", c)
		}
		count = n
	}
	fs.StringVar(&m.From, "from", "", "re-render from the raw output in this `dir` without running anything")
	fs.StringVar(&m.RawDir, "raw", ".bench", "`dir` for raw go test output")
	fs.StringVar(&m.Samples, "samples", "", "`dir` for latency samples (default <raw>/samples)")
	fs.StringVar(&m.Out, "out", "BENCHMARKS.md", "markdown `file` to write")
	fs.StringVar(&m.PlotsDir, "plots", "docs/bench", "`dir` for SVG plots")
	fs.StringVar(&m.Notes, "notes", "bench/notes.md", "hand-written notes `file` included at the end")
	fs.IntVar(&m.Count, "count", count, "go test -count (env COUNT)")
	only := fs.String("only", getenv("ONLY"), "comma-separated section `ids` to run (env ONLY; default all)")
	fs.StringVar(&m.Influxd, "influxd", getenv("FLEETWIRE_INFLUXD"), "influxd `path` (env FLEETWIRE_INFLUXD; default .tools/bin/influxd)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if m.From != "" {
		m.RawDir = m.From
	}
	if m.Samples == "" {
		m.Samples = m.RawDir + "/samples"
	}
	if m.Influxd == "" {
		m.Influxd = ".tools/bin/influxd"
	}
	for _, id := range strings.Split(*only, ",") {
		if id = strings.TrimSpace(id); id != "" {
			m.Only = append(m.Only, id)
		}
	}
	return m.validate()
}

func (m *Main) validate() error {
	if m.Count < 1 {
		return errors.New("count: want at least 1")
	}
	var ids []string
	for _, s := range m.Sections {
		ids = append(ids, s.ID)
	}
	for _, id := range m.Only {
		if !slices.Contains(ids, id) {
			return fmt.Errorf("ONLY: unknown section %q (sections: %s)", id, strings.Join(ids, ","))
		}
	}
	return nil
}

// selected are the sections this invocation runs.
func (m *Main) selected() []Section {
	if m.From != "" {
		return nil
	}
	var out []Section
	for _, s := range m.Sections {
		if len(m.Only) == 0 || slices.Contains(m.Only, s.ID) {
			out = append(out, s)
		}
	}
	return out
}

// Run runs the selected sections, then renders the report from the raw
// directory and the plots from the samples.
func (m *Main) Run(ctx context.Context) error {
	var failed []string
	sections := m.selected()
	for i, s := range sections {
		if ctx.Err() != nil {
			fmt.Fprintf(m.Log, ">> interrupted: %s and later sections not run\n", s.ID)
			failed = append(failed, s.ID+" (interrupted)")
			break
		}
		fmt.Fprintf(m.Log, "\n== [%d/%d] %s: %s\n", i+1, len(sections), s.ID, s.Title)
		if err := m.runSection(ctx, s); err != nil {
			fmt.Fprintf(m.Log, ">> %s failed: %v\n", s.ID, err)
			failed = append(failed, s.ID)
		}
	}
	report, plotErrs, err := m.report(ctx)
	if err != nil {
		return err
	}
	if err := os.WriteFile(m.Out, report.Markdown(), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(m.Log, ">> wrote %s\n", m.Out)
	if m.From != "" {
		for _, s := range m.Sections {
			if r := report.Raw[s.ID]; r != nil && len(r.Errors) > 0 {
				failed = append(failed, s.ID)
			}
		}
	}
	failed = append(failed, plotErrs...)
	if len(failed) > 0 {
		return fmt.Errorf("failed: %s (details in %s)", strings.Join(failed, ", "), m.Out)
	}
	return nil
}
