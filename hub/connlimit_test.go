package hub

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestConnLimitAtAndPastTheEdge dials a capped loopback listener from two
// source addresses: up to the cap every connection is accepted, the next
// from the same address is closed unread and counted, another address
// is unaffected, and closing an accepted connection frees its slot.
func TestConnLimitAtAndPastTheEdge(t *testing.T) {
	const max = 3
	l := NewConnLimit(max, prometheus.NewRegistry())
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := l.Listener(inner)
	defer ln.Close()
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	dial := func(src string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatalf("dial from %s: %v", src, err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	accept := func(src string) net.Conn {
		t.Helper()
		dial(src)
		select {
		case c := <-accepted:
			if got := c.RemoteAddr().(*net.TCPAddr).IP.String(); got != src {
				t.Fatalf("accepted a connection from %s, want %s", got, src)
			}
			return c
		case <-time.After(5 * time.Second):
			t.Fatalf("connection from %s within the cap not accepted", src)
			return nil
		}
	}
	// refused checks that the hub closes a connection from src unread.
	refused := func(src string) {
		t.Helper()
		c := dial(src)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("connection from %s past the cap: read %v, want it closed by the listener", src, err)
		}
	}

	var first []net.Conn
	for range max {
		first = append(first, accept("127.0.0.2"))
	}
	refused("127.0.0.2")
	if got := testutil.ToFloat64(l.refused); got != 1 {
		t.Fatalf("refused counter %v, want 1", got)
	}
	select {
	case c := <-accepted:
		t.Fatalf("connection from %s past the cap handed to the server", c.RemoteAddr())
	default:
	}
	accept("127.0.0.3") // another address has its own budget
	first[0].Close()
	accept("127.0.0.2") // the freed slot is usable again
	refused("127.0.0.2")
	if got := testutil.ToFloat64(l.refused); got != 2 {
		t.Fatalf("refused counter %v, want 2", got)
	}
}
