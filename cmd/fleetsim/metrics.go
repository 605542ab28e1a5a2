package main

import (
	"fmt"
	"math"
	"time"

	"github.com/fleetwire/fleetwire/protocol"
)

// A simulated device's metrics are a pure function of its seed and the
// time: no per-device state beyond the seed, so a fleet of 100,000 costs
// nothing here. Gauges are slow waves with a device-specific level and
// phase plus noise; counters grow at a device-specific rate.
type metricKind uint8

const (
	gauge   metricKind = iota // float
	gaugeI                    // integer gauge
	counter                   // integer, monotonic
)

type metricDef struct {
	name     string
	tags     map[string]string // shared by every device: read-only
	kind     metricKind
	base     float64 // level (gauges) or rate per second (counters)
	amp      float64 // wave amplitude; the level varies by ±amp/2 per device
	period   float64 // seconds
	min, max float64
}

// The same names and tags the real agent's collectors use, so the
// dashboard shows simulated devices like real ones.
var (
	tagRoot = map[string]string{"path": "/"}
	tagEth  = map[string]string{"iface": "eth0"}
	tagCPU  = map[string]string{"zone": "cpu-thermal"}
)

var baseMetrics = []metricDef{
	{name: "cpu.usage_percent", kind: gauge, base: 25, amp: 20, period: 90, min: 0, max: 100},
	{name: "mem.used_percent", kind: gauge, base: 55, amp: 12, period: 600, min: 0, max: 100},
	{name: "temp.celsius", tags: tagCPU, kind: gauge, base: 50, amp: 8, period: 240, min: 20, max: 90},
	{name: "load.load1", kind: gauge, base: 0.8, amp: 0.7, period: 120, min: 0, max: 16},
	{name: "mem.available_bytes", kind: gaugeI, base: 1.8e9, amp: 4e8, period: 600, min: 0, max: 4e9},
	{name: "disk.used_percent", tags: tagRoot, kind: gauge, base: 42, amp: 4, period: 3600, min: 0, max: 100},
	{name: "disk.free_bytes", tags: tagRoot, kind: gaugeI, base: 1.7e10, amp: 1e9, period: 3600, min: 0, max: 3.2e10},
	{name: "net.rx_bytes", tags: tagEth, kind: counter, base: 24000},
	{name: "net.tx_bytes", tags: tagEth, kind: counter, base: 6000},
	{name: "system.uptime_seconds", kind: counter, base: 1},
	{name: "net.rx_packets", tags: tagEth, kind: counter, base: 30},
	{name: "net.tx_packets", tags: tagEth, kind: counter, base: 12},
}

// metricDefs returns n definitions: the base set, then numbered sensors.
func metricDefs(n int) []metricDef {
	defs := make([]metricDef, 0, n)
	for i := 0; i < n; i++ {
		if i < len(baseMetrics) {
			defs = append(defs, baseMetrics[i])
			continue
		}
		k := i - len(baseMetrics)
		defs = append(defs, metricDef{
			name: "sensor.value", tags: map[string]string{"sensor": fmt.Sprintf("s%03d", k)},
			kind: gauge, base: 10 + float64(k%50), amp: 5, period: 60 + float64(k%7)*30, min: -1e9, max: 1e9,
		})
	}
	return defs
}

// mix is splitmix64: a cheap, well-spread hash.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// unit maps a hash to [0,1).
func unit(h uint64) float64 { return float64(h>>11) / (1 << 53) }

// points fills a batch's points for a device with seed at now; start is
// when the simulation began (counters grow from there).
func points(defs []metricDef, seed uint64, now, start time.Time, out []protocol.Point) []protocol.Point {
	t := float64(now.UnixMilli()) / 1000
	up := now.Sub(start).Seconds()
	tick := uint64(now.UnixMilli() / 1000)
	for i := range defs {
		d := &defs[i]
		h := mix(seed ^ uint64(i)*0x100000001b3)
		level, phase := unit(h)-0.5, unit(mix(h))*2*math.Pi
		noise := unit(mix(h^tick)) - 0.5
		var v any
		switch d.kind {
		case counter:
			rate := d.base * (0.5 + unit(h))
			v = int64(unit(mix(h+1))*1e6*rate + up*rate) // a device-specific starting value
		default:
			x := d.base + d.amp*level + d.amp/2*math.Sin(2*math.Pi*t/d.period+phase) + d.amp/10*noise
			x = min(max(x, d.min), d.max)
			if d.kind == gaugeI {
				v = int64(x)
			} else {
				v = math.Round(x*100) / 100
			}
		}
		out = append(out, protocol.Point{Name: d.name, Value: v, Tags: d.tags})
	}
	return out
}
