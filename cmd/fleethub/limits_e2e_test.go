package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/fleetwire/fleetwire/agent/trust"
	"github.com/fleetwire/fleetwire/hub/influx/influxtest"
	"github.com/fleetwire/fleetwire/hub/store"
	"github.com/fleetwire/fleetwire/protocol"
)

// TestSlowHeaderAttackDoesNotStopDevices: 2,000 sockets trickle a plain
// HTTP request header a byte at a time (slowAttack); an oversized header
// gets 431.
func TestSlowHeaderAttackDoesNotStopDevices(t *testing.T) {
	t.Parallel()
	srv := slowAttack(t, "tls:\n  insecure: true\n", []byte("GET /v1/device HTTP/1.1\r\nHost: hub\r\nX-Slow: "))

	// An oversized header (past 8KiB plus net/http's 4KiB slack): 431.
	conn, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	go conn.Write([]byte("GET /v1/device HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 16<<10) + "\r\n\r\n"))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("oversized header: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("oversized header: status %d, want 431", resp.StatusCode)
	}
}

// TestStalledTLSHandshakesDoNotStopDevices: the same with TLS on, the
// 2,000 sockets stalling in the handshake: each sends the header of a
// 256-byte TLS handshake record, then its body a byte at a time.
func TestStalledTLSHandshakesDoNotStopDevices(t *testing.T) {
	t.Parallel()
	slowAttack(t, "", []byte{0x16, 0x03, 0x01, 0x01, 0x00})
}

// slowAttack runs the whole hub (config yaml plus an 8s
// http.read_header_timeout and http.max_conns_per_addr of 200) while
// 2,000 loopback sockets, 200 from each of 10 source addresses, send
// start and then one more byte a second, never finishing. A 201st socket
// from one of those addresses is closed at once and counted. A real
// device (from 127.0.0.1) must still connect and get a batch stored and
// acked while all of them are open; then the hub must cut every slow
// socket off at the timeout and count them.
func slowAttack(t *testing.T, yaml string, start []byte) *Server {
	const sources, perSource, timeout = 10, 200, 8 * time.Second
	ix := influxtest.Start(t)
	dir := t.TempDir()
	st, err := store.Open(context.Background(), filepath.Join(dir, "fleethub.db"))
	if err != nil {
		t.Fatal(err)
	}
	_, token, err := st.CreateDevice(context.Background(), "pi-slowloris", nil)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	conf := filepath.Join(dir, "fleethub.yaml")
	yaml += fmt.Sprintf("http:\n  read_header_timeout: %s\n  max_header_bytes: 8KiB\n  max_conns_per_addr: %d\n", timeout, perSource)
	if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, _ := runHub(t, "--config", conf, "--data_dir", dir, "--influx.url", ix.URL, "--influx.bucket", ix.Bucket)

	var srcs []string
	for i := range sources {
		srcs = append(srcs, fmt.Sprintf("127.0.0.%d", i+2))
	}
	att := startSlowSockets(t, srv.Addr(), srcs, perSource, start)
	defer att.close()
	opened := time.Now()

	// One past the cap from a source address: closed at accept, counted.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(srcs[0])}}
	over, err := d.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	over.Write(start)
	over.SetReadDeadline(time.Now().Add(timeout / 2))
	if _, err := over.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("socket %d from %s: read %v, want it closed at accept", perSource+1, srcs[0], err)
	}
	if n := gatherSum(t, srv, "fleethub_http_conns_refused_total"); n != 1 {
		t.Fatalf("fleethub_http_conns_refused_total %v, want 1", n)
	}

	c := dialDevice(t, srv, token)
	defer c.Close()
	sendBatchAndWaitAck(t, c)
	if n := att.cut.Load(); n != 0 {
		t.Fatalf("%d slow sockets already cut off when the device was served; the test proves nothing", n)
	}

	// Every slow socket is cut off by the hub at the timeout, and counted.
	total := int64(sources * perSource)
	waitFor(t, timeout+8*time.Second-time.Since(opened), fmt.Sprintf("all %d slow sockets cut off", total), func() bool { return att.cut.Load() >= total })
	if el := time.Since(opened); el < timeout-time.Second {
		t.Fatalf("slow sockets cut off after %s, before the %s timeout", el, timeout)
	}
	waitFor(t, 8*time.Second, fmt.Sprintf("%d unserved connections counted", total), func() bool {
		return gatherSum(t, srv, "fleethub_http_conns_unserved_total") >= float64(total)
	})
	return srv
}

// slowSockets is a slow-header (or slow-handshake) attack: perSource
// sockets from each source address, each sending start and then one
// byte a second, never finishing.
type slowSockets struct {
	conns []net.Conn
	stop  context.CancelFunc
	cut   atomic.Int64 // sockets the hub has closed
	wg    sync.WaitGroup
}

