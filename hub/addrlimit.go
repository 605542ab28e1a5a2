package hub

import (
	"net/netip"
	"sync"
)

// AddrLimit caps the concurrent device connections from one source
// address, so one host cannot hold a large share of the hub's sockets and
// sessions. IPv6 addresses count per /64, the block one host or site is
// usually given (a single machine can use any address in it).
//
// The trade-off is NAT: a fleet behind one public address (a cellular
// carrier's CGNAT, a site's router) shares one budget. The cap is meant
// well above such a fleet's size; raise it, or disable it (0), for
// sites with many devices behind one address.
type AddrLimit struct {
	max int
	mu  sync.Mutex
	n   map[string]int // open connections per address key
}

// NewAddrLimit returns a cap of max connections per address, or nil (no
// cap) when max <= 0.
func NewAddrLimit(max int) *AddrLimit {
	if max <= 0 {
		return nil
	}
	return &AddrLimit{max: max, n: make(map[string]int)}
}

// Acquire takes a connection slot for remoteAddr (an http.Request's
// RemoteAddr, "ip:port"). ok is false when the address is at its cap;
// otherwise release must be called exactly once when the connection ends.
// A nil AddrLimit admits everything.
func (l *AddrLimit) Acquire(remoteAddr string) (release func(), ok bool) {
	if l == nil {
		return func() {}, true
	}
	key := addrKey(remoteAddr)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[key] >= l.max {
		return nil, false
	}
	l.n[key]++
	var once sync.Once
	return func() { once.Do(func() { l.release(key) }) }, true
}

func (l *AddrLimit) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[key]--; l.n[key] <= 0 {
		delete(l.n, key) // the map holds only addresses with open connections
	}
}

// Open reports the connections open from remoteAddr's address (tests).
func (l *AddrLimit) Open(remoteAddr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n[addrKey(remoteAddr)]
}

// addrKey is the budget a remote address counts against: the IPv4
// address, or the IPv6 /64. Anything unparsable counts as itself.
func addrKey(remoteAddr string) string {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return remoteAddr
	}
	a := ap.Addr().Unmap()
	if a.Is4() {
		return a.String()
	}
	return netip.PrefixFrom(a.WithZone(""), 64).Masked().String()
}
