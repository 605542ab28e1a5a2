package mqtt_test

import (
	"context"
	"fmt"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/hub/influx/influxtest"
	"github.com/fleetwire/fleetwire/hub/mqtt/mqtttest"
)

// The delivery tests publish numbered readings WITHOUT a time (the hub
// stamps them on receipt) and each with its own tag n, so every reading is
// its own series: a reading lost is a missing n, a reading written twice
// is an n with two points at two receipt times.

// reading is message n of the delivery tests.
func reading(n int) []byte {
	return fmt.Appendf(nil, `{"points":[{"name":"seq","value":%d,"tags":{"n":"%d"}}]}`, n, n)
}

// checkExactlyOnce asserts readings 0..n-1 of dev are each stored once.
func checkExactlyOnce(t *testing.T, r *rig, dev string, n int) {
	t.Helper()
	eventually(t, 90*time.Second, fmt.Sprintf("%d readings of %s stored", n, dev), func() bool { return r.count("seq", "value", dev) >= n })
	eventually(t, 10*time.Second, "nothing pending", func() bool { return r.metric("fleethub_mqtt_pending_messages", nil) == 0 })
	vals := r.values("seq", "value", dev)
	seen := map[int64]int{}
	for _, v := range vals {
		seen[v.(int64)]++
	}
	var missing, twice []int
	for i := range n {
		switch seen[int64(i)] {
		case 0:
			missing = append(missing, i)
		case 1:
		default:
			twice = append(twice, i)
		}
	}
	if len(missing) > 0 || len(twice) > 0 || len(vals) != n {
		sort.Ints(missing)
		t.Fatalf("%d points stored for %d readings; missing %v; stored more than once %v", len(vals), n, missing, twice)
	}
}

// slowSink delays every write so a backlog builds and a fault can land
// in the middle of the stream.
type slowSink struct {
	next  hub.TelemetrySink
	delay time.Duration
}

func (s slowSink) Write(ctx context.Context, b []*hub.IngestBatch) error {
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.next.Write(ctx, b)
}

// TestBrokerRestartMidStream restarts Mosquitto while the bridge works
// through a backlog: nothing lost, nothing written twice.
func TestBrokerRestartMidStream(t *testing.T) {
	t.Parallel()
	db := influxtest.Start(t)
	r := newRig(t, db, func(s *rigSetup) {
		s.broker = append(s.broker, mqtttest.MaxInflight(20))
		s.cfg.Workers = 2
		s.sink = func(next hub.TelemetrySink) hub.TelemetrySink { return slowSink{next, 20 * time.Millisecond} }
	})
	const dev, before, after = "restart-1", 2000, 300
	r.device(dev, nil)
	pub := r.client("publisher-restart", nil)
	for i := range before {
		publish(t, pub, "fleetwire/"+dev+"/telemetry", reading(i))
	}
	stored := func() float64 { return r.metric("fleethub_mqtt_points_stored_total", nil) }
	eventually(t, 60*time.Second, "a third of the backlog stored", func() bool { return stored() >= before/3 })
	if s := stored(); s >= before {
		t.Fatalf("backlog of %d already stored before the restart: not mid-stream", before)
	}
	r.broker.Restart()
	for i := before; i < before+after; i++ {
		publish(t, pub, "fleetwire/"+dev+"/telemetry", reading(i))
	}
	checkExactlyOnce(t, r, dev, before+after)
	if n := r.metric("fleethub_mqtt_connects_total", nil); n < 2 {
		t.Errorf("bridge connected %v times, want a reconnect after the restart", n)
	}
	t.Logf("redelivered duplicates recognised: %v; overflows: %v", r.metric("fleethub_mqtt_duplicates_total", nil), r.metric("fleethub_mqtt_overflows_total", nil))
}

// TestInfluxOutage stops InfluxDB for 30 s while a device keeps
// publishing: the bridge holds its acks, the broker keeps the messages,
// and all of them are stored once InfluxDB is back, each once.
func TestInfluxOutage(t *testing.T) {
	t.Parallel()
	db := influxtest.Start(t)
	r := newRig(t, db, func(s *rigSetup) {
		s.broker = append(s.broker, mqtttest.MaxInflight(20))
	})
	const dev = "outage-1"
	r.device(dev, nil)
	pub := r.client("publisher-outage", nil)
	var sent atomic.Int64
	publishFor := func(d time.Duration) {
		tick := time.NewTicker(50 * time.Millisecond) // the device's reporting interval
		defer tick.Stop()
		for end := time.Now().Add(d); time.Now().Before(end); <-tick.C {
			publish(t, pub, "fleetwire/"+dev+"/telemetry", reading(int(sent.Load())))
			sent.Add(1)
		}
	}
	publishFor(2 * time.Second)
	eventually(t, 20*time.Second, "readings before the outage stored", func() bool { return r.count("seq", "value", dev) == int(sent.Load()) })
	db.Stop(t)
	publishFor(30 * time.Second)
	if n := r.metric("fleethub_mqtt_pending_messages", nil); n == 0 {
		t.Errorf("no message held while InfluxDB was down")
	}
	db.Restart(t)
	publishFor(2 * time.Second)
	checkExactlyOnce(t, r, dev, int(sent.Load()))
	t.Logf("%d readings; pending peak not sampled; overflows %v", sent.Load(), r.metric("fleethub_mqtt_overflows_total", nil))
}

