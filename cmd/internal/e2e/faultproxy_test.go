package e2e

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// faultProxy is a TCP proxy between agents and the hub that injects the
// faults of a bad network: latency, a bandwidth cap, connections reset at
// once, and a blackhole (bytes accepted and never delivered, in both
// directions, until lifted). Faults apply to open and new connections.
type faultProxy struct {
	t      testing.TB
	ln     net.Listener
	target string

	mu        sync.Mutex
	latency   time.Duration
	limiter   *rate.Limiter // nil: no cap; shared by all connections and both directions
	blackhole bool
	lifted    chan struct{} // closed when the blackhole ends
	conns     map[net.Conn]net.Conn
	resets    int
}

func newFaultProxy(t testing.TB, target string) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{t: t, ln: ln, target: target, conns: map[net.Conn]net.Conn{}, lifted: make(chan struct{})}
	close(p.lifted)
	go p.accept()
	t.Cleanup(func() { ln.Close(); p.resetAll() })
	return p
}

func (p *faultProxy) addr() string { return p.ln.Addr().String() }

// setLatency delays every chunk forwarded by d.
func (p *faultProxy) setLatency(d time.Duration) {
	p.mu.Lock()
	p.latency = d
	p.mu.Unlock()
}

// setBandwidth caps the bytes per second through the proxy (0: no cap).
func (p *faultProxy) setBandwidth(bytesPerSec int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if bytesPerSec <= 0 {
		p.limiter = nil
		return
	}
	p.limiter = rate.NewLimiter(rate.Limit(bytesPerSec), 16<<10)
}

// setBlackhole starts or ends the blackhole.
func (p *faultProxy) setBlackhole(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on == p.blackhole {
		return
	}
	p.blackhole = on
	if on {
		p.lifted = make(chan struct{})
	} else {
		close(p.lifted)
	}
}

// resetAll resets every open connection (RST, not FIN) on both sides.
func (p *faultProxy) resetAll() {
	p.mu.Lock()
	conns := p.conns
	p.conns = map[net.Conn]net.Conn{}
	p.resets += len(conns)
	p.mu.Unlock()
	for a, b := range conns {
		reset(a)
		reset(b)
	}
}

func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0) // close with RST
	}
	c.Close()
}

func (p *faultProxy) accept() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.serve(in)
	}
}

func (p *faultProxy) serve(in net.Conn) {
	out, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		reset(in)
		return
	}
	p.mu.Lock()
	p.conns[in] = out
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { p.pipe(out, in); done <- struct{}{} }()
	go func() { p.pipe(in, out); done <- struct{}{} }()
	<-done
	in.Close()
	out.Close()
	<-done
	p.mu.Lock()
	delete(p.conns, in)
	p.mu.Unlock()
}

// pipe copies src to dst, applying the faults chunk by chunk.
func (p *faultProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 16<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			latency, limiter, lifted := p.latency, p.limiter, p.lifted
			p.mu.Unlock()
			<-lifted // blackholed: the bytes wait here, undelivered
			if latency > 0 {
				time.Sleep(latency) // the injected delay itself
			}
			if limiter != nil {
				for rest := n; rest > 0; {
					k := min(rest, limiter.Burst())
					if limiter.WaitN(context.Background(), k) != nil {
						return
					}
					rest -= k
				}
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				return
			}
			if tc, ok := dst.(*net.TCPConn); ok {
				tc.CloseWrite()
			}
			return
		}
	}
}
