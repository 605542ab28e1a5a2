package devicews_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/hub/devicews"
	"github.com/fleetwire/fleetwire/protocol"
)

// manualClock is the handler's clock in limit tests; its Sleep advances
// it, so a throttled reader's waits pass at once in clock time.
type manualClock struct {
	mu sync.Mutex
	t  time.Time
}

func newManualClock() *manualClock { return &manualClock{t: time.Unix(1_700_000_000, 0)} }

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func (c *manualClock) Sleep(_ context.Context, d time.Duration) { c.Advance(d) }

func value(c prometheus.Collector) float64 {
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var m dto.Metric
	_ = (<-ch).Write(&m)
	return m.GetCounter().GetValue()
}

func limited(m *hub.Metrics, limit, action string) float64 {
	return value(m.Limited.WithLabelValues(limit, action))
}

// eventually polls cond until it holds or 5 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	eventuallyWithin(t, 5*time.Second, what, cond)
}

// eventuallyWithin polls cond until it holds or within passes.
func eventuallyWithin(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
}

// refusedWith dials with token and checks a 429 carrying retryAfter.
func refusedWith(t *testing.T, e *env, token, retryAfter string) {
	t.Helper()
	c, resp, err := e.dial(token)
	if err == nil {
		c.Close()
		t.Fatalf("token %q: upgrade succeeded, want 429", token)
	}
	if resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("token %q: want 429, got %v (%v)", token, resp, err)
	}
	if got := resp.Header.Get("Retry-After"); got != retryAfter {
		t.Fatalf("token %q: Retry-After %q, want %q", token, got, retryAfter)
	}
}

