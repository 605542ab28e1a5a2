#!/usr/bin/env bash
# make bench: runs the benchmark suite COUNT times (default 5) and prints
# benchstat summaries (medians). Raw results go to .bench/. The figures in
# BENCHMARKS.md come from this script.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${COUNT:-6}
out=.bench
mkdir -p "$out"
tools=$PWD/.tools/bin
[ -x "$tools/benchstat" ] || GOBIN=$tools go install golang.org/x/perf/cmd/benchstat@latest
run() { # name pkg pattern [benchtime]
	echo ">> $1" >&2
	go test -run '^$' -bench "$3" -benchtime "${4:-1s}" -count "$count" -timeout 60m "$2" | tee "$out/$1.txt" >/dev/null
	"$tools/benchstat" "$out/$1.txt"
}
{
	echo "# machine: $(nproc) cores, $(uname -m), $(go version | cut -d' ' -f3), $(date -u +%F)"
	run codec ./protocol 'Batch'
	run spool ./agent/spool 'Append'
	run ingest ./hub/devicews 'Ingest' 20000x
	run influx ./hub/influx 'Write|Direct|Points'
	run commands ./cmd/internal/e2e 'CommandRoundTrip' 500x
	count=3 run bulk ./cmd/internal/e2e 'BulkSend' 1x
	echo ">> wire efficiency"
	go test -run 'TestWireEfficiency' -v ./protocol | grep -i 'bytes' || true
} 2>&1 | tee "$out/summary.txt"
