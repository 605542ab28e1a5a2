package main

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func loadRaw(t *testing.T, name string) *Raw {
	t.Helper()
	data, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseRaw(data, name)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestParseRaw(t *testing.T) {
	r := loadRaw(t, "ingest.txt")
	if want := time.Date(2026, 11, 23, 15, 30, 0, 0, time.UTC); !r.Date.Equal(want) {
		t.Errorf("date %v, want %v", r.Date, want)
	}
	if len(r.Commands) != 2 || !strings.Contains(r.Commands[1], "./hub/influx") {
		t.Errorf("commands %q", r.Commands)
	}
	if len(r.Errors) != 1 || !strings.Contains(r.Errors[0], "exit status 1") {
		t.Errorf("errors %q", r.Errors)
	}
	wantNames := []string{"IngestDiscard/devices=1", "IngestDiscard/devices=16", "Points", "WriteInflux", "InfluxDirectLineProtocol"}
	if !slices.Equal(r.Names(), wantNames) {
		t.Errorf("names %q, want %q", r.Names(), wantNames)
	}
	if got := r.Failed["IngestInfluxDB"]; got != "failed: bench_test.go:130: 12 points dead-lettered" {
		t.Errorf("failure %q", got)
	}
}

// TestParseRawInlineFailure: go test prints a benchmark's name before
// running it, so a failure starts on the name's line.
func TestParseRawInlineFailure(t *testing.T) {
	out := "BenchmarkWriteInflux-2                \t--- FAIL: BenchmarkWriteInflux-2\n" +
		"    bench_test.go:75: influxtest: influxd not ready: after 30s\n" +
		"        influxd log:\n" +
		"BenchmarkPoints-2 \t 100\t 2500000 ns/op\t 1980000 points/s\n"
	r, err := ParseRaw([]byte(out), "inline")
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = r.Median("WriteInflux", "points/s")
	if want := "BenchmarkWriteInflux failed: bench_test.go:75: influxtest: influxd not ready: after 30s"; err == nil || err.Error() != want {
		t.Errorf("error %v, want %q", err, want)
	}
	if v, _, err := r.Median("Points", "points/s"); err != nil || v != 1980000 {
		t.Errorf("Points: %v %v", v, err)
	}
	var b strings.Builder
	renderTable(&b, Table{RowHeader: "x", Columns: []Column{{Header: "points/s", Unit: "points/s"}},
		Rows: []Row{{Label: "points", Bench: "Points"}}}, r)
	r.Failed["Points"] = "failed: flaky"
	renderTable(&b, Table{RowHeader: "x", Columns: []Column{{Header: "points/s", Unit: "points/s"}},
		Rows: []Row{{Label: "points", Bench: "Points"}}}, r)
	if got := strings.Count(b.String(), "_points: BenchmarkPoints also failed: flaky; the figures are from the runs that completed._"); got != 1 {
		t.Errorf("partial failure noted %d times, want once:\n%s", got, b.String())
	}
}

func TestMedian(t *testing.T) {
	r := loadRaw(t, "ingest.txt")
	for _, tc := range []struct {
		bench, unit string
		want        float64
		runs        []float64
	}{
		{"IngestDiscard/devices=1", "points/s", 1090000, []float64{1090000, 1200000, 1000000}},
		{"WriteInflux", "points/s", 315000, []float64{315000, 320000, 300000}},
		{"Points", "allocs/op", 50020, []float64{50020, 50020, 50020}},
		{"Points", "ns/op", 2500000, []float64{2500000, 2500000, 2500000}}, // go test's unit, not benchfmt's sec/op
	} {
		got, runs, err := r.Median(tc.bench, tc.unit)
		if err != nil || got != tc.want || !slices.Equal(runs, tc.runs) {
			t.Errorf("Median(%s, %s) = %v %v %v, want %v %v", tc.bench, tc.unit, got, runs, err, tc.want, tc.runs)
		}
	}
	if m := median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Errorf("median of an even count = %v, want 2.5", m)
	}
	for bench, want := range map[string]string{
		"IngestInfluxDB": "BenchmarkIngestInfluxDB failed: bench_test.go:130: 12 points dead-lettered",
		"IngestDiscard":  "go test ./hub/devicews: exit status 1", // two subs: ambiguous
		"Nope":           "go test ./hub/devicews: exit status 1",
	} {
		if _, _, err := r.Median(bench, "points/s"); err == nil || err.Error() != want {
			t.Errorf("Median(%s) error %v, want %q", bench, err, want)
		}
	}
	var none *Raw
	if _, _, err := none.Median("X", "points/s"); err == nil || err.Error() != "section not run" {
		t.Errorf("nil Raw: %v", err)
	}
}