// TestConnsPerAddrCap: loopback is one address; exactly the cap of
// sessions is admitted, the next is refused with 429 + Retry-After before
// its token is looked at, and a closed session frees its slot.
func TestConnsPerAddrCap(t *testing.T) {
	var m *hub.Metrics
	e := newEnv(t, func(c *devicews.Config) { c.MaxConnsPerAddr = 3; m = c.Metrics })
	conns := []*websocket.Conn{e.connect("d1"), e.connect("d2"), e.connect("d3")}
	refusedWith(t, e, "good-d4", "30")
	refusedWith(t, e, "wrong", "30") // 429, not 401: refused before the token check
	if got := limited(m, "conns_per_addr", "refused"); got != 2 {
		t.Fatalf("refusals counted %v, want 2", got)
	}
	if got := value(m.AuthFailures.WithLabelValues("bad_token")); got != 0 {
		t.Fatalf("token checked for a refused connection (%v auth failures)", got)
	}
	conns[0].Close()
	eventually(t, "a freed slot", func() bool {
		c, _, err := e.dial("good-d4")
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// TestMessageRateThrottlesThenCloses: exactly the burst of messages is
// handled at once, the next one is throttled, and a device that keeps
// sending over the rate is closed with ClosePolicy and a retry-after hint.
func TestMessageRateThrottlesThenCloses(t *testing.T) {
	var m *hub.Metrics
	clk := newManualClock()
	e := newEnv(t, func(c *devicews.Config) {
		c.MaxInflight, m = 1000, c.Metrics
		c.Rate = hub.RateLimit{MsgsPerSec: 10, MsgBurst: 3, CloseAfter: time.Second}
		c.Now, c.Sleep = clk.Now, clk.Sleep
	})
	c := e.connect("pi")
	for seq := uint64(1); seq <= 3; seq++ {
		e.send(c, batch(seq))
	}
	eventually(t, "3 batches handled", func() bool { return value(m.Batches) == 3 })
	if got := limited(m, "messages", "throttled"); got != 0 {
		t.Fatalf("within the burst: %v messages throttled", got)
	}
	e.send(c, batch(4))
	eventually(t, "batch 4 handled", func() bool { return value(m.Batches) == 4 })
	if got := limited(m, "messages", "throttled"); got != 1 {
		t.Fatalf("one past the burst: %v throttled, want 1", got)
	}
	// Keep sending: each message waits 100ms of clock time; after 1s of
	// unbroken throttling the session is closed.
	go func() {
		for seq := uint64(5); seq < 100; seq++ {
			data, _ := protocol.Encode(batch(seq))
			if c.WriteMessage(websocket.BinaryMessage, data) != nil {
				return
			}
		}
	}()
	code, text := closeFrame(t, c)
	if code != int(protocol.ClosePolicy) {
		t.Fatalf("close code %d, want %d", code, protocol.ClosePolicy)
	}
	if d, ok := protocol.ParseRetryAfter(text); !ok || d != time.Minute {
		t.Fatalf("close reason %q: want a 60s retry-after hint", text)
	}
	if got := limited(m, "messages", "closed"); got != 1 {
		t.Fatalf("closes counted %v, want 1", got)
	}
	if got := value(m.ThrottleSeconds); got < 0.9 {
		t.Fatalf("throttle seconds %v, want about 1", got)
	}
}

// TestPointsRateThrottles: a batch of exactly the burst passes; one more
// point is throttled.
func TestPointsRateThrottles(t *testing.T) {
	var m *hub.Metrics
	clk := newManualClock()
	e := newEnv(t, func(c *devicews.Config) {
		c.MaxInflight, m = 1000, c.Metrics
		c.Rate = hub.RateLimit{PointsPerSec: 100, PointsBurst: 5}
		c.Now, c.Sleep = clk.Now, clk.Sleep
	})
	c := e.connect("pi")
	b := batch(1)
	for len(b.Points) < 5 {
		b.Points = append(b.Points, b.Points[0])
	}
	e.send(c, b)
	eventually(t, "batch 1 handled", func() bool { return value(m.Batches) == 1 })
	if got := limited(m, "points", "throttled"); got != 0 {
		t.Fatalf("batch of the burst throttled (%v)", got)
	}
	e.send(c, batch(2))
	eventually(t, "batch 2 handled", func() bool { return value(m.Batches) == 2 })
	if got := limited(m, "points", "throttled"); got != 1 {
		t.Fatalf("one point past the burst: %v throttled, want 1", got)
	}
}

// TestThrottleHoldsTheReader: with the real clock, a throttled device's
// batches are read no faster than the rate (a lower bound: never flaky).
func TestThrottleHoldsTheReader(t *testing.T) {
	e := newEnv(t, func(c *devicews.Config) {
		c.MaxInflight = 1000
		c.Rate = hub.RateLimit{MsgsPerSec: 20, MsgBurst: 1}
	})
	for range 50 {
		e.sink.release <- nil
	}
	c := e.connect("pi")
	start := time.Now()
	for seq := uint64(1); seq <= 11; seq++ {
		e.send(c, batch(seq))
	}
	for acked := uint64(0); acked < 11; {
		if a, ok := e.read(c).(*protocol.Ack); ok {
			acked = a.Seq
		}
	}
	// 1 at once, 10 more at 20/s: at least 500ms.
	if el := time.Since(start); el < 450*time.Millisecond {
		t.Fatalf("11 batches acked in %s; the rate allows no less than 500ms", el)
	}
}

// TestFlappingDeviceHeldOff: exactly FlapMax connects a minute are
// admitted; the next is refused for FlapHold with Retry-After, and other
// devices are unaffected.
func TestFlappingDeviceHeldOff(t *testing.T) {
	var m *hub.Metrics
	clk := newManualClock()
	e := newEnv(t, func(c *devicews.Config) {
		c.FlapMax, c.FlapHold, m = 3, 30*time.Second, c.Metrics
		c.Now, c.Sleep = clk.Now, clk.Sleep
	})
	for range 3 {
		e.connect("pi").Close()
		clk.Advance(time.Second)
	}
	refusedWith(t, e, "good-pi", "30")
	if limited(m, "flap", "held") != 1 || limited(m, "flap", "refused") != 1 {
		t.Fatal("hold not counted")
	}
	e.connect("other") // unaffected
	clk.Advance(29 * time.Second)
	refusedWith(t, e, "good-pi", "1")
	clk.Advance(time.Second)
	e.connect("pi")
	if got := limited(m, "flap", "refused"); got != 2 {
		t.Fatalf("refusals counted %v, want 2", got)
	}
}

// closeFrame reads until the connection ends and returns the close frame.
func closeFrame(t *testing.T, c *websocket.Conn) (int, string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, _, err := c.ReadMessage()
		if err == nil {
			continue
		}
		ce, ok := err.(*websocket.CloseError)
		if !ok {
			t.Fatalf("connection ended without close frame: %v", err)
		}
		return ce.Code, ce.Text
	}
}
