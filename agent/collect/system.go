package collect

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/fleetwire/fleetwire/protocol"
)

// cpuBaseline is how long the first Collect waits between its two samples
// when there is no previous one: long enough for a few scheduler ticks
// (USER_HZ is 100 on Linux), short enough not to delay the first batch.
const cpuBaseline = 200 * time.Millisecond

// The /proc files the built-in collectors read (proc(5)). Each collector
// keeps its file open between collections (procFile).
const (
	procStat    = "/proc/stat"
	procMeminfo = "/proc/meminfo"
	procNetDev  = "/proc/net/dev"
	procLoadavg = "/proc/loadavg"
	procUptime  = "/proc/uptime"
)

// cpuTimes is the aggregate "cpu" line of /proc/stat in USER_HZ ticks.
// Guest time is already included in User (and guest_nice in Nice).
type cpuTimes struct {
	User, Nice, System, Idle, Iowait, Irq, Softirq, Steal, Guest float64
}

// cpuCollector reports usage between two reads of /proc/stat.
type cpuCollector struct {
	stat  procFile
	prev  cpuTimes
	have  bool // prev is valid
	count int  // logical CPUs, counted once: it does not change while running
}

func newCPU() *cpuCollector { return &cpuCollector{stat: procFile{path: procStat}} }

func (c *cpuCollector) Name() string { return NameCPU }

// Close releases the kept-open /proc/stat.
func (c *cpuCollector) Close() error { return c.stat.Close() }

func (c *cpuCollector) Collect(ctx context.Context) ([]protocol.Point, error) {
	if !c.have {
		if err := c.sample(); err != nil {
			return nil, err
		}
		t := time.NewTimer(cpuBaseline)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("cpu baseline: %w", ctx.Err())
		case <-t.C:
		}
	}
	prev := c.prev
	if err := c.sample(); err != nil {
		return nil, err
	}
	pts := make([]protocol.Point, 1, 2)
	pts[0] = protocol.Point{Name: "cpu.count", Value: int64(c.count)}
	if u, ok := cpuUsage(prev, c.prev); ok {
		pts = append(pts, protocol.Point{Name: "cpu.usage_percent", Value: u})
	}
	return pts, nil
}

// sample reads the aggregate times and, the first time, counts the
// per-CPU lines (the CPUs online, as /proc/cpuinfo lists them).
func (c *cpuCollector) sample() error {
	c.have = false
	data, err := c.stat.read()
	if err != nil {
		return fmt.Errorf("cpu times: %w", err)
	}
	line, rest := cutLine(data)
	t, ok := parseCPULine(line)
	if !ok {
		return fmt.Errorf("cpu times: %s: no aggregate cpu line", procStat)
	}
	if c.count == 0 {
		c.count = countCPULines(rest)
		if c.count == 0 {
			return fmt.Errorf("cpu count: %s: no per-CPU lines", procStat)
		}
	}
	c.prev, c.have = t, true
	return nil
}

// parseCPULine parses "cpu  user nice system idle [iowait irq softirq
// steal guest guest_nice]"; kernels before 2.6.33 print fewer columns.
func parseCPULine(line []byte) (cpuTimes, bool) {
	name, line := cutField(line)
	if string(name) != "cpu" {
		return cpuTimes{}, false
	}
	var v [9]uint64
	n := 0
	for ; n < len(v); n++ {
		var f []byte
		f, line = cutField(line)
		x, ok := parseUint(f)
		if !ok {
			break
		}
		v[n] = x
	}
	if n < 4 {
		return cpuTimes{}, false
	}
	return cpuTimes{User: float64(v[0]), Nice: float64(v[1]), System: float64(v[2]), Idle: float64(v[3]),
		Iowait: float64(v[4]), Irq: float64(v[5]), Softirq: float64(v[6]), Steal: float64(v[7]), Guest: float64(v[8])}, true
}

// countCPULines counts the "cpuN" lines.
func countCPULines(b []byte) int {
	n := 0
	for len(b) > 0 {
		var line []byte
		line, b = cutLine(b)
		if len(line) > 3 && string(line[:3]) == "cpu" && line[3] >= '0' && line[3] <= '9' {
			n++
		}
	}
	return n
}

