package collect

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/fleetwire/fleetwire/protocol"
	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/disk"
	"github.com/shirou/gopsutil/v4/host"
	"github.com/shirou/gopsutil/v4/load"
	"github.com/shirou/gopsutil/v4/mem"
	"github.com/shirou/gopsutil/v4/net"
)

// cpuBaseline is how long the first Collect waits between its two samples
// when there is no previous one: long enough for a few scheduler ticks
// (USER_HZ is 100 on Linux), short enough not to delay the first batch.
const cpuBaseline = 200 * time.Millisecond

// cpuCollector reports usage between two reads of /proc/stat.
type cpuCollector struct {
	prev  cpu.TimesStat
	have  bool // prev is valid
	count int  // logical CPUs, read once: it does not change while running
}

func newCPU() *cpuCollector { return &cpuCollector{} }

func (c *cpuCollector) Name() string { return NameCPU }

func (c *cpuCollector) Collect(ctx context.Context) ([]protocol.Point, error) {
	if c.count == 0 {
		n, err := cpu.CountsWithContext(ctx, true)
		if err != nil {
			return nil, fmt.Errorf("cpu count: %w", err)
		}
		c.count = n
	}
	if !c.have {
		if err := c.sample(ctx); err != nil {
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
	if err := c.sample(ctx); err != nil {
		return nil, err
	}
	pts := []protocol.Point{{Name: "cpu.count", Value: int64(c.count)}}
	if u, ok := cpuUsage(prev, c.prev); ok {
		pts = append(pts, protocol.Point{Name: "cpu.usage_percent", Value: u})
	}
	return pts, nil
}

func (c *cpuCollector) sample(ctx context.Context) error {
	ts, err := cpu.TimesWithContext(ctx, false)
	if err != nil {
		return fmt.Errorf("cpu times: %w", err)
	}
	// gopsutil returns an empty slice, not an error, when /proc/stat is
	// unreadable.
	if len(ts) == 0 {
		c.have = false
		return errors.New("cpu times: no data")
	}
	c.prev, c.have = ts[0], true
	return nil
}

// cpuUsage is the busy share of the time between a and b in percent. Guest
// time is already part of user time, so it is not added again. Busy and
// idle deltas are clamped at 0 separately: on tickless kernels the idle
// time of a sleeping CPU is an estimate that can step back a little when
// it wakes. It reports false when no time passed (or the counters were
// reset), where no number would be honest.
func cpuUsage(a, b cpu.TimesStat) (float64, bool) {
	busy := func(t cpu.TimesStat) float64 {
		return t.User + t.System + t.Nice + t.Irq + t.Softirq + t.Steal
	}
	idle := func(t cpu.TimesStat) float64 { return t.Idle + t.Iowait }
	db, di := max(busy(b)-busy(a), 0), max(idle(b)-idle(a), 0)
	if db+di <= 0 {
		return 0, false
	}
	u := db / (db + di) * 100
	return math.Round(u*100) / 100, true
}

// memCollector reads /proc/meminfo.
type memCollector struct{}

func (memCollector) Name() string { return NameMem }

func (memCollector) Collect(ctx context.Context) ([]protocol.Point, error) {
	v, err := mem.VirtualMemoryWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("mem: %w", err)
	}
	// used = total - available (what gopsutil v4 computes on Linux): page
	// cache the kernel can drop is not "used".
	var swapUsed uint64
	if v.SwapTotal > v.SwapFree {
		swapUsed = v.SwapTotal - v.SwapFree
	}
	return []protocol.Point{
		{Name: "mem.total_bytes", Value: toInt(v.Total)},
		{Name: "mem.available_bytes", Value: toInt(v.Available)},
		{Name: "mem.used_bytes", Value: toInt(v.Used)},
		{Name: "mem.used_percent", Value: round2(v.UsedPercent)},
		{Name: "mem.swap_used_bytes", Value: toInt(swapUsed)},
	}, nil
}

// diskCollector statfs()es each configured mount point.
type diskCollector struct {
	paths []string
}

func newDisk(paths []string) *diskCollector {
	return &diskCollector{paths: slices.Clone(paths)}
}

func (d *diskCollector) Name() string { return NameDisk }

// Collect reports every readable mount; an unreadable one (an unplugged
// USB disk) is an error that does not hide the others.
func (d *diskCollector) Collect(ctx context.Context) ([]protocol.Point, error) {
	pts := make([]protocol.Point, 0, 4*len(d.paths))
	var errs []error
	for _, p := range d.paths {
		u, err := disk.UsageWithContext(ctx, p)
		if err != nil {
			errs = append(errs, fmt.Errorf("disk %s: %w", p, err))
			continue
		}
		tags := map[string]string{"path": p}
		// Used and Free are the df columns: used+free may be less than
		// total because of blocks reserved for root, and used_percent is
		// used/(used+free) as df prints it.
		pts = append(pts,
			protocol.Point{Name: "disk.total_bytes", Value: toInt(u.Total), Tags: tags},
			protocol.Point{Name: "disk.used_bytes", Value: toInt(u.Used), Tags: tags},
			protocol.Point{Name: "disk.free_bytes", Value: toInt(u.Free), Tags: tags},
			protocol.Point{Name: "disk.used_percent", Value: round2(u.UsedPercent), Tags: tags},
		)
	}
	return pts, errors.Join(errs...)
}

// netCollector reads /proc/net/dev.
type netCollector struct {
	ifaces []string // empty: all but loopback
}

func newNet(ifaces []string) *netCollector {
	return &netCollector{ifaces: slices.Clone(ifaces)}
}

func (n *netCollector) Name() string { return NameNet }

// Collect reports the chosen interfaces. A configured interface that is
// absent (wlan0 not up yet) is an error; the others are still reported.
func (n *netCollector) Collect(ctx context.Context) ([]protocol.Point, error) {
	stats, err := net.IOCountersWithContext(ctx, true)
	if err != nil {
		return nil, fmt.Errorf("net: %w", err)
	}
	pts := make([]protocol.Point, 0, 6*len(stats))
	seen := 0
	for _, s := range stats {
		if !n.wanted(s.Name) || validTagValue(s.Name) != nil {
			continue
		}
		seen++
		tags := map[string]string{"iface": s.Name}
		pts = append(pts,
			protocol.Point{Name: "net.rx_bytes", Value: toInt(s.BytesRecv), Tags: tags},
			protocol.Point{Name: "net.tx_bytes", Value: toInt(s.BytesSent), Tags: tags},
			protocol.Point{Name: "net.rx_packets", Value: toInt(s.PacketsRecv), Tags: tags},
			protocol.Point{Name: "net.tx_packets", Value: toInt(s.PacketsSent), Tags: tags},
			protocol.Point{Name: "net.rx_errors", Value: toInt(s.Errin), Tags: tags},
			protocol.Point{Name: "net.tx_errors", Value: toInt(s.Errout), Tags: tags},
		)
	}
	if len(n.ifaces) > 0 && seen < len(n.ifaces) {
		return pts, n.missing(stats)
	}
	return pts, nil
}

func (n *netCollector) wanted(name string) bool {
	if len(n.ifaces) == 0 {
		// Linux names its loopback "lo"; counting it would only add noise.
		return name != "lo"
	}
	return slices.Contains(n.ifaces, name)
}

func (n *netCollector) missing(stats []net.IOCountersStat) error {
	var miss []string
	for _, want := range n.ifaces {
		if !slices.ContainsFunc(stats, func(s net.IOCountersStat) bool { return s.Name == want }) {
			miss = append(miss, want)
		}
	}
	return fmt.Errorf("net: interfaces not found: %v", miss)
}

// loadCollector reads /proc/loadavg.
type loadCollector struct{}

func (loadCollector) Name() string { return NameLoad }

func (loadCollector) Collect(ctx context.Context) ([]protocol.Point, error) {
	a, err := load.AvgWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	return []protocol.Point{
		{Name: "load.load1", Value: a.Load1},
		{Name: "load.load5", Value: a.Load5},
		{Name: "load.load15", Value: a.Load15},
	}, nil
}

// uptimeCollector uses sysinfo(2).
type uptimeCollector struct{}

func (uptimeCollector) Name() string { return NameUptime }

func (uptimeCollector) Collect(ctx context.Context) ([]protocol.Point, error) {
	u, err := host.UptimeWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("uptime: %w", err)
	}
	return []protocol.Point{{Name: "system.uptime_seconds", Value: toInt(u)}}, nil
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
