package api

import (
	"sync"
	"time"
)

// maxLimiterAddrs bounds the limiter's memory; past it, new addresses are
// refused until old windows end (an attacker with that many addresses
// should not be able to exhaust memory instead).
const maxLimiterAddrs = 10_000

// loginLimiter counts failed sign-ins per source address in fixed windows.
type loginLimiter struct {
	mu     sync.Mutex
	max    int
	window time.Duration
	now    func() time.Time
	addrs  map[string]*failures
}

type failures struct {
	start time.Time
	n     int
}

func newLoginLimiter(max int, window time.Duration) *loginLimiter {
	return &loginLimiter{max: max, window: window, now: time.Now, addrs: map[string]*failures{}}
}

// blocked reports whether addr has used up its failures, and for how much
// longer.
func (l *loginLimiter) blocked(addr string) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	f := l.current(addr, now)
	if f == nil {
		if len(l.addrs) >= maxLimiterAddrs {
			l.prune(now)
			if len(l.addrs) >= maxLimiterAddrs {
				return l.window, true
			}
		}
		return 0, false
	}
	if f.n >= l.max {
		return f.start.Add(l.window).Sub(now), true
	}
	return 0, false
}

// fail records a failed sign-in from addr.
func (l *loginLimiter) fail(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	f := l.current(addr, now)
	if f == nil {
		f = &failures{start: now}
		l.addrs[addr] = f
	}
	f.n++
}

// current returns addr's window if it is still open.
func (l *loginLimiter) current(addr string, now time.Time) *failures {
	f := l.addrs[addr]
	if f == nil || !now.Before(f.start.Add(l.window)) {
		delete(l.addrs, addr)
		return nil
	}
	return f
}

func (l *loginLimiter) prune(now time.Time) {
	for addr, f := range l.addrs {
		if !now.Before(f.start.Add(l.window)) {
			delete(l.addrs, addr)
		}
	}
}
