package hub

import (
	"testing"
	"time"
)

func TestAddrLimitAtAndPastTheEdge(t *testing.T) {
	l := NewAddrLimit(2)
	r1, ok1 := l.Acquire("192.0.2.1:1000")
	_, ok2 := l.Acquire("192.0.2.1:1001")
	if !ok1 || !ok2 {
		t.Fatal("connections up to the cap refused")
	}
	if _, ok := l.Acquire("192.0.2.1:1002"); ok {
		t.Fatal("connection past the cap admitted")
	}
	if _, ok := l.Acquire("[::ffff:192.0.2.1]:1003"); ok {
		t.Fatal("IPv4-mapped IPv6 address escaped its IPv4 budget")
	}
	if _, ok := l.Acquire("192.0.2.2:1000"); !ok {
		t.Fatal("another address refused")
	}
	r1()
	r1() // idempotent
	if got := l.Open("192.0.2.1:1"); got != 1 {
		t.Fatalf("open after release %d, want 1", got)
	}
	if _, ok := l.Acquire("192.0.2.1:1004"); !ok {
		t.Fatal("freed slot not reusable")
	}
	// IPv6: one /64 is one budget; the next /64 is another.
	l6 := NewAddrLimit(1)
	if _, ok := l6.Acquire("[2001:db8:0:1::1]:1"); !ok {
		t.Fatal("first IPv6 connection refused")
	}
	if _, ok := l6.Acquire("[2001:db8:0:1:ffff::2]:1"); ok {
		t.Fatal("same /64 admitted past the cap")
	}
	if _, ok := l6.Acquire("[2001:db8:0:2::1]:1"); !ok {
		t.Fatal("another /64 refused")
	}
	if NewAddrLimit(0) != nil {
		t.Fatal("max 0 should disable the cap")
	}
	if _, ok := (*AddrLimit)(nil).Acquire("x"); !ok {
		t.Fatal("nil limit refused")
	}
}

func TestFlapLimitAtAndPastTheEdge(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	f := NewFlapLimit(3, 30*time.Second)
	for i := range 3 { // exactly max connects in a minute: admitted
		if ok, _, _ := f.Connect("pi", t0.Add(time.Duration(i)*time.Second)); !ok {
			t.Fatalf("connect %d refused", i+1)
		}
	}
	ok, wait, held := f.Connect("pi", t0.Add(3*time.Second)) // the 4th
	if ok || !held || wait != 30*time.Second {
		t.Fatalf("4th connect: ok %v held %v wait %s; want refused, hold started, 30s", ok, held, wait)
	}
	if ok, _, _ := f.Connect("other", t0.Add(3*time.Second)); !ok {
		t.Fatal("another device refused")
	}
	ok, wait, held = f.Connect("pi", t0.Add(32*time.Second))
	if ok || held || wait != time.Second {
		t.Fatalf("during hold: ok %v held %v wait %s; want refused, 1s left", ok, held, wait)
	}
	if ok, _, _ := f.Connect("pi", t0.Add(33*time.Second)); !ok {
		t.Fatal("refused after the hold ended")
	}
	// Connects spread over more than a minute never trip it.
	g := NewFlapLimit(2, time.Minute)
	for i := range 10 {
		if ok, _, _ := g.Connect("pi", t0.Add(time.Duration(i)*31*time.Second)); !ok {
			t.Fatalf("connect %d (31s apart) refused", i)
		}
	}
	// The sweep forgets quiet devices.
	g.Connect("late", t0.Add(time.Hour))
	if _, kept := g.devs["pi"]; kept {
		t.Fatal("quiet device not swept")
	}
}

