package live

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fleetwire/fleetwire/protocol"
	wire "github.com/fleetwire/fleetwire/protocol/live"
)

func batch(seq uint64, base int64, pts ...protocol.Point) *protocol.Batch {
	return &protocol.Batch{Seq: seq, BaseTime: base, Points: pts}
}

func recv(t *testing.T, s *Subscriber) map[string]any {
	t.Helper()
	select {
	case data := <-s.Out():
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatalf("message %s: %v", data, err)
		}
		return m
	case <-s.Done():
		t.Fatalf("subscriber ended: %v", s.Err())
	case <-time.After(5 * time.Second):
		t.Fatal("no message within 5s")
	}
	return nil
}

func TestFleetCoalesced(t *testing.T) {
	b := New(Config{})
	b.flushGate = make(chan struct{})
	s := b.Subscribe(t.Context())
	defer s.Close()
	if err := s.SubscribeFleet(); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	b.Publish("pi-01", batch(1, now, protocol.Point{Name: "cpu.usage_percent", Value: 1.0}))
	m := recv(t, s) // the first flush is immediate
	if m["type"] != "fleet" {
		t.Fatalf("got %v", m)
	}
	// While the flusher rests, 50 batches of two devices merge into one message.
	for i := range 50 {
		b.Publish("pi-01", batch(uint64(i+2), now+int64(i),
			protocol.Point{Name: "cpu.usage_percent", Value: float64(i)},
			protocol.Point{Name: "temp.celsius", Value: 40.0, Tags: map[string]string{"zone": "a"}},
			protocol.Point{Name: "temp.celsius", Value: 50.0 + float64(i), Tags: map[string]string{"zone": "b"}},
			protocol.Point{Name: "mem.used_percent", Value: int64(30)},
			protocol.Point{Name: "other", Value: 1.0}))
		b.Publish("pi-02", batch(uint64(i+1), now, protocol.Point{Name: "cpu.usage_percent", Value: 7.0}))
	}
	b.DeviceState("pi-01", true)
	b.flushGate <- struct{}{}
	var f wire.Fleet
	data := <-s.Out()
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Devices) != 2 {
		t.Fatalf("want one coalesced update of 2 devices, got %s", data)
	}
	d := f.Devices[0]
	want := map[string]float64{"cpu.usage_percent": 49, "temp.celsius": 99, "mem.used_percent": 30}
	if d.ID != "pi-01" || !d.Online || d.LastSeen != now+49 || len(d.Metrics) != 3 {
		t.Fatalf("pi-01 summary: %s", data)
	}
	for k, v := range want {
		if d.Metrics[k] != v {
			t.Errorf("%s = %v, want %v", k, d.Metrics[k], v)
		}
	}
	if f.Devices[1].ID != "pi-02" || f.Devices[1].Online {
		t.Errorf("pi-02 summary: %s", data)
	}
	select {
	case extra := <-s.Out():
		t.Fatalf("unexpected second message %s", extra)
	default:
	}
}

func TestFleetSnapshotOnSubscribe(t *testing.T) {
	b := New(Config{})
	b.DeviceState("pi-01", true)
	b.DeviceState("pi-02", false)
	s := b.Subscribe(t.Context())
	defer s.Close()
	if err := s.SubscribeFleet(); err != nil {
		t.Fatal(err)
	}
	m := recv(t, s)
	if devs := m["devices"].([]any); len(devs) != 2 || devs[0].(map[string]any)["online"] != true {
		t.Fatalf("snapshot: %v", m)
	}
}

