package collect

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/protocol"
)

// byName indexes points by name plus their tags, e.g. "disk.used_bytes{path=/}".
func byName(pts []protocol.Point) map[string]any {
	m := make(map[string]any, len(pts))
	for _, p := range pts {
		k := p.Name
		for tk, tv := range p.Tags {
			k += "{" + tk + "=" + tv + "}"
		}
		m[k] = p.Value
	}
	return m
}

func collect(t *testing.T, c Collector) ([]protocol.Point, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pts, err := c.Collect(ctx)
	checkPoints(t, pts)
	return pts, err
}

func mustCollect(t *testing.T, c Collector) map[string]any {
	t.Helper()
	pts, err := collect(t, c)
	if err != nil {
		t.Fatalf("%s: %v", c.Name(), err)
	}
	return byName(pts)
}

func intIn(t *testing.T, m map[string]any, name string, lo, hi int64) int64 {
	t.Helper()
	return inRange(t, m, name, lo, hi)
}

func floatIn(t *testing.T, m map[string]any, name string, lo, hi float64) float64 {
	t.Helper()
	return inRange(t, m, name, lo, hi)
}

func inRange[T int64 | float64](t *testing.T, m map[string]any, name string, lo, hi T) T {
	t.Helper()
	v, ok := m[name].(T)
	if !ok {
		t.Fatalf("%s = %#v (%T), want a %T; have %v", name, m[name], m[name], lo, m)
	}
	if v < lo || v > hi {
		t.Errorf("%s = %v, want %v..%v", name, v, lo, hi)
	}
	return v
}

func TestCPU(t *testing.T) {
	c := newCPU()
	m := mustCollect(t, c)
	floatIn(t, m, "cpu.usage_percent", 0, 100.0)
	if n := intIn(t, m, "cpu.count", 1, 4096); n < int64(runtime.NumCPU()) {
		t.Errorf("cpu.count = %d < runtime.NumCPU() = %d", n, runtime.NumCPU())
	}
	// Later calls measure since the previous one. /proc/stat moves in
	// 10 ms ticks, so keep the CPU busy until a usage value appears.
	deadline := time.Now().Add(5 * time.Second)
	for {
		m = mustCollect(t, c)
		if _, ok := m["cpu.usage_percent"]; ok {
			floatIn(t, m, "cpu.usage_percent", 0, 100.0)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no cpu.usage_percent after the first call within 5s")
		}
		spin(time.Millisecond * 20)
	}
}

func spin(d time.Duration) {
	for end := time.Now().Add(d); time.Now().Before(end); {
	}
}

func TestCPUBaselineHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := newCPU().Collect(ctx); err == nil {
		t.Fatal("Collect with a canceled context during the baseline: want error")
	}
}

