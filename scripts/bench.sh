#!/usr/bin/env bash
# make bench: runs the benchmark suite (cmd/internal/benchreport/suite.go)
# and writes BENCHMARKS.md and the plots in docs/bench/. Raw go test output
# is kept in .bench/.
#
#   COUNT=6 scripts/bench.sh          # -count for every benchmark (default 3)
#   ONLY=codec,wire scripts/bench.sh  # some sections; the others from .bench/
#   scripts/bench.sh --from .bench    # re-render without running anything
#
# Needs FLEETWIRE_INFLUXD (the Makefile exports it) and the dashboard built
# (the e2e hub embeds it): `make bench` does both.
set -euo pipefail
cd "$(dirname "$0")/.."
exec go run ./cmd/internal/benchreport "$@"
