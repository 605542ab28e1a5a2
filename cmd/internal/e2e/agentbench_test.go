package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/hub/influx/influxtest"
)

// Footprint measurement windows (issue: agent RSS <= 12 MiB, CPU <= 0.5%
// of one core at a 1 s interval).
const (
	footprintWarmup = 10 * time.Second
	footprintWindow = 30 * time.Second
	// userHZ is the unit of utime/stime in /proc/<pid>/stat: USER_HZ, 100
	// on every Linux architecture the agent targets (proc(5)).
	userHZ = 100
)

// envAgentBenchEnv adds environment to the measured agent only (e.g.
// "GOGC=50 GOMEMLIMIT=8MiB"), to compare runtime settings;
// envAgentBenchLog names a file that receives the agent's log (with
// GODEBUG=gctrace=1 in envAgentBenchEnv: its heap over time).
// envAgentBenchWindow overrides the 30 s measurement window (a Go
// duration): a longer one shows the heap's steady state across several GC
// cycles.
const (
	envAgentBenchEnv    = "FLEETWIRE_AGENTBENCH_ENV"
	envAgentBenchLog    = "FLEETWIRE_AGENTBENCH_LOG"
	envAgentBenchWindow = "FLEETWIRE_AGENTBENCH_WINDOW"
)

// BenchmarkAgentFootprint runs the real fleetagent binary (as shipped:
// every default collector, compression on) against a real hub and InfluxDB
// at a 1 s interval. After a warm-up it samples VmRSS every second for a
// window and reports the largest and the last sample, RssAnon at the end
// (VmRSS minus the pages of the mapped binary, which are most of it), and
// the CPU the process used (utime+stime) over the window as a share of one
// core. The harness's hub pings every second (production: 20 s), so the
// agent's CPU here is an upper bound.
//
//	go test -run '^$' -bench AgentFootprint -benchtime 1x -count 3 ./cmd/internal/e2e
func BenchmarkAgentFootprint(b *testing.B) {
	ix := influxtest.Start(b)
	h := startHub(b, ix)
	for i := range b.N {
		device := fmt.Sprintf("pi-footprint-%d", i)
		tok := h.addDevice(device, labels)
		fp := measureAgent(b, h, device, tok)
		b.ReportMetric(fp.maxRSS, "rss-MiB")
		b.ReportMetric(fp.lastRSS, "rss-final-MiB")
		b.ReportMetric(fp.anonRSS, "rss-anon-MiB")
		b.ReportMetric(fp.cpu, "cpu-%core")
	}
}

type footprint struct {
	maxRSS, lastRSS float64 // VmRSS, MiB
	anonRSS         float64 // RssAnon at the end (heap, stacks; not the mapped binary), MiB
	cpu             float64 // percent of one core
}

