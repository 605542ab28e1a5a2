package mqtt_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/hub/influx/influxtest"
)

// TestRateRefused: a device publishing past its budget, at a rate so low
// that nothing refills during the test, has exactly its burst stored and
// the rest refused as "rate"; another device keeps its own budget.
func TestRateRefused(t *testing.T) {
	t.Parallel()
	const burst, over = 3, 4
	r := newRig(t, influxtest.Start(t), func(s *rigSetup) {
		s.cfg.Rate = hub.RateLimit{MsgsPerSec: 0.001, MsgBurst: burst}
	})
	if got := r.refused("rate"); got != 0 {
		t.Fatalf("rate refusals before any message: %v", got)
	}
	const flood, calm = "rate-flood", "rate-calm"
	r.device(flood, nil)
	r.device(calm, nil)
	pub := r.client("publisher-rate", nil)
	for i := range burst + over {
		publish(t, pub, "fleetwire/"+flood+"/telemetry", reading(i))
	}
	eventually(t, 20*time.Second, fmt.Sprintf("%d messages refused for rate", over), func() bool { return r.refused("rate") >= over })
	eventually(t, 20*time.Second, fmt.Sprintf("%d readings stored", burst), func() bool { return r.count("seq", "value", flood) >= burst })
	eventually(t, 10*time.Second, "nothing pending", func() bool { return r.metric("fleethub_mqtt_pending_messages", nil) == 0 })
	if got := r.refused("rate"); got != over {
		t.Errorf("%v messages refused for rate, want %d", got, over)
	}
	// A device's messages are handled in order: the first burst stored.
	vals := r.values("seq", "value", flood)
	seen := map[int64]bool{}
	for _, v := range vals {
		seen[v.(int64)] = true
	}
	if len(vals) != burst || !seen[0] || !seen[1] || !seen[2] {
		t.Errorf("stored readings %v, want 0, 1 and 2 once each", vals)
	}

	// The other device has its own budget: its burst is all stored.
	for i := range burst {
		publish(t, pub, "fleetwire/"+calm+"/telemetry", reading(i))
	}
	checkExactlyOnce(t, r, calm, burst)
	if got := r.refused("rate"); got != over {
		t.Errorf("%v messages refused for rate after the other device's, want %d", got, over)
	}
}
