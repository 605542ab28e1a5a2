package hub

import (
	"net"

	"github.com/prometheus/client_golang/prometheus"
)

// ConnLimit caps the TCP connections one source address may hold open on
// the hub's listener, counted from accept, before any TLS handshake or
// request header. It bounds what a single host can tie up with sockets
// that never get as far as a request (a slow-header or stalled-handshake
// attack from one address), which the per-address device cap, counted
// at the upgrade request, cannot see. A connection over the cap is
// closed at once, unread.
type ConnLimit struct {
	addrs   *AddrLimit
	refused prometheus.Counter
}

// NewConnLimit caps each address (IPv4 address or IPv6 /64, as
// AddrLimit) at max open connections; max <= 0 disables the cap. It
// registers fleethub_http_conns_refused_total on reg (nil: not
// registered).
func NewConnLimit(max int, reg prometheus.Registerer) *ConnLimit {
	l := &ConnLimit{addrs: NewAddrLimit(max), refused: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "fleethub_http_conns_refused_total",
		Help: "TCP connections closed at accept because their source address already held http.max_conns_per_addr open.",
	})}
	if reg != nil {
		reg.MustRegister(l.refused)
	}
	return l
}

// Listener wraps ln: Accept hands out only connections within the cap,
// and each one gives its slot back when closed.
func (l *ConnLimit) Listener(ln net.Listener) net.Listener {
	if l.addrs == nil {
		return ln
	}
	return &limitedListener{Listener: ln, l: l}
}

type limitedListener struct {
	net.Listener
	l *ConnLimit
}

func (ll *limitedListener) Accept() (net.Conn, error) {
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			return nil, err
		}
		release, ok := ll.l.addrs.Acquire(c.RemoteAddr().String())
		if ok {
			return &limitedConn{Conn: c, release: release}, nil
		}
		ll.l.refused.Inc()
		c.Close()
	}
}

// limitedConn gives its slot back when closed (release is idempotent).
type limitedConn struct {
	net.Conn
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}
