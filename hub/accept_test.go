package hub

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeClock is a manual clock for the limiter.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestAcceptLimitAtAndPastTheEdge(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	r := 0.999 // the longest wait the spread allows
	a := NewAcceptLimit(AcceptConfig{Rate: 10, Burst: 5, Now: clk.now, Rand: func() float64 { return r }})
	for i := range 5 { // the burst, at once
		if ok, _ := a.Allow(); !ok {
			t.Fatalf("attempt %d of the burst refused", i+1)
		}
	}
	ok, wait := a.Allow()
	if ok || wait != time.Second {
		t.Fatalf("past the burst: ok=%v wait=%s; want refused, 1s (backlog 1 < rate)", ok, wait)
	}
	clk.t = clk.t.Add(100 * time.Millisecond) // one token at 10/s
	if ok, _ := a.Allow(); !ok {
		t.Fatal("a token after 100 ms refused")
	}
	if ok, _ := a.Allow(); ok {
		t.Fatal("second admission within the same 100 ms allowed")
	}
	// A storm: 200 more refusals within the second (202 in all) at 10/s is
	// a 20.2 s backlog: waits spread over 1..21 s.
	var longest, shortest time.Duration = 0, time.Hour
	for i := range 200 {
		r = float64(i) / 200
		ok, wait := a.Allow()
		if ok {
			t.Fatal("admitted during the storm without time passing")
		}
		longest, shortest = max(longest, wait), min(shortest, wait)
	}
	if shortest != time.Second || longest != 21*time.Second {
		t.Fatalf("storm waits %s..%s; want 1s..21s", shortest, longest)
	}
	// The next second remembers the last one's backlog; two quiet seconds later it is forgotten.
	clk.t = clk.t.Add(1500 * time.Millisecond)
	for a.lim.AllowN(clk.t, 1) { // drain the refilled tokens
	}
	r = 0.999
	if _, wait := a.Allow(); wait != 21*time.Second {
		t.Fatalf("a second after the storm: wait %s; want 21s (previous backlog)", wait)
	}
	clk.t = clk.t.Add(5 * time.Second)
	for a.lim.AllowN(clk.t, 1) {
	}
	if _, wait := a.Allow(); wait != time.Second {
		t.Fatalf("long after the storm: wait %s; want 1s", wait)
	}
	// 60 s at most, whatever the backlog.
	for range 10_000 {
		a.Allow()
	}
	if _, wait := a.Allow(); wait != 60*time.Second {
		t.Fatalf("huge backlog: wait %s; want the 60s cap", wait)
	}
}

func TestAcceptLimitHTTP(t *testing.T) {
	reg := prometheus.NewRegistry()
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	a := NewAcceptLimit(AcceptConfig{Rate: 1, Burst: 1, Registerer: reg, Now: clk.now, Rand: func() float64 { return 0 }})
	served := 0
	h := a.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { served++ }))
	do := func() *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/device", nil))
		return rec
	}
	if rec := do(); rec.Code != 200 || served != 1 {
		t.Fatalf("first: %d, served %d", rec.Code, served)
	}
	rec := do()
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "1" || served != 1 {
		t.Fatalf("over the limit: %d Retry-After %q served %d; want 503, 1, 1", rec.Code, rec.Header().Get("Retry-After"), served)
	}
	if got := testutil.ToFloat64(a.count.WithLabelValues("limited")); got != 1 {
		t.Errorf("limited = %v", got)
	}
	if got := testutil.ToFloat64(a.count.WithLabelValues("admitted")); got != 1 {
		t.Errorf("admitted = %v", got)
	}
	if n, _ := testutil.GatherAndCount(reg, "fleethub_device_accepts_total"); n != 2 {
		t.Errorf("registered series = %d; want 2", n)
	}

	// Disabled: nil limiter, everything passes.
	if NewAcceptLimit(AcceptConfig{Rate: 0}) != nil {
		t.Fatal("rate 0 should disable the limit")
	}
	var none *AcceptLimit
	plain := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	if got := none.Wrap(plain); got == nil {
		t.Fatal("nil limiter Wrap returned nil")
	}
}
