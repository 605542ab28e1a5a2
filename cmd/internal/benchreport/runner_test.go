package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunFailedSection runs a real go test on testdata/fakebench: one
// benchmark passes, one fails. Everything is still written, the failed
// row says why, and Run reports the failure.
func TestRunFailedSection(t *testing.T) {
	tmp := t.TempDir()
	var log bytes.Buffer
	m := &Main{
		Sections: []Section{{ID: "fake", Title: "Fake", Prose: "Canned.",
			Runs: []Run{{Pkg: "./testdata/fakebench", Bench: ".", Benchtime: "10x"}},
			Tables: []Table{{RowHeader: "benchmark", Columns: []Column{{Header: "widgets/s", Unit: "widgets/s"}},
				Rows: []Row{{Label: "ok", Bench: "OK"}, {Label: "fails", Bench: "Fails"}}}},
			Plots: []Plot{{Name: "ok", Title: "OK", Kind: PlotCDF, Series: []Series{{Label: "ok", File: "ok.txt"}}}},
		}},
		Log: &log,
	}
	if err := m.ParseFlags([]string{"-raw", filepath.Join(tmp, "raw"), "-out", filepath.Join(tmp, "B.md"),
		"-plots", filepath.Join(tmp, "plots"), "-notes", filepath.Join(tmp, "none.md")},
		func(k string) string { return map[string]string{"COUNT": "2"}[k] }); err != nil {
		t.Fatal(err)
	}
	err := m.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "fake") {
		t.Errorf("Run error %v, want the fake section named as failed", err)
	}
	md, rerr := os.ReadFile(m.Out)
	if rerr != nil {
		t.Fatal(rerr)
	}
	for _, want := range []string{
		"-bench . -benchtime 10x -count 2 -timeout 60m ./testdata/fakebench",
		"| ok | 42 |",
		"| fails | not measured (BenchmarkFails failed: fake_test.go:",
		"**Failed:** go test ./testdata/fakebench: exit status 1",
		"![OK](plots/ok.svg)",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report lacks %q\n%s\nlog:\n%s", want, md, log.String())
		}
	}
	// --from renders the same again without running anything, and fails
	// because the saved section had failed.
	again := &Main{Sections: m.Sections, Log: &log}
	if err := again.ParseFlags([]string{"--from", m.RawDir, "-out", filepath.Join(tmp, "C.md"),
		"-plots", m.PlotsDir, "-notes", m.Notes}, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	if err := again.Run(context.Background()); err == nil {
		t.Error("--from with a failed saved section: no error")
	}
	if md2, _ := os.ReadFile(again.Out); !strings.Contains(string(md2), "| ok | 42 |") {
		t.Errorf("--from report:\n%s", md2)
	}
}