// cpuUsage is the busy share of the time between a and b in percent. Guest
// time is already part of user time, so it is not added again. Busy and
// idle deltas are clamped at 0 separately: on tickless kernels the idle
// time of a sleeping CPU is an estimate that can step back a little when
// it wakes. It reports false when no time passed (or the counters were
// reset), where no number would be honest.
func cpuUsage(a, b cpuTimes) (float64, bool) {
	busy := func(t cpuTimes) float64 {
		return t.User + t.System + t.Nice + t.Irq + t.Softirq + t.Steal
	}
	idle := func(t cpuTimes) float64 { return t.Idle + t.Iowait }
	db, di := max(busy(b)-busy(a), 0), max(idle(b)-idle(a), 0)
	if db+di <= 0 {
		return 0, false
	}
	u := db / (db + di) * 100
	return math.Round(u*100) / 100, true
}

// memCollector reads /proc/meminfo.
type memCollector struct {
	meminfo procFile
}

func newMem() *memCollector { return &memCollector{meminfo: procFile{path: procMeminfo}} }

func (m *memCollector) Name() string { return NameMem }

// Close releases the kept-open /proc/meminfo.
func (m *memCollector) Close() error { return m.meminfo.Close() }

func (m *memCollector) Collect(context.Context) ([]protocol.Point, error) {
	data, err := m.meminfo.read()
	if err != nil {
		return nil, fmt.Errorf("mem: %w", err)
	}
	v, err := parseMeminfo(data)
	if err != nil {
		return nil, fmt.Errorf("mem: %w", err)
	}
	// used = total - available: page cache the kernel can drop is not
	// "used".
	var used, swapUsed uint64
	if v.total > v.available {
		used = v.total - v.available
	}
	if v.swapTotal > v.swapFree {
		swapUsed = v.swapTotal - v.swapFree
	}
	return []protocol.Point{
		{Name: "mem.total_bytes", Value: toInt(v.total)},
		{Name: "mem.available_bytes", Value: toInt(v.available)},
		{Name: "mem.used_bytes", Value: toInt(used)},
		{Name: "mem.used_percent", Value: round2(float64(used) / float64(v.total) * 100)},
		{Name: "mem.swap_used_bytes", Value: toInt(swapUsed)},
	}, nil
}

// meminfo holds the /proc/meminfo values the mem collector uses, in bytes.
type meminfo struct {
	total, available, swapTotal, swapFree uint64
}

// parseMeminfo reads "Key:   value kB" lines. MemAvailable exists since
// Linux 3.14; before it, free + buffers + page cache stands in for it.
func parseMeminfo(data []byte) (meminfo, error) {
	var v meminfo
	var free, buffers, cached uint64
	haveTotal, haveAvail := false, false
	for len(data) > 0 {
		var line []byte
		line, data = cutLine(data)
		i := indexByte(line, ':')
		if i < 0 {
			continue
		}
		var dst *uint64
		switch string(line[:i]) {
		case "MemTotal":
			dst, haveTotal = &v.total, true
		case "MemAvailable":
			dst, haveAvail = &v.available, true
		case "SwapTotal":
			dst = &v.swapTotal
		case "SwapFree":
			dst = &v.swapFree
		case "MemFree":
			dst = &free
		case "Buffers":
			dst = &buffers
		case "Cached":
			dst = &cached
		default:
			continue
		}
		num, unit := cutField(line[i+1:])
		n, ok := parseUint(num)
		if !ok {
			return meminfo{}, fmt.Errorf("%s: bad value in %q", procMeminfo, line)
		}
		if u, _ := cutField(unit); string(u) == "kB" {
			n *= 1024
		}
		*dst = n
	}
	if !haveTotal {
		return meminfo{}, fmt.Errorf("%s: no MemTotal", procMeminfo)
	}
	if !haveAvail {
		v.available = free + buffers + cached
	}
	return v, nil
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// diskCollector statfs()es each configured mount point.
type diskCollector struct {
	paths []string
	tags  []map[string]string // tags[i] is {"path": paths[i]}, shared by every collection
}

func newDisk(paths []string) *diskCollector {
	d := &diskCollector{paths: slices.Clone(paths)}
	for _, p := range d.paths {
		d.tags = append(d.tags, map[string]string{"path": p})
	}
	return d
}

func (d *diskCollector) Name() string { return NameDisk }

// Collect reports every readable mount; an unreadable one (an unplugged
// USB disk) is an error that does not hide the others.
func (d *diskCollector) Collect(context.Context) ([]protocol.Point, error) {
	pts := make([]protocol.Point, 0, 4*len(d.paths))
	var errs []error
	for i, p := range d.paths {
		u, err := diskUsage(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("disk %s: %w", p, err))
			continue
		}
		tags := d.tags[i]
		// Used and Free are the df columns: used+free may be less than
		// total because of blocks reserved for root, and used_percent is
		// used/(used+free) as df prints it.
		pct := 0.0
		if u.used+u.free > 0 {
			pct = float64(u.used) / float64(u.used+u.free) * 100
		}
		pts = append(pts,
			protocol.Point{Name: "disk.total_bytes", Value: toInt(u.total), Tags: tags},
			protocol.Point{Name: "disk.used_bytes", Value: toInt(u.used), Tags: tags},
			protocol.Point{Name: "disk.free_bytes", Value: toInt(u.free), Tags: tags},
			protocol.Point{Name: "disk.used_percent", Value: round2(pct), Tags: tags},
		)
	}
	return pts, errors.Join(errs...)
}