func startSlowSockets(t *testing.T, addr string, sources []string, perSource int, start []byte) *slowSockets {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	a := &slowSockets{stop: stop}
	for _, src := range sources {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		for range perSource {
			c, err := d.Dial("tcp", addr)
			if err != nil {
				a.close()
				t.Fatalf("slow socket %d: %v", len(a.conns), err)
			}
			a.conns = append(a.conns, c)
			c.Write(start)
			a.wg.Add(1)
			go func() { // the hub closing the socket ends this read
				defer a.wg.Done()
				var b [64]byte
				for {
					if _, err := c.Read(b[:]); err != nil {
						if ctx.Err() == nil {
							a.cut.Add(1)
						}
						return
					}
				}
			}()
		}
	}
	a.wg.Add(1)
	go func() { // one more byte per socket every second
		defer a.wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			for _, c := range a.conns {
				c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
				c.Write([]byte{'a'})
			}
		}
	}()
	return a
}

// close ends the attack.
func (a *slowSockets) close() {
	a.stop()
	for _, c := range a.conns {
		c.Close()
	}
	a.wg.Wait()
}

func dialDevice(t *testing.T, srv *Server, token string) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{protocol.Subprotocol}, HandshakeTimeout: 5 * time.Second}
	if strings.HasPrefix(srv.URL(), "https://") {
		tlsCfg, err := trust.ClientConfig("127.0.0.1", srv.CAFile(), "")
		if err != nil {
			t.Fatal(err)
		}
		d.TLSClientConfig = tlsCfg
	}
	url := "ws" + strings.TrimPrefix(srv.URL(), "http") + "/v1/device"
	c, resp, err := d.Dial(url, http.Header{"Authorization": {"Bearer " + token}})
	if err != nil {
		t.Fatalf("device dial during the attack: %v (%v)", err, resp)
	}
	return c
}

func sendBatchAndWaitAck(t *testing.T, c *websocket.Conn) {
	t.Helper()
	write := func(msg any) {
		data, err := protocol.Encode(msg)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.WriteMessage(websocket.BinaryMessage, data); err != nil {
			t.Fatal(err)
		}
	}
	write(&protocol.Hello{AgentVersion: "t", ProtocolVersion: protocol.Version, BootID: "b"})
	write(&protocol.Batch{Seq: 1, BaseTime: time.Now().UnixMilli(), Points: []protocol.Point{{Name: "cpu.usage_percent", Value: 1}}})
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, data, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("waiting for the ack: %v", err)
		}
		msg, err := protocol.Decode(data, 0)
		if err != nil {
			t.Fatal(err)
		}
		if a, ok := msg.(*protocol.Ack); ok && a.Seq == 1 {
			return
		}
	}
}

// TestAbuseLimitConfigNamesTheKey: each out-of-range limit is reported
// under its own key.
func TestAbuseLimitConfigNamesTheKey(t *testing.T) {
	for _, tc := range []struct {
		key string
		mod func(*Config)
	}{
		{"device.max_conns_per_addr", func(c *Config) { c.Device.MaxConnsPerAddr = -1 }},
		{"device.max_msgs_per_sec", func(c *Config) { c.Device.MaxMsgsPerSec = -1 }},
		{"device.max_points_per_sec", func(c *Config) { c.Device.PointsBurst = -1 }},
		{"device.throttle_close_after", func(c *Config) { c.Device.ThrottleCloseAfter = 0 }},
		{"device.flap_max", func(c *Config) { c.Device.FlapMax = -1 }},
		{"device.flap_hold", func(c *Config) { c.Device.FlapHold = 25 * time.Hour }},
		{"http.read_header_timeout", func(c *Config) { c.HTTP.ReadHeaderTimeout = 0 }},
		{"http.max_header_bytes", func(c *Config) { c.HTTP.MaxHeaderBytes = 2 << 20 }},
		{"http.max_conns_per_addr", func(c *Config) { c.HTTP.MaxConnsPerAddr = -1 }},
		{"http.max_conns_per_addr", func(c *Config) { c.HTTP.MaxConnsPerAddr = 63 }}, // below the device cap (64)
	} {
		c := defaultConfig()
		if err := c.Validate(); err != nil {
			t.Fatalf("defaults invalid: %v", err)
		}
		tc.mod(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%s: error %v, want it to name the key", tc.key, err)
		}
	}
	// At the edge: equal to the device cap is fine; the default is four
	// times it, and off with it.
	c := defaultConfig()
	c.HTTP.MaxConnsPerAddr = c.Device.MaxConnsPerAddr
	if err := c.Validate(); err != nil {
		t.Errorf("http.max_conns_per_addr equal to the device cap: %v", err)
	}
	c = defaultConfig()
	if got := c.HTTP.connsPerAddr(c.Device); got != 256 {
		t.Errorf("default http cap %d, want 256", got)
	}
	c.Device.MaxConnsPerAddr = 0
	if got := c.HTTP.connsPerAddr(c.Device); got != 0 {
		t.Errorf("http cap %d with the device cap off, want 0 (off)", got)
	}
}