func TestDeviceTopic(t *testing.T) {
	b := New(Config{})
	s := b.Subscribe(t.Context())
	defer s.Close()
	for _, id := range []string{"pi-01", "pi-02"} {
		if err := s.SubscribeDevice(id); err != nil {
			t.Fatal(err)
		}
	}
	in := &protocol.Batch{Seq: 1, BaseTime: 1000, Tags: map[string]string{"site": "x"}, Points: []protocol.Point{
		{Name: "cpu.usage_percent", DT: 5, Value: 12.5, Tags: map[string]string{"cpu": "0"}},
		{Name: "status", Value: "ok"},
		{Name: "up", Value: true},
	}}
	b.Publish("pi-01", in)
	var p wire.Points
	if err := json.Unmarshal(<-s.Out(), &p); err != nil {
		t.Fatal(err)
	}
	if p.Device != "pi-01" || len(p.Points) != 3 || p.Points[0].T != 1005 || p.Points[0].V != 12.5 ||
		p.Points[0].Tags["site"] != "x" || p.Points[0].Tags["cpu"] != "0" || p.Points[1].V != "ok" || p.Points[2].V != true {
		t.Fatalf("points: %+v", p)
	}
	b.DeviceState("pi-01", false)
	if m := recv(t, s); m["type"] != "device_state" || m["id"] != "pi-01" || m["online"] != false {
		t.Fatalf("state: %v", m)
	}
	// After unsubscribing pi-01, only pi-02's points arrive.
	s.UnsubscribeDevice("pi-01")
	b.Publish("pi-01", in)
	b.Publish("pi-02", in)
	if m := recv(t, s); m["device"] != "pi-02" {
		t.Fatalf("after unsubscribe got %v", m)
	}
}

func TestDeviceTopicLimit(t *testing.T) {
	b := New(Config{MaxDeviceTopics: 2})
	s := b.Subscribe(t.Context())
	defer s.Close()
	for _, id := range []string{"a", "b", "b"} { // at the limit; re-subscribing is free
		if err := s.SubscribeDevice(id); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SubscribeDevice("c"); err != ErrTooManyTopics {
		t.Fatalf("past the limit: %v", err)
	}
}

func TestPendingPointsCapDropsAndCounts(t *testing.T) {
	b := New(Config{MaxPendingPoints: 3, QueueLen: 1, SlowAfter: time.Hour})
	s := b.Subscribe(t.Context())
	defer s.Close()
	if err := s.SubscribeDevice("d"); err != nil {
		t.Fatal(err)
	}
	pt := protocol.Point{Name: "x", Value: 1.0}
	b.Publish("d", batch(1, 1, pt))
	// The queue (1) now holds that message, so the next points stay pending:
	// 3 fit, 2 are dropped.
	waitFor(t, func() bool { return len(s.Out()) == 1 })
	b.Publish("d", batch(2, 1, pt, pt, pt, pt, pt))
	if got := testutil.ToFloat64(b.metrics.Dropped.WithLabelValues("slow_subscriber")); got != 2 {
		t.Fatalf("dropped = %v, want 2", got)
	}
	<-s.Out()
	var p wire.Points
	if err := json.Unmarshal(<-s.Out(), &p); err != nil {
		t.Fatal(err)
	}
	if len(p.Points) != 3 || p.Dropped != 2 {
		t.Fatalf("got %d points, dropped %d; want 3, 2", len(p.Points), p.Dropped)
	}
}

// A subscriber that never reads is disconnected, and Publish never waits
// for it: 100k points go through well inside the deadline.
func TestSlowSubscriberDisconnectedPublishNeverBlocks(t *testing.T) {
	b := New(Config{QueueLen: 1, SlowAfter: 2 * time.Millisecond, FlushInterval: time.Millisecond})
	s := b.Subscribe(t.Context())
	defer s.Close()
	if err := s.SubscribeDevice("d"); err != nil {
		t.Fatal(err)
	}
	if err := s.SubscribeFleet(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	pts := make([]protocol.Point, 100)
	for i := range pts {
		pts[i] = protocol.Point{Name: "cpu.usage_percent", Value: float64(i)}
	}
	for i := range 1000 { // 100k points
		if ctx.Err() != nil {
			t.Fatalf("publishing 100k points did not finish in time (at batch %d)", i)
		}
		b.Publish("d", batch(uint64(i+1), time.Now().UnixMilli(), pts...))
	}
	select {
	case <-s.Done():
	case <-ctx.Done():
		t.Fatal("slow subscriber not disconnected")
	}
	if s.Err() != ErrTooSlow {
		t.Fatalf("cause = %v", s.Err())
	}
	waitFor(t, func() bool { return testutil.ToFloat64(b.metrics.Disconnects.WithLabelValues("too_slow")) == 1 })
	if got := testutil.ToFloat64(b.metrics.Subscribers); got != 0 {
		t.Fatalf("subscribers gauge = %v", got)
	}
	b.Publish("d", batch(5000, 1, pts...)) // nobody left: fine
}

func TestCloseAndParentCancel(t *testing.T) {
	b := New(Config{})
	ctx, cancel := context.WithCancel(t.Context())
	s := b.Subscribe(ctx)
	if err := s.SubscribeFleet(); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-s.exited
	if err := s.SubscribeDevice("x"); err == nil {
		t.Fatal("subscribe after end succeeded")
	}
	s.Close()
	s.Close()
	b.mu.RLock()
	n := len(b.fleetSubs)
	b.mu.RUnlock()
	if n != 0 || testutil.ToFloat64(b.metrics.Subscribers) != 0 {
		t.Fatalf("subscriber left behind: %d, gauge %v", n, testutil.ToFloat64(b.metrics.Subscribers))
	}
}

// waitFor polls cond with a deadline (no bare sleeps).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatal("condition not met within 5s")
		case <-tick.C:
		}
	}
}