// TestOverflowResync: a broker that sends more unacked messages than
// max_pending: the bridge leaves the surplus unacked, reconnects, and the
// broker sends it again. Nothing is lost.
func TestOverflowResync(t *testing.T) {
	t.Parallel()
	db := influxtest.Start(t)
	r := newRig(t, db, func(s *rigSetup) {
		s.broker = append(s.broker, mqtttest.MaxInflight(40))
		s.cfg.MaxPending = 8
		s.cfg.Workers = 1
		s.sink = func(next hub.TelemetrySink) hub.TelemetrySink { return slowSink{next, 10 * time.Millisecond} }
	})
	const dev, n = "overflow-1", 150
	r.device(dev, nil)
	pub := r.client("publisher-overflow", nil)
	for i := range n {
		publish(t, pub, "fleetwire/"+dev+"/telemetry", reading(i))
	}
	checkExactlyOnce(t, r, dev, n)
	if r.metric("fleethub_mqtt_overflows_total", nil) == 0 {
		t.Errorf("no overflow counted: the test did not exceed max_pending")
	}
}

// TestSubscriptionsRestored replaces the broker by one that knows nothing
// of the bridge's session: the bridge subscribes again on reconnect.
func TestSubscriptionsRestored(t *testing.T) {
	t.Parallel()
	r := newRig(t, influxtest.Start(t))
	const dev = "resub-1"
	r.device(dev, nil)
	pub := r.client("publisher-resub", nil)
	publish(t, pub, "fleetwire/"+dev+"/telemetry", reading(0))
	eventually(t, 20*time.Second, "reading 0 stored", func() bool { return r.count("seq", "value", dev) == 1 })
	connects := r.metric("fleethub_mqtt_connects_total", nil)
	r.broker.Reset()
	eventually(t, 20*time.Second, "bridge reconnected", func() bool {
		return r.metric("fleethub_mqtt_connects_total", nil) > connects && r.metric("fleethub_mqtt_connected", nil) == 1
	})
	// The publisher reconnects by itself; the bridge must have subscribed
	// to the new broker for reading 1 to arrive.
	publish(t, pub, "fleetwire/"+dev+"/telemetry", reading(1))
	checkExactlyOnce(t, r, dev, 2)
}

// TestHubRestart closes the bridge mid-stream, as a hub shutdown does, and
// starts a new one on the same session: what the first did not ack, the
// broker sends the second; nothing lost, nothing written twice.
func TestHubRestart(t *testing.T) {
	t.Parallel()
	r := newRig(t, influxtest.Start(t), func(s *rigSetup) {
		s.sink = func(next hub.TelemetrySink) hub.TelemetrySink { return slowSink{next, 20 * time.Millisecond} }
		s.cfg.MaxPending = 50
	})
	const dev, n = "hubrestart-1", 1500
	r.device(dev, nil)
	pub := r.client("publisher-hubrestart", nil)
	for i := range n {
		publish(t, pub, "fleetwire/"+dev+"/telemetry", reading(i))
	}
	eventually(t, 60*time.Second, "some of the backlog stored", func() bool { return r.metric("fleethub_mqtt_points_stored_total", nil) >= n/4 })
	if s := r.metric("fleethub_mqtt_points_stored_total", nil); s >= n {
		t.Fatalf("backlog of %d already stored before the restart: not mid-stream", n)
	}
	r.restartBridge()
	checkExactlyOnce(t, r, dev, n)
}

// TestClocklessRepeatsSurviveResync: a sensor without a clock sends the
// same bytes again and again; through overflows and reconnects (the
// broker resending what was not acked, DUP set) every message is stored
// once: the repeats are not taken for redeliveries of each other.
func TestClocklessRepeatsSurviveResync(t *testing.T) {
	t.Parallel()
	r := newRig(t, influxtest.Start(t), func(s *rigSetup) {
		s.cfg.MaxPending = 8
		s.cfg.Workers = 1
		s.sink = func(next hub.TelemetrySink) hub.TelemetrySink { return slowSink{next, 10 * time.Millisecond} }
	})
	const dev, n = "clockless-1", 150
	r.device(dev, nil)
	pub := r.client("publisher-clockless", nil)
	for range n {
		publish(t, pub, "fleetwire/"+dev+"/telemetry", []byte(`{"relay_on":1}`))
	}
	stored := func() float64 { return r.metric("fleethub_mqtt_points_stored_total", nil) }
	eventually(t, 90*time.Second, fmt.Sprintf("%d repeats stored", n), func() bool { return stored() >= n })
	eventually(t, 10*time.Second, "nothing pending", func() bool { return r.metric("fleethub_mqtt_pending_messages", nil) == 0 })
	if s := stored(); s != n {
		t.Errorf("%v points stored for %d messages", s, n)
	}
	if r.metric("fleethub_mqtt_overflows_total", nil) == 0 {
		t.Errorf("no overflow: the test did not make the broker resend")
	}
}
