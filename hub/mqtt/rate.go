package mqtt

import (
	"math"
	"sync"
	"time"

	"github.com/fleetwire/fleetwire/hub"
)

// rates holds each device's standing against Config.Rate: one Throttle
// per registered device that sent telemetry (so the registry bounds it),
// dropped when the device is revoked or deleted (forgetDevice).
//
// A device's messages all go to one worker (Bridge.shard), so its
// Throttle is never charged from two goroutines at once; the lock is for
// the map, which every worker and the registry's revocation hook touch.
// It is held across Allow, a few float operations, so the Throttle's
// safety does not rest on the sharding too.
type rates struct {
	limit hub.RateLimit
	mu    sync.Mutex
	m     map[string]*hub.Throttle
}

// newRates holds devices to l, with each burst widened to what its rate
// earns in l.CloseAfter (default 2m). A broker hands the bridge a backlog
// (held while the hub or InfluxDB was down) at once, far faster than the
// devices published it; with the wider burst a device's backlog passes
// unless it exceeds CloseAfter's worth of the rate, as a WebSocket device
// over budget is closed only after CloseAfter. A device flooding for
// longer is then refused everything over the rate.
func newRates(l hub.RateLimit) *rates {
	window := l.CloseAfter
	if window <= 0 {
		window = 2 * time.Minute
	}
	l.MsgBurst = max(l.MsgBurst, int(l.MsgsPerSec*window.Seconds()))
	l.PointsBurst = max(l.PointsBurst, int(min(l.PointsPerSec*window.Seconds(), math.MaxInt32)))
	return &rates{limit: l, m: map[string]*hub.Throttle{}}
}

// allow charges dev one message of points at now if its budget has room,
// and reports whether it did; a refused message is not charged.
func (r *rates) allow(dev string, now time.Time, points int) bool {
	if !r.limit.Enabled() {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.m[dev]
	if t == nil {
		t = &hub.Throttle{}
		r.m[dev] = t
	}
	return t.Allow(&r.limit, now, points)
}

// forget drops dev's standing: a device deleted and registered again
// starts with a full budget.
func (r *rates) forget(dev string) {
	r.mu.Lock()
	delete(r.m, dev)
	r.mu.Unlock()
}