// The fleet summary keeps its own, slower cadence (FleetInterval) while
// device topics flush at FlushInterval: points published after a fleet
// message arrive before the next fleet message, which comes no sooner
// than FleetInterval after the last one and carries every update merged.
func TestFleetIntervalSeparateFromDeviceTopics(t *testing.T) {
	const fleetEvery = 300 * time.Millisecond
	b := New(Config{FlushInterval: time.Millisecond, FleetInterval: fleetEvery})
	s := b.Subscribe(t.Context())
	defer s.Close()
	if err := s.SubscribeFleet(); err != nil {
		t.Fatal(err)
	}
	if err := s.SubscribeDevice("d"); err != nil {
		t.Fatal(err)
	}
	b.Publish("d", batch(1, 1000, protocol.Point{Name: "cpu.usage_percent", Value: 1.0}))
	// The snapshot (empty broker: just "d" now) or the first update goes at once.
	var firstFleet time.Time
	var points int
	for firstFleet.IsZero() || points == 0 {
		m := recv(t, s)
		switch m["type"] {
		case "fleet":
			firstFleet = time.Now()
		case "points":
			points++
		}
	}
	for i := range 5 {
		b.Publish("d", batch(uint64(i+2), 2000+int64(i), protocol.Point{Name: "cpu.usage_percent", Value: float64(i + 2)}))
	}
	var fleet map[string]any
	for fleet == nil {
		m := recv(t, s)
		switch m["type"] {
		case "fleet":
			fleet = m
		case "points":
			points++
		}
	}
	// Receipt times, not take times: allow half the interval of scheduling
	// slack (without the cadence the gap would be about FlushInterval).
	if gap := time.Since(firstFleet); gap < fleetEvery/2 {
		t.Errorf("second fleet message %s after the first; want about %s", gap, fleetEvery)
	}
	if points < 2 {
		t.Errorf("%d points messages before the second fleet message; device topics must not wait for the fleet cadence", points)
	}
	devs := fleet["devices"].([]any)
	d := devs[0].(map[string]any)
	if len(devs) != 1 || d["last_seen"] != float64(2004) || d["metrics"].(map[string]any)["cpu.usage_percent"] != float64(6) {
		t.Errorf("merged fleet update = %v; want d with the last of the 5 updates", fleet)
	}
}