func TestCPUUsage(t *testing.T) {
	base := cpuTimes{User: 100, System: 50, Idle: 800, Iowait: 50}
	tests := []struct {
		name string
		next cpuTimes
		want float64
		ok   bool
	}{
		{"all idle", cpuTimes{User: 100, System: 50, Idle: 900, Iowait: 50}, 0, true},
		{"iowait is idle", cpuTimes{User: 100, System: 50, Idle: 800, Iowait: 150}, 0, true},
		{"all busy", cpuTimes{User: 150, System: 100, Idle: 800, Iowait: 50}, 100, true},
		{"quarter", cpuTimes{User: 110, System: 50, Idle: 870, Iowait: 55, Irq: 10, Softirq: 5}, 25, true},
		{"steal is busy", cpuTimes{User: 100, System: 50, Idle: 810, Iowait: 50, Steal: 10}, 50, true},
		{"guest not counted twice", cpuTimes{User: 110, System: 50, Idle: 810, Iowait: 50, Guest: 10}, 50, true},
		{"no time passed", base, 0, false},
		{"counters reset", cpuTimes{User: 10, Idle: 10}, 0, false},
		{"idle estimate stepped back", cpuTimes{User: 110, System: 50, Idle: 799, Iowait: 50}, 100, true},
		{"busy stepped back", cpuTimes{User: 99, System: 50, Idle: 810, Iowait: 50}, 0, true},
	}
	for _, tt := range tests {
		got, ok := cpuUsage(base, tt.next)
		if got != tt.want || ok != tt.ok {
			t.Errorf("%s: cpuUsage = %v, %v; want %v, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}

func TestMem(t *testing.T) {
	m := mustCollect(t, newMem())
	if len(m) != 5 {
		t.Errorf("got %d metrics, want 5: %v", len(m), m)
	}
	total := intIn(t, m, "mem.total_bytes", 16<<20, 1<<50)
	avail := intIn(t, m, "mem.available_bytes", 0, total)
	used := intIn(t, m, "mem.used_bytes", 0, total)
	if used != total-avail {
		t.Errorf("used %d != total %d - available %d", used, total, avail)
	}
	pct := floatIn(t, m, "mem.used_percent", 0, 100.0)
	if want := float64(used) / float64(total) * 100; pct < want-0.01 || pct > want+0.01 {
		t.Errorf("used_percent = %v, want %.2f", pct, want)
	}
	intIn(t, m, "mem.swap_used_bytes", 0, 1<<50)
}

func TestDisk(t *testing.T) {
	dir := t.TempDir()
	pts, err := collect(t, newDisk([]string{"/", dir, "/nonexistent-fleetwire"}))
	if err == nil || !strings.Contains(err.Error(), "disk /nonexistent-fleetwire") {
		t.Errorf("err = %v, want one naming the missing mount", err)
	}
	if len(pts) != 8 {
		t.Fatalf("got %d points, want 4 for each readable path: %v", len(pts), pts)
	}
	m := byName(pts)
	for _, p := range []string{"/", dir} {
		tag := "{path=" + p + "}"
		total := intIn(t, m, "disk.total_bytes"+tag, 1, 1<<60)
		used := intIn(t, m, "disk.used_bytes"+tag, 0, total)
		free := intIn(t, m, "disk.free_bytes"+tag, 0, total)
		if used+free > total {
			t.Errorf("%s: used %d + free %d > total %d", p, used, free, total)
		}
		floatIn(t, m, "disk.used_percent"+tag, 0, 100.0)
	}
}

func TestNet(t *testing.T) {
	pts, err := collect(t, newNet(nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pts {
		if p.Tags["iface"] == "lo" || p.Tags["iface"] == "" {
			t.Errorf("default interfaces: got %s{iface=%q}, want every interface but lo", p.Name, p.Tags["iface"])
		}
	}
	if len(pts)%6 != 0 {
		t.Errorf("got %d points, want 6 per interface", len(pts))
	}

	// Loopback exists everywhere, so it is the one to name explicitly.
	c := newNet([]string{"lo", "nosuch0"})
	pts, err = collect(t, c)
	if err == nil || !strings.Contains(err.Error(), "nosuch0") {
		t.Errorf("err = %v, want one naming nosuch0", err)
	}
	first := byName(pts)
	if len(first) != 6 {
		t.Fatalf("got %v, want the 6 lo counters", first)
	}
	pts, _ = collect(t, c)
	second := byName(pts)
	for _, n := range []string{"rx_bytes", "tx_bytes", "rx_packets", "tx_packets", "rx_errors", "tx_errors"} {
		k := "net." + n + "{iface=lo}"
		a := intIn(t, first, k, 0, 1<<62)
		if b := intIn(t, second, k, 0, 1<<62); b < a {
			t.Errorf("%s went back: %d then %d", k, a, b)
		}
	}
}

func TestLoad(t *testing.T) {
	m := mustCollect(t, newLoad())
	if len(m) != 3 {
		t.Errorf("got %v, want load1, load5, load15", m)
	}
	for _, n := range []string{"load.load1", "load.load5", "load.load15"} {
		floatIn(t, m, n, 0, 1e6)
	}
}

func TestUptime(t *testing.T) {
	m := mustCollect(t, newUptime())
	if len(m) != 1 {
		t.Errorf("got %v, want one metric", m)
	}
	intIn(t, m, "system.uptime_seconds", 1, 100*365*24*3600)
}

func TestToInt(t *testing.T) {
	if got := toInt(1<<63 - 1); got != 1<<63-1 {
		t.Errorf("toInt(MaxInt64) = %d", got)
	}
	if got := toInt(1 << 63); got != 1<<63-1 {
		t.Errorf("toInt(MaxInt64+1) = %d, want clamped to MaxInt64", got)
	}
}

func TestAllBuiltinsTogether(t *testing.T) {
	cs, err := New(Config{ThermalDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var all []protocol.Point
	for _, c := range cs {
		pts, err := collect(t, c)
		if err != nil {
			t.Errorf("%s: %v", c.Name(), err)
		}
		all = append(all, pts...)
	}
	// One collection must not hold the same series twice: the points share
	// a timestamp and would overwrite each other in InfluxDB.
	seen := map[string]bool{}
	for _, p := range all {
		k := p.Name
		for tk, tv := range p.Tags {
			k += "," + tk + "=" + tv
		}
		if seen[k] {
			t.Errorf("series %s twice in one collection", k)
		}
		seen[k] = true
	}
	checkPoints(t, all)
}

func TestParseCPULine(t *testing.T) {
	tests := []struct {
		line string
		want cpuTimes
		ok   bool
	}{
		{"cpu  727486 6135 192740 1439847 23563 0 9354 9938 0 0",
			cpuTimes{User: 727486, Nice: 6135, System: 192740, Idle: 1439847, Iowait: 23563, Softirq: 9354, Steal: 9938}, true},
		{"cpu 10 0 5 85", cpuTimes{User: 10, System: 5, Idle: 85}, true}, // before Linux 2.6
		{"cpu 10 0 5", cpuTimes{}, false},
		{"cpu0 10 0 5 85 0 0 0 0 0 0", cpuTimes{}, false},
		{"intr 1 2 3 4", cpuTimes{}, false},
		{"", cpuTimes{}, false},
	}
	for _, tt := range tests {
		got, ok := parseCPULine([]byte(tt.line))
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseCPULine(%q) = %+v, %v; want %+v, %v", tt.line, got, ok, tt.want, tt.ok)
		}
	}
}

func TestCountCPULines(t *testing.T) {
	stat := "cpu0 1 2 3 4\ncpu1 1 2 3 4\ncpu2 1 2 3 4\ncpu3 1 2 3 4\nintr 5 6\nctxt 7\ncpufreq 1\n"
	if n := countCPULines([]byte(stat)); n != 4 {
		t.Errorf("countCPULines = %d, want 4", n)
	}
}

func TestParseMeminfo(t *testing.T) {
	pi := "MemTotal:        3882284 kB\nMemFree:         2501032 kB\nMemAvailable:    3393828 kB\n" +
		"Buffers:           48512 kB\nCached:           925572 kB\nSwapCached:            0 kB\n" +
		"SwapTotal:         204796 kB\nSwapFree:          102400 kB\nHugePages_Total:       0\n"
	v, err := parseMeminfo([]byte(pi))
	if err != nil {
		t.Fatal(err)
	}
	want := meminfo{total: 3882284 << 10, available: 3393828 << 10, swapTotal: 204796 << 10, swapFree: 102400 << 10}
	if v != want {
		t.Errorf("parseMeminfo = %+v, want %+v", v, want)
	}
	// Before Linux 3.14 there is no MemAvailable.
	old := "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 20 kB\nCached: 300 kB\n"
	if v, err := parseMeminfo([]byte(old)); err != nil || v.available != 420<<10 {
		t.Errorf("without MemAvailable: %+v, %v; want available = free+buffers+cached = %d", v, err, 420<<10)
	}
	for _, bad := range []string{"MemFree: 1 kB\n", "MemTotal: x kB\n"} {
		if _, err := parseMeminfo([]byte(bad)); err == nil {
			t.Errorf("parseMeminfo(%q): want error", bad)
		}
	}
}

func TestParseNetDevLine(t *testing.T) {
	tests := []struct {
		line string
		name string
		rx   uint64 // counters[0]
		txe  uint64 // counters[10]
		ok   bool
	}{
		{"  eth0: 615455035   34727    1    0    0     0          0         0  2889197   27928    2    0    0     0       0          0", "eth0", 615455035, 2, true},
		{"wlan0:123 1 0 0 0 0 0 0 456 2 7 0 0 0 0 0", "wlan0", 123, 7, true}, // no space after the colon
		{"Inter-|   Receive                                                |  Transmit", "", 0, 0, false},
		{" face |bytes    packets errs drop fifo frame compressed multicast|bytes", "", 0, 0, false},
		{"  eth0: 1 2 3", "", 0, 0, false},
	}
	for _, tt := range tests {
		name, c, ok := parseNetDevLine([]byte(tt.line))
		if string(name) != tt.name || ok != tt.ok || c[0] != tt.rx || c[10] != tt.txe {
			t.Errorf("parseNetDevLine(%q) = %q, rx %d, tx errs %d, %v", tt.line, name, c[0], c[10], ok)
		}
	}
}

func TestProcFileRereadsAndGrows(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stat")
	big := strings.Repeat("x", 3*procBufSize+17)
	if err := os.WriteFile(path, []byte(big), 0o600); err != nil {
		t.Fatal(err)
	}
	p := procFile{path: path}
	defer p.Close()
	if b, err := p.read(); err != nil || string(b) != big {
		t.Fatalf("read: %d bytes, %v; want %d", len(b), err, len(big))
	}
	if err := os.WriteFile(path, []byte("short\n"), 0o600); err != nil { // same inode
		t.Fatal(err)
	}
	if b, err := p.read(); err != nil || string(b) != "short\n" {
		t.Fatalf("reread: %q, %v", b, err)
	}
}

func TestUptimeRoundsUp(t *testing.T) {
	dir := t.TempDir()
	for text, want := range map[string]int64{"12147.00 23000.10\n": 12147, "12147.01 23000.10\n": 12148, "7 1\n": 7} {
		path := filepath.Join(dir, "uptime")
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		u := &uptimeCollector{uptime: procFile{path: path}}
		intIn(t, mustCollect(t, u), "system.uptime_seconds", want, want)
		u.Close()
	}
}

func TestBuiltinsClose(t *testing.T) {
	cs, err := New(Config{ThermalDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		mustCollect(t, c)
		if cl, ok := c.(io.Closer); ok {
			if err := cl.Close(); err != nil {
				t.Errorf("%s: close: %v", c.Name(), err)
			}
		}
		mustCollect(t, c) // reopens
	}
}
