package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/perf/benchfmt"
)

// Lines the runner adds to a raw output file, around go test's own output.
// They are benchfmt configuration lines, so benchstat still reads the file.
const (
	metaDate    = "benchreport-date: "
	metaCommand = "benchreport-command: "
	metaError   = "benchreport-error: "
	metaLoad    = "benchreport-loadavg: "
)

// Raw is one section's saved go test output, parsed.
type Raw struct {
	Date     time.Time // when the section was run
	Commands []string  // exactly as run
	Errors   []string  // one per command that failed
	Load     []string  // 1-minute load average as each command started
	Failed   map[string]string
	names    []string // benchmark names in the order go test printed them
	values   map[key][]float64
}

type key struct{ name, unit string }

var (
	procsSuffix = regexp.MustCompile(`-\d+$`)
	// Anywhere in the line: go test prints a benchmark's name before it
	// runs, so its failure follows on the same line.
	failLine = regexp.MustCompile(`--- (FAIL|SKIP): Benchmark(\S+)`)
)

// benchName is a benchmark's name as the suite writes it: no "Benchmark"
// prefix, no -GOMAXPROCS suffix.
func benchName(s string) string {
	return procsSuffix.ReplaceAllString(strings.TrimPrefix(s, "Benchmark"), "")
}

// ParseRaw reads a raw output file: the runner's meta lines, the results
// (through benchfmt) and, for benchmarks that failed or were skipped, the
// first line of their message.
func ParseRaw(data []byte, fileName string) (*Raw, error) {
	r := &Raw{Failed: map[string]string{}, values: map[key][]float64{}}
	r.scanLines(data)
	br := benchfmt.NewReader(bytes.NewReader(data), fileName)
	for br.Scan() {
		res, ok := br.Result().(*benchfmt.Result)
		if !ok {
			continue // syntax errors: a benchmark's own log output
		}
		name := benchName(res.Name.String())
		if !slices.Contains(r.names, name) {
			r.names = append(r.names, name)
		}
		for _, v := range res.Values {
			unit, val := v.Unit, v.Value
			if v.OrigUnit != "" { // benchfmt turns ns/op into sec/op; keep go test's
				unit, val = v.OrigUnit, v.OrigValue
			}
			k := key{name, unit}
			r.values[k] = append(r.values[k], val)
		}
	}
	if err := br.Err(); err != nil {
		return nil, fmt.Errorf("parse %s: %w", fileName, err)
	}
	return r, nil
}

func (r *Raw) scanLines(data []byte) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	pending := "" // a failed benchmark waiting for its message
	for sc.Scan() {
		line := sc.Text()
		if pending != "" {
			if msg := strings.TrimSpace(line); msg != "" && strings.HasPrefix(line, " ") && !failLine.MatchString(line) {
				r.Failed[pending] += ": " + shorten(msg, 160)
			}
			pending = ""
		}
		switch {
		case strings.HasPrefix(line, metaDate):
			if t, err := time.Parse(time.RFC3339, strings.TrimPrefix(line, metaDate)); err == nil {
				r.Date = t
			}
		case strings.HasPrefix(line, metaCommand):
			r.Commands = append(r.Commands, strings.TrimPrefix(line, metaCommand))
		case strings.HasPrefix(line, metaLoad):
			r.Load = append(r.Load, strings.TrimPrefix(line, metaLoad))
		case strings.HasPrefix(line, metaError):
			r.Errors = append(r.Errors, strings.TrimPrefix(line, metaError))
		default:
			if m := failLine.FindStringSubmatch(line); m != nil {
				pending = benchName(m[2])
				r.Failed[pending] = map[string]string{"FAIL": "failed", "SKIP": "skipped"}[m[1]]
			}
		}
	}
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Names are the benchmarks with results, in the order go test printed them.
func (r *Raw) Names() []string { return r.names }

// resolve finds the results for bench: the name itself or, when that has no
// results, its only sub-benchmark (so a row survives a benchmark growing a
// single sub-benchmark).
func (r *Raw) resolve(bench string) (string, bool) {
	if slices.Contains(r.names, bench) {
		return bench, true
	}
	var subs []string
	for _, n := range r.names {
		if strings.HasPrefix(n, bench+"/") {
			subs = append(subs, n)
		}
	}
	if len(subs) == 1 {
		return subs[0], true
	}
	return "", false
}

// Median is the median of bench's values in unit across the -count runs,
// and the values in run order. The error says why there is none.
func (r *Raw) Median(bench, unit string) (float64, []float64, error) {
	if r == nil {
		return 0, nil, errors.New("section not run")
	}
	name, ok := r.resolve(bench)
	if !ok {
		return 0, nil, errors.New(r.missing(bench))
	}
	vals := r.values[key{name, unit}]
	if len(vals) == 0 {
		return 0, nil, fmt.Errorf("Benchmark%s reported no %s", name, unit)
	}
	return median(vals), vals, nil
}

// missing says why bench has no results.
func (r *Raw) missing(bench string) string {
	for _, n := range append([]string{bench}, sortedKeys(r.Failed)...) {
		if why, ok := r.Failed[n]; ok && (n == bench || strings.HasPrefix(n, bench+"/")) {
			return "Benchmark" + n + " " + why
		}
	}
	if len(r.Errors) > 0 {
		return r.Errors[0]
	}
	return "no Benchmark" + bench + " in the output"
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// median of vals (the mean of the middle two for an even count).
func median(vals []float64) float64 {
	s := slices.Clone(vals)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
