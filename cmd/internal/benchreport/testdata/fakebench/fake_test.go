// Package fakebench is a tiny benchmark package for benchreport's runner
// test: one benchmark that reports a metric and writes samples, one that
// fails.
package fakebench

import (
	"os"
	"path/filepath"
	"testing"
)

func BenchmarkOK(b *testing.B) {
	for b.Loop() {
	}
	b.ReportMetric(42, "widgets/s")
	if dir := os.Getenv("FLEETWIRE_BENCH_SAMPLES"); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, "ok.txt"), []byte("1\n2\n3\n"), 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFails(b *testing.B) {
	b.Fatal("boom")
}
