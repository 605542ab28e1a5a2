package hub

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// AcceptLimit caps how many device connections per second the hub starts
// to admit (token check, upgrade, session). Past it a device gets HTTP 503
// with a Retry-After spread over the backlog, before any of that work, so
// a reconnect storm after a hub restart comes back in waves the hub can
// take instead of thousands of half-finished sessions at once.
type AcceptLimit struct {
	lim   *rate.Limiter
	rate  float64
	now   func() time.Time
	rand  func() float64
	count *prometheus.CounterVec

	mu      sync.Mutex
	window  time.Time // start of the current one-second refusal window
	refused int       // refusals in the window
	prev    int       // refusals in the window before it
}

// AcceptConfig configures NewAcceptLimit.
type AcceptConfig struct {
	Rate  float64 // admissions per second; <= 0 disables the limit
	Burst int     // admissions allowed at once, default Rate/4 (at least 1)
	// Registerer receives fleethub_device_accepts_total{result}.
	Registerer prometheus.Registerer
	Now        func() time.Time // tests
	Rand       func() float64   // tests
}

// NewAcceptLimit returns a limiter, or nil (no limit) when Rate <= 0.
func NewAcceptLimit(c AcceptConfig) *AcceptLimit {
	if c.Rate <= 0 {
		return nil
	}
	if c.Burst <= 0 {
		c.Burst = max(1, int(c.Rate/4))
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Rand == nil {
		c.Rand = rand.Float64
	}
	a := &AcceptLimit{
		lim: rate.NewLimiter(rate.Limit(c.Rate), c.Burst), rate: c.Rate, now: c.Now, rand: c.Rand,
		count: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleethub_device_accepts_total",
			Help: "Device connection attempts by admission result (admitted, limited).",
		}, []string{"result"}),
	}
	if c.Registerer != nil {
		c.Registerer.MustRegister(a.count)
	}
	return a
}

// Allow admits one connection now, or returns how long the caller should
// wait: uniform over [1 s, backlog/rate], where the backlog is the
// refusals of the last second or two, so refused devices spread out
// instead of returning together.
func (a *AcceptLimit) Allow() (ok bool, retryAfter time.Duration) {
	now := a.now()
	if a.lim.AllowN(now, 1) {
		a.count.WithLabelValues("admitted").Inc()
		return true, 0
	}
	a.count.WithLabelValues("limited").Inc()
	a.mu.Lock()
	switch d := now.Sub(a.window); {
	case d >= 2*time.Second:
		a.window, a.prev, a.refused = now, 0, 0
	case d >= time.Second:
		a.window, a.prev, a.refused = now, a.refused, 0
	}
	a.refused++
	backlog := float64(max(a.refused, a.prev))
	a.mu.Unlock()
	spread := min(max(backlog/a.rate, 1), 60) // seconds
	secs := 1 + int(a.rand()*spread)
	return false, time.Duration(secs) * time.Second
}

// Wrap refuses over-limit requests to next with 503 and Retry-After.
// A nil AcceptLimit passes everything through.
func (a *AcceptLimit) Wrap(next http.Handler) http.Handler {
	if a == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ok, wait := a.Allow()
		if !ok {
			w.Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)))
			w.Header().Set("Connection", "close")
			http.Error(w, "hub is admitting devices at its accept rate limit; retry after the Retry-After seconds", http.StatusServiceUnavailable)
			return
		}
		next.ServeHTTP(w, r)
	})
}
