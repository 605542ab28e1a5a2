package hub

import (
	"time"

	"github.com/fleetwire/fleetwire/protocol"
)

// RateLimit is the per-device traffic budget: token buckets for messages
// and for telemetry points. A WebSocket device over it is throttled (its
// session stops reading, so acks slow down and the agent's window fills),
// and closed once it has been throttled without a break for CloseAfter
// (Throttle.Take). An MQTT device cannot be slowed down or closed by the
// hub: its messages over the budget are refused instead (Throttle.Allow).
// Zero rates disable the matching bucket.
type RateLimit struct {
	MsgsPerSec   float64
	MsgBurst     int // messages at once; default max(1, MsgsPerSec)
	PointsPerSec float64
	// PointsBurst is the points at once (default max(1, PointsPerSec)).
	// A batch larger than it is charged PointsBurst, so a valid batch
	// always gets through, only slowly.
	PointsBurst int
	CloseAfter  time.Duration // default 2m
}

// Enabled reports whether any bucket is on.
func (l *RateLimit) Enabled() bool { return l.MsgsPerSec > 0 || l.PointsPerSec > 0 }

// Advertise fills in the rate budget of a session's welcome settings,
// bursts as charged (defaults applied), so agents can pace themselves.
func (l *RateLimit) Advertise(s *protocol.Settings) {
	if l.MsgsPerSec > 0 {
		s.MsgsPerSec, s.MsgsBurst = l.MsgsPerSec, uint(burst(l.MsgBurst, l.MsgsPerSec))
	}
	if l.PointsPerSec > 0 {
		s.PointsPerSec, s.PointsBurst = l.PointsPerSec, uint(burst(l.PointsBurst, l.PointsPerSec))
	}
}

// Throttle is one device's standing against a RateLimit. It is owned by
// the session's reader (or guarded by its owner's lock): not safe for
// concurrent use.
type Throttle struct {
	msgs, points bucket
	since        time.Time // start of the current unbroken throttling; zero when not throttled
}

// Take charges one message carrying points at now. delay is how long
// the reader should wait before handling it (zero: within budget), limit
// names the bucket that set it ("messages" or "points"), and sustained is
// true once the device has been throttled for CloseAfter without a
// message within budget.
func (t *Throttle) Take(l *RateLimit, now time.Time, points int) (delay time.Duration, limit string, sustained bool) {
	if l.MsgsPerSec > 0 {
		if d := t.msgs.take(now, 1, l.MsgsPerSec, burst(l.MsgBurst, l.MsgsPerSec)); d > delay {
			delay, limit = d, "messages"
		}
	}
	if l.PointsPerSec > 0 && points > 0 {
		if d := t.points.take(now, points, l.PointsPerSec, burst(l.PointsBurst, l.PointsPerSec)); d > delay {
			delay, limit = d, "points"
		}
	}
	if delay == 0 {
		t.since = time.Time{}
		return 0, "", false
	}
	if t.since.IsZero() {
		t.since = now
	}
	closeAfter := l.CloseAfter
	if closeAfter <= 0 {
		closeAfter = 2 * time.Minute
	}
	return delay, limit, now.Sub(t.since) >= closeAfter
}

// Allow charges one message carrying points at now if both buckets have
// room for it, and reports whether it did. Unlike Take it never goes into
// debt: a message refused is not charged, so a device sending faster than
// its budget still gets its budget's worth through. A batch larger than
// the points burst is charged the burst, so it passes from a full bucket.
func (t *Throttle) Allow(l *RateLimit, now time.Time, points int) bool {
	msgs := l.MsgsPerSec > 0
	pts := l.PointsPerSec > 0 && points > 0
	mb, pb := burst(l.MsgBurst, l.MsgsPerSec), burst(l.PointsBurst, l.PointsPerSec)
	if msgs && !t.msgs.has(now, 1, l.MsgsPerSec, mb) {
		return false
	}
	if pts && !t.points.has(now, points, l.PointsPerSec, pb) {
		return false
	}
	if msgs {
		t.msgs.take(now, 1, l.MsgsPerSec, mb)
	}
	if pts {
		t.points.take(now, points, l.PointsPerSec, pb)
	}
	return true
}

func burst(b int, rate float64) float64 {
	if b > 0 {
		return float64(b)
	}
	return max(1, rate)
}

// bucket is a token bucket that goes into debt: a charge beyond the
// tokens left is taken anyway and the debt is the delay to wait.
type bucket struct {
	tokens float64
	last   time.Time // zero: never charged (full)
}

func (b *bucket) take(now time.Time, n int, rate, burst float64) time.Duration {
	b.refill(now, rate, burst)
	b.tokens -= min(float64(n), burst)
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / rate * float64(time.Second))
}

// has reports whether a charge of n at now would leave no debt; it
// charges nothing (refilling is not a charge).
func (b *bucket) has(now time.Time, n int, rate, burst float64) bool {
	b.refill(now, rate, burst)
	return b.tokens >= min(float64(n), burst)
}

// refill adds the tokens earned since the last refill, up to burst; a
// bucket never charged is full. A clock going back earns nothing.
func (b *bucket) refill(now time.Time, rate, burst float64) {
	if b.last.IsZero() {
		b.tokens = burst
	} else if el := now.Sub(b.last); el > 0 {
		b.tokens = min(burst, b.tokens+el.Seconds()*rate)
	}
	if b.last.IsZero() || now.After(b.last) {
		b.last = now
	}
}