func TestFormat(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		unit string
		want string
	}{
		{331000, "points/s", "331 k"},
		{1090000, "points/s", "1.09 M"},
		{12.5, "points/s", "12.5"},
		{1.04, "p50-ms", "1.04"},
		{35.9, "B/point", "35.9"},
		{0.5634, "x-line-protocol", "0.563"},
		{50020, "allocs/op", "50,020"},
		{3, "allocs/op", "3"},
		{0.6562, "×", "0.66"},
	} {
		if got := formatValue(tc.v, tc.unit); got != tc.want {
			t.Errorf("formatValue(%v, %s) = %q, want %q", tc.v, tc.unit, got, tc.want)
		}
	}
	if got := runsText([]float64{1065000, 996000, 495000}, 996000, "points/s"); got != "1065, 996, 495" {
		t.Errorf("runsText = %q", got)
	}
	if got := anchor("Codec (`protocol`)"); got != "codec-protocol" {
		t.Errorf("anchor %q", got)
	}
}

func TestMarkdown(t *testing.T) {
	sections := []Section{
		{ID: "ingest", Title: "Hub ingest", Prose: "What is measured.", Tables: []Table{{
			RowHeader: "path", Baseline: "InfluxDirectLineProtocol",
			Columns: []Column{{Header: "points/s", Unit: "points/s"}, {Header: "vs direct", Unit: "points/s", Ratio: true},
				{Header: "x-direct", Unit: "x-direct"}},
			Rows: []Row{
				{Label: "discard, 1 device", Bench: "IngestDiscard/devices=1"},
				{Label: "InfluxDB", Bench: "IngestInfluxDB", Bold: true, Ratio: true},
				{Label: "direct", Bench: "InfluxDirectLineProtocol", Bold: true, Ratio: true},
			},
		}, {RowHeader: "auto", Columns: []Column{{Header: "points/s", Unit: "points/s"}}, Auto: "IngestDiscard/"}}},
		{ID: "spool", Title: "Agent spool", Prose: "Appends."},
	}
	rp := &Report{
		Sections: sections,
		Targets: []Target{
			{What: "discard", Section: "ingest", Measure: metric("IngestDiscard/devices=16", "points/s"), Cmp: AtLeast, Limit: 1e6, Unit: "points/s"},
			{What: "sink vs direct", Section: "ingest", Measure: ratio("WriteInflux", "InfluxDirectLineProtocol", "points/s"), Cmp: AtLeast, Limit: 0.9, Unit: "×"},
			{What: "spool", Section: "spool", Measure: metric("Append", "batches/s"), Cmp: AtLeast, Limit: 1, Unit: "batches/s"},
		},
		Raw:       map[string]*Raw{"ingest": loadRaw(t, "ingest.txt")},
		Machine:   Machine{Cores: 2, CPU: "AMD EPYC 7B13 (amd64)", Go: "go version go1.26.8 linux/amd64", Influx: "InfluxDB v1.8.10"},
		Generated: time.Date(2026, 11, 23, 16, 0, 0, 0, time.UTC),
		Notes:     []byte("### History\n\nHand-written.\n"),
		NotesPath: "bench/notes.md",
		RawDir:    ".bench",
	}
	md := string(rp.Markdown())
	for _, want := range []string{
		"| cores | 2 |",
		"| discard ([ingest](#hub-ingest)) | ≥ 1,000,000 points/s | 1.67 M points/s | met |",
		"| sink vs direct ([ingest](#hub-ingest)) | ≥ 0.9× | 0.66× | **not met** |",
		"| spool ([spool](#agent-spool)) | ≥ 1 batches/s |  | not measured (section not run) |",
		"Measured on 2026-11-23 15:30 UTC (1-minute load average as each command started: 0.52, on 2 cores) with:\n\n```sh\nFLEETWIRE_INFLUXD=$PWD/.tools/bin/influxd go test -run '^$' -bench Ingest",
		"**Failed:** go test ./hub/devicews: exit status 1",
		"| path | points/s | vs direct |\n|---|---:|---:|\n", // x-direct: reported by no row, hidden
		"| discard, 1 device | 1.09 M (runs: 1.09, 1.20, 1.00) |  |",
		"| **InfluxDB** | not measured (BenchmarkIngestInfluxDB failed: bench_test.go:130: 12 points dead-lettered) | |",
		"| **direct** | **480 k** (runs: 480, 500, 470) | **1.00×** |",
		"| devices=16 | 1.67 M (runs: 1.67, 1.60, 1.70) |",
		"_Not measured: no saved results (`ONLY=spool make bench`)._",
		"## Notes\n\n<!-- from bench/notes.md, included verbatim -->\n\n### History\n\nHand-written.\n",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q\n%s", want, md)
		}
	}
}