// usage is one mount's df numbers in bytes: free is what unprivileged
// users may still use.
type usage struct {
	total, used, free uint64
}

// netCollector reads /proc/net/dev.
type netCollector struct {
	ifaces []string // empty: all but loopback
	dev    procFile
	known  map[string]*netIface // every interface seen, by name
	seen   []string             // interfaces reported by the last Collect
}

// netIface is what the collector remembers of an interface name.
type netIface struct {
	name   string
	report bool              // wanted and a valid tag value
	tags   map[string]string // {"iface": name}, shared by every collection
}

func newNet(ifaces []string) *netCollector {
	return &netCollector{ifaces: slices.Clone(ifaces), dev: procFile{path: procNetDev}, known: make(map[string]*netIface)}
}

func (n *netCollector) Name() string { return NameNet }

// Close releases the kept-open /proc/net/dev.
func (n *netCollector) Close() error { return n.dev.Close() }

// Collect reports the chosen interfaces. A configured interface that is
// absent (wlan0 not up yet) is an error; the others are still reported.
func (n *netCollector) Collect(context.Context) ([]protocol.Point, error) {
	data, err := n.dev.read()
	if err != nil {
		return nil, fmt.Errorf("net: %w", err)
	}
	_, data = cutLine(data) // two header lines
	_, data = cutLine(data)
	pts := make([]protocol.Point, 0, 6*max(len(n.ifaces), len(n.seen), 1))
	n.seen = n.seen[:0]
	for len(data) > 0 {
		var line []byte
		line, data = cutLine(data)
		name, counters, ok := parseNetDevLine(line)
		if !ok {
			continue
		}
		ifc := n.iface(name)
		n.seen = append(n.seen, ifc.name)
		if !ifc.report {
			continue
		}
		// /proc/net/dev columns: receive bytes packets errs drop fifo
		// frame compressed multicast, then transmit bytes packets errs ...
		tags := ifc.tags
		pts = append(pts,
			protocol.Point{Name: "net.rx_bytes", Value: toInt(counters[0]), Tags: tags},
			protocol.Point{Name: "net.tx_bytes", Value: toInt(counters[8]), Tags: tags},
			protocol.Point{Name: "net.rx_packets", Value: toInt(counters[1]), Tags: tags},
			protocol.Point{Name: "net.tx_packets", Value: toInt(counters[9]), Tags: tags},
			protocol.Point{Name: "net.rx_errors", Value: toInt(counters[2]), Tags: tags},
			protocol.Point{Name: "net.tx_errors", Value: toInt(counters[10]), Tags: tags},
		)
	}
	if len(n.ifaces) > 0 && len(pts) < 6*len(n.ifaces) {
		return pts, n.missing()
	}
	return pts, nil
}