func measureAgent(b *testing.B, h *hubProc, device, token string) footprint {
	b.Helper()
	dir := b.TempDir()
	cfgFile := filepath.Join(dir, "fleetagent.yaml")
	cfg := fmt.Sprintf("device_id: %s\nhub:\n  url: %s\n  token: %s\n  ca_file: %s\ninterval: 1s\nspool:\n  dir: %s\n",
		device, h.deviceURL(), token, h.caFile(), filepath.Join(dir, "spool"))
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bins.agent, "--config", cfgFile)
	cmd.Env = append(os.Environ(), strings.Fields(os.Getenv(envAgentBenchEnv))...)
	var log syncBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	defer func() {
		cmd.Process.Kill()
		<-exited
		if path := os.Getenv(envAgentBenchLog); path != "" {
			if err := os.WriteFile(path, []byte(log.String()), 0o600); err != nil {
				b.Error(err)
			}
		}
	}()
	eventually(b, 30*time.Second, "the agent online", func() bool {
		select {
		case <-exited:
			b.Fatalf("agent exited; log:\n%s", log.String())
		default:
		}
		var dev deviceJSON
		h.api("GET", "/api/v1/devices/"+device, nil, &dev)
		return dev.Device.Online
	})
	window := footprintWindow
	if w := os.Getenv(envAgentBenchWindow); w != "" {
		d, err := time.ParseDuration(w)
		if err != nil {
			b.Fatalf("%s: %v", envAgentBenchWindow, err)
		}
		window = d
	}
	pid := cmd.Process.Pid
	time.Sleep(footprintWarmup) // a measurement window, not a wait for an event
	b.ResetTimer()
	cpu0 := procCPUTicks(b, pid)
	start := time.Now()
	var fp footprint
	var samples []string
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for time.Since(start) < window {
		<-tick.C
		fp.lastRSS = procStatusMiB(b, pid, "VmRSS:")
		fp.maxRSS = max(fp.maxRSS, fp.lastRSS)
		samples = append(samples, strconv.FormatFloat(fp.lastRSS, 'f', 2, 64))
	}
	b.Logf("VmRSS MiB each second: %s", strings.Join(samples, " "))
	fp.anonRSS = procStatusMiB(b, pid, "RssAnon:")
	b.Logf("at the end: %s", procStatusLines(b, pid, "VmHWM:", "RssAnon:", "RssFile:", "VmStk:", "Threads:"))
	cpu := procCPUTicks(b, pid) - cpu0
	fp.cpu = float64(cpu) / userHZ / time.Since(start).Seconds() * 100
	b.StopTimer()
	select {
	case <-exited:
		b.Fatalf("agent exited during the window; log:\n%s", log.String())
	default:
	}
	return fp
}

// procStatusMiB reads a kB line of /proc/<pid>/status ("VmRSS:") in MiB.
func procStatusMiB(b *testing.B, pid int, name string) float64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, name); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				b.Fatalf("%s %q: %v", name, rest, err)
			}
			return kb / 1024
		}
	}
	b.Fatalf("no %s in /proc/%d/status", name, pid)
	return 0
}

// procStatusLines returns the named lines of /proc/<pid>/status, joined.
func procStatusLines(b *testing.B, pid int, names ...string) string {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	var out []string
	for line := range strings.Lines(string(data)) {
		for _, n := range names {
			if strings.HasPrefix(line, n) {
				out = append(out, strings.Join(strings.Fields(line), " "))
			}
		}
	}
	return strings.Join(out, ", ")
}

// procCPUTicks is utime+stime (fields 14 and 15 of /proc/<pid>/stat) in
// USER_HZ ticks. The command name (field 2) may hold spaces, so fields are
// counted after its closing parenthesis.
func procCPUTicks(b *testing.B, pid int) int64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	i := bytes.LastIndexByte(data, ')')
	f := strings.Fields(string(data[i+1:])) // f[0] is field 3 (state)
	if len(f) < 13 {
		b.Fatalf("short /proc/%d/stat: %q", pid, data)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("/proc/%d/stat utime/stime: %q", pid, data)
	}
	return ut + st
}

// BenchmarkAgentBinarySize builds fleetagent as releases do (static,
// trimmed paths, no symbol table or DWARF) for each target and reports the
// size in MiB (issue: <= 10 MiB per arch).
//
//	go test -run '^$' -bench AgentBinarySize -benchtime 1x ./cmd/internal/e2e
func BenchmarkAgentBinarySize(b *testing.B) {
	targets := []struct{ name, goarch, goarm string }{
		{"armv6", "arm", "6"}, {"armv7", "arm", "7"}, {"arm64", "arm64", ""}, {"amd64", "amd64", ""},
	}
	for range b.N {
		for _, tc := range targets {
			bin := filepath.Join(bins.dir, "fleetagent-size-"+tc.name)
			build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./cmd/fleetagent")
			build.Dir = repoRoot()
			build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+tc.goarch, "GOARM="+tc.goarm)
			if out, err := build.CombinedOutput(); err != nil {
				b.Fatalf("build %s: %v\n%s", tc.name, err, out)
			}
			fi, err := os.Stat(bin)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(fi.Size())/(1<<20), "MiB-"+tc.name)
		}
	}
}