func TestThrottleAtAndPastTheEdge(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	l := &RateLimit{MsgsPerSec: 10, MsgBurst: 3, CloseAfter: time.Second}
	var th Throttle
	for i := range 3 {
		if d, _, _ := th.Take(l, t0, 0); d != 0 {
			t.Fatalf("message %d within burst delayed %s", i+1, d)
		}
	}
	d, limit, sustained := th.Take(l, t0, 0)
	if d != 100*time.Millisecond || limit != "messages" || sustained {
		t.Fatalf("4th message: delay %s limit %q sustained %v", d, limit, sustained)
	}
	// A device that keeps sending as soon as the reader reads again (the
	// reader waits each delay): throttled without a break, so sustained
	// once CloseAfter has passed since the first delay, not before.
	now := t0
	for {
		now = now.Add(d)
		var s bool
		d, _, s = th.Take(l, now, 0)
		if d == 0 {
			t.Fatal("continuous sender got a message within budget")
		}
		if el := now.Sub(t0); s != (el >= time.Second) {
			t.Fatalf("after %s throttled: sustained %v", el, s)
		} else if s {
			break
		}
	}
	// A message within budget ends the throttled stretch.
	var th2 Throttle
	th2.Take(l, t0, 0)
	th2.Take(l, t0, 0)
	th2.Take(l, t0, 0)
	th2.Take(l, t0, 0)                                          // throttled from t0
	if d, _, _ := th2.Take(l, t0.Add(time.Second), 0); d != 0 { // bucket refilled
		t.Fatal("refilled bucket still delays")
	}
	if _, _, s := th2.Take(l, t0.Add(2*time.Second), 0); s {
		t.Fatal("break in throttling not noticed")
	}

	// Points: a batch over the burst is charged the burst, so it passes.
	p := &RateLimit{PointsPerSec: 100, PointsBurst: 50}
	var tp Throttle
	if d, _, _ := tp.Take(p, t0, 50); d != 0 {
		t.Fatalf("batch of exactly the burst delayed %s", d)
	}
	d, limit, _ = tp.Take(p, t0, 1)
	if d != 10*time.Millisecond || limit != "points" {
		t.Fatalf("one point past the burst: delay %s limit %q", d, limit)
	}
	var tb Throttle
	if d, _, _ := tb.Take(p, t0, 5000); d != 0 {
		t.Fatalf("batch larger than the burst from a full bucket delayed %s", d)
	}
}

func TestThrottleAllowAtAndPastTheEdge(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	l := &RateLimit{MsgsPerSec: 4, MsgBurst: 3}
	var th Throttle
	for i := range 3 { // exactly the burst at once: allowed
		if !th.Allow(l, t0, 0) {
			t.Fatalf("message %d within burst refused", i+1)
		}
	}
	// Past it: refused, and refused messages are not charged, so however
	// many are refused, the next token (250ms at 4/s) lets one through.
	for i := range 10 {
		if th.Allow(l, t0.Add(time.Duration(i)*time.Millisecond), 0) {
			t.Fatalf("message %d past the burst allowed", i+4)
		}
	}
	if th.Allow(l, t0.Add(249*time.Millisecond), 0) {
		t.Fatal("allowed before a token was earned")
	}
	if !th.Allow(l, t0.Add(250*time.Millisecond), 0) {
		t.Fatal("refused after a token was earned: refusals were charged")
	}
	if th.Allow(l, t0.Add(250*time.Millisecond), 0) {
		t.Fatal("one token let two messages through")
	}
	if !th.Allow(l, t0.Add(time.Hour), 0) {
		t.Fatal("refused after a long quiet")
	}

	// Points: exactly the burst passes, one more point is refused and not
	// charged; a batch over the burst is charged the burst.
	p := &RateLimit{PointsPerSec: 100, PointsBurst: 50}
	var tp Throttle
	if !tp.Allow(p, t0, 50) {
		t.Fatal("batch of exactly the burst refused")
	}
	if tp.Allow(p, t0, 1) {
		t.Fatal("one point past the burst allowed")
	}
	if !tp.Allow(p, t0.Add(10*time.Millisecond), 1) { // 1 point earned
		t.Fatal("point refused after refill: the refused one was charged")
	}
	var tb Throttle
	if !tb.Allow(p, t0, 5000) {
		t.Fatal("batch larger than the burst refused from a full bucket")
	}
	if tb.Allow(p, t0, 1) {
		t.Fatal("batch over the burst charged less than the burst")
	}
	if !tb.Allow(p, t0.Add(10*time.Millisecond), 1) { // 1 point earned
		t.Fatal("batch over the burst charged more than the burst")
	}

	// Both buckets: a message refused by one is charged to neither.
	b := &RateLimit{MsgsPerSec: 1, MsgBurst: 2, PointsPerSec: 1, PointsBurst: 10}
	var tt Throttle
	if !tt.Allow(b, t0, 10) {
		t.Fatal("first message refused")
	}
	if tt.Allow(b, t0, 1) { // points empty, one message token left
		t.Fatal("message over the points burst allowed")
	}
	if !tt.Allow(b, t0, 0) {
		t.Fatal("message token charged by a refusal for points")
	}
	// Zero rates disable the buckets.
	var tz Throttle
	for range 1000 {
		if !tz.Allow(&RateLimit{}, t0, 1_000_000) {
			t.Fatal("disabled limit refused")
		}
	}
}
