package mqtt

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fleetwire/fleetwire/hub"
)

// oneDevice is a registry holding every id as a registered device.
type oneDevice struct{ nopStore }

func (oneDevice) GetDevice(_ context.Context, id string) (hub.Device, error) {
	return hub.Device{ID: id}, nil
}

// storeAll is an ingester whose writes succeed at once.
type storeAll struct{ batches atomic.Int32 }

func (s *storeAll) Submit(_ context.Context, _ *hub.IngestBatch, done func(error)) error {
	s.batches.Add(1)
	done(nil)
	return nil
}

// TestRateDuplicatesNotCharged drives the telemetry handler with messages
// as the broker would deliver them (no broker needed): a redelivery (DUP)
// of a stored message is acked as a duplicate without being charged, and
// a refused message is forgotten, so its redelivery is judged afresh.
func TestRateDuplicatesNotCharged(t *testing.T) {
	in := &storeAll{}
	now := time.Unix(1_700_000_000, 0)
	b, err := New(Config{
		Brokers: []string{"tcp://127.0.0.1:1"}, ClientID: "rate-test",
		Store: oneDevice{}, Registry: hub.NewRegistry(hub.NewMetrics(nil)), Ingester: in, Commands: nopCommands{},
		Rate:  hub.RateLimit{MsgsPerSec: 0.001, MsgBurst: 2},
		Clock: func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.cancel) // never started: nothing else to stop
	const topic = "fleetwire/dup-a/telemetry"
	m1, m2, m3 := newMsg(topic, `{"t":1}`, 1, false), newMsg(topic, `{"t":2}`, 2, false), newMsg(topic, `{"t":3}`, 3, false)
	for _, m := range []*fakeMsg{m1, m1.redelivery(), m1.redelivery(), m2, m2.redelivery(), m3, m3.redelivery()} {
		b.handle(m)
	}
	refused := testutil.ToFloat64(b.metrics.refused.WithLabelValues(reasonRate))
	dups := testutil.ToFloat64(b.metrics.duplicates)
	if in.batches.Load() != 2 || dups != 3 || refused != 2 {
		t.Errorf("stored %d, duplicates %v, refused for rate %v; want 2, 3 (m1 twice, m2), 2 (m3 and its resend)",
			in.batches.Load(), dups, refused)
	}
	if n := len(b.acks); n != 7 {
		t.Errorf("%d messages acked, want all 7", n)
	}
	// Revocation forgets the device's standing.
	b.forgetDevice("dup-a")
	b.handle(newMsg(topic, `{"t":4}`, 4, false))
	if in.batches.Load() != 3 {
		t.Errorf("a device forgotten kept its spent budget")
	}
}

// TestRatesBurstCoversCloseAfter: a broker's backlog arrives at once, so
// an MQTT device's burst is what its rate earns in CloseAfter (at least
// the configured burst): exactly that many messages pass back to back,
// the next is refused; a configured burst above it is kept.
func TestRatesBurstCoversCloseAfter(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	for _, c := range []struct {
		limit hub.RateLimit
		want  int
	}{
		{hub.RateLimit{MsgsPerSec: 2, MsgBurst: 5, CloseAfter: 30 * time.Second}, 60},
		{hub.RateLimit{MsgsPerSec: 2, MsgBurst: 5}, 240}, // CloseAfter's default: 2m
		{hub.RateLimit{MsgsPerSec: 2, MsgBurst: 100, CloseAfter: 10 * time.Second}, 100},
	} {
		r := newRates(c.limit)
		for i := range c.want {
			if !r.allow("pi", now, 1) {
				t.Fatalf("%+v: message %d of %d refused", c.limit, i+1, c.want)
			}
		}
		if r.allow("pi", now, 1) {
			t.Errorf("%+v: message %d passed, past the burst", c.limit, c.want+1)
		}
	}
	r := newRates(hub.RateLimit{PointsPerSec: 10, PointsBurst: 5, CloseAfter: 3 * time.Second})
	if !r.allow("pi", now, 30) || r.allow("pi", now, 1) {
		t.Error("points: the burst is not the 30 the rate earns in CloseAfter")
	}
}
