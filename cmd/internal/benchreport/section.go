package main

import (
	"fmt"
	"strconv"
	"strings"
)

// Section is one part of BENCHMARKS.md: the go test commands that measure
// it, the tables its results fill and the plots drawn from its samples.
type Section struct {
	ID     string // ONLY= key; raw output goes to <raw dir>/<ID>.txt
	Title  string
	Prose  string // what is measured, one paragraph
	Runs   []Run
	Tables []Table
	Plots  []Plot
}

// Run is one `go test -bench` invocation.
type Run struct {
	Pkg       string
	Bench     string   // -bench pattern
	Benchtime string   // empty: go test's default
	Count     int      // 0: the runner's COUNT
	Timeout   string   // empty: 60m
	Env       []string // extra KEY=value pairs, on top of the runner's
}

// count is the -count this run uses when the runner's default is def.
func (r Run) count(def int) int {
	if r.Count > 0 {
		return r.Count
	}
	return def
}

// Args are the arguments to `go`.
func (r Run) Args(count int) []string {
	args := []string{"test", "-run", "^$", "-bench", r.Bench}
	if r.Benchtime != "" {
		args = append(args, "-benchtime", r.Benchtime)
	}
	timeout := r.Timeout
	if timeout == "" {
		timeout = "60m"
	}
	args = append(args, "-count", strconv.Itoa(r.count(count)), "-timeout", timeout, r.Pkg)
	return args
}

// Command is the command line as a shell would take it, with env first.
func (r Run) Command(env []string, count int) string {
	var parts []string
	for _, e := range append(append([]string{}, env...), r.Env...) {
		k, v, _ := strings.Cut(e, "=")
		parts = append(parts, k+"="+shellQuote(v))
	}
	parts = append(parts, "go")
	for _, a := range r.Args(count) {
		parts = append(parts, shellQuote(a))
	}
	return strings.Join(parts, " ")
}

// shellQuote quotes s for sh when it has characters the shell would
// interpret; "$PWD/..." is left for the shell to expand.
func shellQuote(s string) string {
	if s == "" {
		return "''"
	}
	if strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+$") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Table maps benchmark results to a markdown table: one row per benchmark
// name, one column per unit.
type Table struct {
	RowHeader string
	Columns   []Column
	Rows      []Row
	// Auto, when set, adds a row for every benchmark whose name starts with
	// it, in the order go test printed them, labelled by the rest of the name.
	Auto string
	// Baseline is the benchmark name Ratio columns divide by.
	Baseline string
}

// Column is one unit of a table.
type Column struct {
	Header string
	Unit   string // as go test prints it ("points/s", "p99-ms", "allocs/op")
	Ratio  bool   // the row's median divided by the Baseline row's (rows with Ratio set)
}

// Row is one benchmark of a table.
type Row struct {
	Label string
	Bench string // name without "Benchmark" and without the -GOMAXPROCS suffix
	Bold  bool
	Ratio bool // fill the table's Ratio columns for this row
}

// PlotKind says how a plot reads its samples files.
type PlotKind int

const (
	// PlotCDF: one latency in milliseconds per line; a CDF per series with
	// p50 and p99 marked.
	PlotCDF PlotKind = iota
	// PlotConnections: lines "conns kib_per_conn rss_mib"; RSS and KiB/conn
	// against connections.
	PlotConnections
)

// Plot is one SVG in the plots directory, drawn from samples files the
// benchmarks write to $FLEETWIRE_BENCH_SAMPLES.
type Plot struct {
	Name   string // <plots dir>/<Name>.svg
	Title  string
	Kind   PlotKind
	Series []Series
}

// Series is one samples file of a plot.
type Series struct {
	Label string
	File  string // name inside the samples directory
}

// Cmp is how a target compares the measured value with its limit.
type Cmp int

// The comparisons a target can use.
const (
	AtMost Cmp = iota
	AtLeast
	Below
)

func (c Cmp) ok(v, limit float64) bool {
	switch c {
	case AtMost:
		return v <= limit
	case AtLeast:
		return v >= limit
	default:
		return v < limit
	}
}

func (c Cmp) String() string {
	return [...]string{"≤", "≥", "<"}[c]
}

// Target is one of issue 5's goals.
type Target struct {
	What    string
	Section string // the section whose results Measure reads
	Measure Measure
	Cmp     Cmp
	Limit   float64
	Unit    string
}

// Measure derives a target's figure from one section's results.
type Measure func(r *Raw) (float64, error)

// metric is the median of one benchmark's unit.
func metric(bench, unit string) Measure {
	return func(r *Raw) (float64, error) {
		v, _, err := r.Median(bench, unit)
		return v, err
	}
}

// ratio is bench's median over base's median, both in unit.
func ratio(bench, base, unit string) Measure {
	return func(r *Raw) (float64, error) {
		v, _, err := r.Median(bench, unit)
		if err != nil {
			return 0, err
		}
		b, _, err := r.Median(base, unit)
		if err != nil {
			return 0, fmt.Errorf("baseline: %w", err)
		}
		return v / b, nil
	}
}

// maxOf is the largest of bench's medians over units; every unit must be
// there.
func maxOf(bench string, units ...string) Measure {
	return func(r *Raw) (float64, error) {
		var m float64
		for i, u := range units {
			v, _, err := r.Median(bench, u)
			if err != nil {
				return 0, err
			}
			if i == 0 || v > m {
				m = v
			}
		}
		return m, nil
	}
}

// firstOf is the first of ms that has a value; if none does, the first's
// error.
func firstOf(ms ...Measure) Measure {
	return func(r *Raw) (float64, error) {
		var first error
		for _, m := range ms {
			v, err := m(r)
			if err == nil {
				return v, nil
			}
			if first == nil {
				first = err
			}
		}
		return 0, first
	}
}
