package main

import (
	"runtime"
	"runtime/debug"
)

// defaultGCPercent is the agent's GOGC unless the environment sets one.
// The live heap is about 2 MiB; at the runtime's default of 100 it grows to
// a 4-5 MiB goal between collections, and those pages stay resident.
const defaultGCPercent = 50

// tuneRuntime sets the agent's runtime defaults for small boards unless
// the environment sets them (the agent's RSS budget is 12 MiB, of which
// the mapped binary takes about 7.5):
//
//   - GOMAXPROCS=1: the agent wakes once per interval and waits on the
//     network and the disk; it never needs two CPUs, while every extra P
//     keeps its own allocation caches and GC work buffers resident.
//   - GOGC=50: a GC every ~30 s instead of every ~2 min at a 1 s interval,
//     for a heap of about 3 MiB instead of 5.
//
// Measured with BenchmarkAgentFootprint (cmd/internal/e2e) over a 150 s
// window at a 1 s interval on 2 cores: VmRSS 12.6 MiB with the runtime's
// defaults, 12.0 with GOGC=50, 11.1 with both (RssAnon 5.1 -> 3.7 MiB);
// CPU 0.22-0.23% of a core in all three. A GOMEMLIMIT of 8 MiB was tried
// and rejected: RSS no lower and 5x the CPU (the GC ran continuously).
func tuneRuntime(getenv func(string) string) {
	if getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	if getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
}
