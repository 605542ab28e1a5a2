package devicews_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/agent/link"
	"github.com/fleetwire/fleetwire/agent/spool"
	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/hub/devicews"
	"github.com/fleetwire/fleetwire/protocol"
)

// TestAgentReplaysSpoolWithinRateBudget: a real agent link with a backlog
// far over the hub's burst (a device back from an outage) resends it
// all within one session, paced by the budget the welcome advertises,
// and is never closed for it, although the hub closes a device throttled
// for just 500 ms. An unpaced agent (filling its 64-batch window at once)
// would be throttled from its 21st batch on and closed.
func TestAgentReplaysSpoolWithinRateBudget(t *testing.T) {
	const batches, points = 80, 10
	rate := hub.RateLimit{MsgsPerSec: 40, MsgBurst: 20, PointsPerSec: 400, PointsBurst: 200, CloseAfter: 500 * time.Millisecond}
	var m *hub.Metrics
	e := newEnv(t, func(c *devicews.Config) {
		c.Rate, c.MaxInflight, c.MaxMessageBytes, m = rate, 64, 1<<20, c.Metrics
	})
	for range batches {
		e.sink.release <- nil // every write stored
	}
	sp, err := spool.Open(t.TempDir(), spool.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	for i := range batches {
		if _, err := sp.Append(protocol.SampleBatch(uint64(i), points)); err != nil {
			t.Fatal(err)
		}
	}
	l, err := link.New(link.Config{
		URL: e.wsURL, Token: "good-pi-1", AllowInsecure: true, Spool: sp,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- l.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v", err)
		}
	}()

	eventuallyWithin(t, 30*time.Second, "the spool drained", func() bool { return sp.Stats().Batches == 0 })
	took := time.Since(start)
	for _, limit := range []string{"messages", "points"} {
		if n := limited(m, limit, "closed"); n != 0 {
			t.Errorf("%s: %v sessions closed for the rate limit", limit, n)
		}
	}
	if s := l.Stats(); s.Sessions != 1 {
		t.Errorf("%d sessions, want the whole backlog in one: %+v", s.Sessions, s)
	}
	// Paced, the points past the burst take (800-200)/(0.9*400) = 1.7 s.
	if min := 1500 * time.Millisecond; took < min {
		t.Errorf("backlog drained in %s, under the %s the budget allows", took, min)
	}
	t.Logf("%d batches of %d points in %s; throttled: %v messages, %v points", batches, points, took,
		limited(m, "messages", "throttled"), limited(m, "points", "throttled"))
}