// parseNetDevLine splits "  eth0: 1 2 3 ..." into the name and the first
// 11 counters. Old kernels print no space after the colon.
func parseNetDevLine(line []byte) (name []byte, counters [11]uint64, ok bool) {
	i := indexByte(line, ':')
	if i < 0 {
		return nil, counters, false
	}
	name, _ = cutField(line[:i])
	if len(name) == 0 || !parseUints(line[i+1:], counters[:]) {
		return nil, [11]uint64{}, false
	}
	return name, counters, true
}

// iface returns what is known of an interface, learning it the first time
// (the name is copied only then).
func (n *netCollector) iface(name []byte) *netIface {
	if ifc, ok := n.known[string(name)]; ok {
		return ifc
	}
	s := string(name)
	ifc := &netIface{name: s, report: n.wanted(s) && validTagValue(s) == nil, tags: map[string]string{"iface": s}}
	n.known[s] = ifc
	return ifc
}

func (n *netCollector) wanted(name string) bool {
	if len(n.ifaces) == 0 {
		// Linux names its loopback "lo"; counting it would only add noise.
		return name != "lo"
	}
	return slices.Contains(n.ifaces, name)
}

func (n *netCollector) missing() error {
	var miss []string
	for _, want := range n.ifaces {
		if !slices.Contains(n.seen, want) {
			miss = append(miss, want)
		}
	}
	return fmt.Errorf("net: interfaces not found: %v", miss)
}

// loadCollector reads /proc/loadavg.
type loadCollector struct {
	loadavg procFile
}

func newLoad() *loadCollector { return &loadCollector{loadavg: procFile{path: procLoadavg}} }

func (l *loadCollector) Name() string { return NameLoad }

// Close releases the kept-open /proc/loadavg.
func (l *loadCollector) Close() error { return l.loadavg.Close() }

func (l *loadCollector) Collect(context.Context) ([]protocol.Point, error) {
	data, err := l.loadavg.read()
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	var avg [3]float64
	rest := data
	for i := range avg {
		var f []byte
		var ok bool
		f, rest = cutField(rest)
		if avg[i], ok = parseFloat(f); !ok {
			return nil, fmt.Errorf("load: %s: cannot parse %q", procLoadavg, data)
		}
	}
	return []protocol.Point{
		{Name: "load.load1", Value: avg[0]},
		{Name: "load.load5", Value: avg[1]},
		{Name: "load.load15", Value: avg[2]},
	}, nil
}

// uptimeCollector reads /proc/uptime (seconds since boot, suspend
// included, with two decimals).
type uptimeCollector struct {
	uptime procFile
}

func newUptime() *uptimeCollector { return &uptimeCollector{uptime: procFile{path: procUptime}} }

func (u *uptimeCollector) Name() string { return NameUptime }

// Close releases the kept-open /proc/uptime.
func (u *uptimeCollector) Close() error { return u.uptime.Close() }

func (u *uptimeCollector) Collect(context.Context) ([]protocol.Point, error) {
	data, err := u.uptime.read()
	if err != nil {
		return nil, fmt.Errorf("uptime: %w", err)
	}
	f, _ := cutField(data)
	secs, frac, _ := bytes.Cut(f, []byte{'.'})
	s, ok := parseUint(secs)
	if !ok {
		return nil, fmt.Errorf("uptime: %s: cannot parse %q", procUptime, data)
	}
	// Rounded up, as sysinfo(2) reports it.
	if bytes.ContainsFunc(frac, func(r rune) bool { return r != '0' }) {
		s++
	}
	return []protocol.Point{{Name: "system.uptime_seconds", Value: toInt(s)}}, nil
}

// toInt converts a kernel counter to the wire's int64. Counters never reach
// 2^63 in practice; clamping keeps a corrupt value from wrapping negative.
func toInt(v uint64) int64 {
	if v > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(v)
}

// round2 keeps two decimals of a percentage: more digits are noise on a
// dashboard. A non-finite value (a zero total) becomes 0, because the hub
// rejects a batch holding NaN or Inf.
func round2(f float64) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return math.Round(f*100) / 100
}
