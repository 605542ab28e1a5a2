package protocol

// SampleBaseTime is the BaseTime of SampleBatch(0, n): 2026-01-01T00:00:00Z
// in Unix milliseconds. SampleBatch(seq, n) starts seq*10 s later.
const SampleBaseTime int64 = 1_767_225_600_000

// sampleMetric is one numeric series of SampleBatch.
type sampleMetric struct {
	name  string
	tags  map[string]string
	value func(seq uint64, round int) any
}

// sampleMetrics returns what a Raspberry Pi agent typically reports each
// second. Built per call so callers can never share (and mutate) tag maps.
func sampleMetrics() []sampleMetric {
	return []sampleMetric{
		{name: "cpu.usage_percent", value: func(s uint64, r int) any { return 3.25 + float64((s*37+uint64(r)*11)%900)/10.7 }},
		{name: "cpu.load1", value: func(s uint64, r int) any { return 0.17 + float64((s+uint64(r))%40)/13.0 }},
		{name: "mem.used_bytes", value: func(s uint64, r int) any { return int64(412_000_000 + s*4096 + uint64(r)*512) }},
		{name: "mem.available_bytes", value: func(s uint64, r int) any { return int64(3_480_000_000 - s*4096 - uint64(r)*512) }},
		{name: "net.rx_bytes", tags: map[string]string{"iface": "eth0"}, value: func(s uint64, r int) any { return int64(9_800_000_000 + s*150_000 + uint64(r)*1_500) }},
		{name: "net.tx_bytes", tags: map[string]string{"iface": "eth0"}, value: func(s uint64, r int) any { return int64(1_250_000_000 + s*40_000 + uint64(r)*400) }},
		{name: "temp.celsius", tags: map[string]string{"zone": "cpu-thermal"}, value: func(s uint64, r int) any { return 47.2 + float64((s*3+uint64(r))%90)/9.1 }},
		{name: "disk.used_percent", tags: map[string]string{"mount": "/"}, value: func(s uint64, r int) any { return 41.9 + float64(s%100)/1000.3 }},
	}
}

// SampleBatch returns a deterministic, valid batch of n realistic points
// (n >= 1) for tests and benchmarks: CPU, memory, network (tag iface=eth0),
// temperature (tag zone), disk, with float and int values. When n >= 10,
// points 8 and 9 are one bool (power.throttled) and one string (os.kernel).
// Each series repeats once per second (DT steps of 1000 ms), so no two
// points share name, tags and time. Same arguments, same batch.
func SampleBatch(seq uint64, n int) *Batch {
	metrics := sampleMetrics()
	b := &Batch{
		Seq:      seq,
		BaseTime: SampleBaseTime + int64(seq)*10_000,
		Points:   make([]Point, 0, n),
	}
	numeric := 0
	for i := range n {
		switch {
		case n >= 10 && i == 8:
			b.Points = append(b.Points, Point{Name: "power.throttled", Value: seq%2 == 1})
			continue
		case n >= 10 && i == 9:
			b.Points = append(b.Points, Point{Name: "os.kernel", Value: "6.6.31+rpt-rpi-v8"})
			continue
		}
		m := metrics[numeric%len(metrics)]
		round := numeric / len(metrics)
		b.Points = append(b.Points, Point{
			Name:  m.name,
			DT:    int64(round) * 1000,
			Value: m.value(seq, round),
			Tags:  copyTags(m.tags),
		})
		numeric++
	}
	return b
}

func copyTags(t map[string]string) map[string]string {
	if t == nil {
		return nil
	}
	c := make(map[string]string, len(t))
	for k, v := range t {
		c[k] = v
	}
	return c
}
