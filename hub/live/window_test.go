package live

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fleetwire/fleetwire/protocol"
)

type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }

func newWindowBroker(cfg Config) (*Broker, *fakeClock) {
	c := &fakeClock{now: time.UnixMilli(1_700_000_000_000)}
	cfg.Clock = c.Now
	return New(cfg), c
}

func (b *Broker) dropped(reason string) float64 {
	return testutil.ToFloat64(b.metrics.Dropped.WithLabelValues(reason))
}

func TestWindowSamplesPerSeries(t *testing.T) {
	b, c := newWindowBroker(Config{MaxSamplesPerSeries: 5})
	now := c.now.UnixMilli()
	for i := range 5 { // exactly at the cap
		b.Publish("d", batch(uint64(i+1), now+int64(i), protocol.Point{Name: "x", Value: float64(i)}))
	}
	got := b.Recent("d", time.Time{})
	if len(got) != 1 || len(got[0].V) != 5 || got[0].V[0] != 0 || got[0].V[4] != 4 {
		t.Fatalf("at cap: %+v", got)
	}
	b.Publish("d", batch(6, now+5, protocol.Point{Name: "x", Value: 5.0}, protocol.Point{Name: "x", DT: 1, Value: 6.0}))
	got = b.Recent("d", time.Time{})
	if len(got[0].V) != 5 || got[0].V[0] != 2 || got[0].V[4] != 6 || got[0].T[4] != now+6 {
		t.Fatalf("past cap, oldest overwritten: %+v", got)
	}
	if b.nsamples != 5 {
		t.Fatalf("sample count %d", b.nsamples)
	}
}

func TestWindowAge(t *testing.T) {
	b, c := newWindowBroker(Config{Window: time.Minute})
	now := c.now.UnixMilli()
	edge := now - time.Minute.Milliseconds()
	b.Publish("d", batch(1, edge, protocol.Point{Name: "x", Value: 1.0}, protocol.Point{Name: "x", DT: -1, Value: 2.0}, protocol.Point{Name: "s", Value: "str"}))
	got := b.Recent("d", time.Time{})
	if len(got) != 1 || len(got[0].T) != 1 || got[0].T[0] != edge {
		t.Fatalf("sample at the window edge kept, one ms older and strings not: %+v", got)
	}
	// since filters; the window bounds since from below.
	b.Publish("d", batch(2, now, protocol.Point{Name: "x", Value: 3.0}))
	if got := b.Recent("d", c.now); len(got[0].T) != 1 || got[0].V[0] != 3 {
		t.Fatalf("since now: %+v", got)
	}
	c.now = c.now.Add(time.Millisecond) // edge sample ages out
	if got := b.Recent("d", time.Time{}); len(got[0].T) != 1 || got[0].T[0] != now {
		t.Fatalf("after 1ms: %+v", got)
	}
	c.now = c.now.Add(time.Minute)
	b.Sweep()
	if len(b.devices) != 0 || b.nseries != 0 || b.nsamples != 0 {
		t.Fatalf("sweep left %d devices, %d series, %d samples", len(b.devices), b.nseries, b.nsamples)
	}
	if got := b.Recent("d", time.Time{}); got == nil || len(got) != 0 {
		t.Fatalf("unknown device: %#v", got)
	}
}

func TestWindowSeriesCaps(t *testing.T) {
	b, c := newWindowBroker(Config{MaxSeriesPerDevice: 3, MaxSeries: 5})
	now := c.now.UnixMilli()
	pts := func(n int) []protocol.Point {
		var p []protocol.Point
		for i := range n {
			p = append(p, protocol.Point{Name: "x", Value: 1.0, Tags: map[string]string{"i": fmt.Sprint(i)}})
		}
		return p
	}
	b.Publish("a", batch(1, now, pts(3)...)) // at the per-device cap
	if len(b.Recent("a", time.Time{})) != 3 || b.dropped("window_device_series") != 0 {
		t.Fatal("3 series at a cap of 3")
	}
	b.Publish("a", batch(2, now, pts(4)...)) // one past it
	if len(b.Recent("a", time.Time{})) != 3 || b.dropped("window_device_series") != 1 {
		t.Fatalf("past the device cap: dropped %v", b.dropped("window_device_series"))
	}
	b.Publish("b", batch(1, now, pts(3)...)) // total 6 > 5
	if len(b.Recent("b", time.Time{})) != 2 || b.dropped("window_series") != 1 || b.nseries != 5 {
		t.Fatalf("past the total cap: %d series, dropped %v", b.nseries, b.dropped("window_series"))
	}
}

func TestWindowTotalSamplesCap(t *testing.T) {
	b, c := newWindowBroker(Config{MaxSamples: 4, MaxSamplesPerSeries: 3})
	now := c.now.UnixMilli()
	p := func(name string) protocol.Point { return protocol.Point{Name: name, Value: 1.0} }
	b.Publish("d", batch(1, now, p("a"), p("a"), p("a"), p("b"))) // 4: at the cap
	if b.nsamples != 4 || b.dropped("window_samples") != 0 {
		t.Fatalf("at cap: %d samples", b.nsamples)
	}
	b.Publish("d", batch(2, now, p("b"), p("a"))) // b would grow: dropped; a overwrites: kept
	if b.nsamples != 4 || b.dropped("window_samples") != 1 {
		t.Fatalf("past cap: %d samples, dropped %v", b.nsamples, b.dropped("window_samples"))
	}
}

func TestRingGrowthAndWrap(t *testing.T) {
	r := ring{max: 20}
	for i := range 50 {
		r.push(sample{t: int64(i)})
		if r.len() != min(i+1, 20) || r.at(0).t != int64(max(0, i-19)) || r.at(r.len()-1).t != int64(i) {
			t.Fatalf("after %d pushes: len %d first %d", i+1, r.len(), r.at(0).t)
		}
	}
	if n := r.prune(45); n != 15 || r.len() != 5 || r.at(0).t != 45 {
		t.Fatalf("prune: %d, len %d", n, r.len())
	}
	if n := r.prune(100); n != 5 || r.buf != nil {
		t.Fatal("prune all keeps the buffer")
	}
}
