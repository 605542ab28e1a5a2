package main

import (
	"bufio"
	"context"
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

	"github.com/fleetwire/fleetwire/hub/influx/influxtest"
	"github.com/fleetwire/fleetwire/hub/store"
	"github.com/fleetwire/fleetwire/protocol"
)

// TestSlowHeaderAttackDoesNotStopDevices runs the whole hub with an
// 8s http.read_header_timeout while 2,000 loopback sockets trickle a
// request header a byte at a time. A real device must still connect and
// get a batch stored and acked while all of them are open; then the hub
// must cut every slow socket off at the timeout and count them. An
// oversized header gets 431.
func TestSlowHeaderAttackDoesNotStopDevices(t *testing.T) {
	const slow, timeout = 2000, 8 * time.Second
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
	yaml := "tls:\n  insecure: true\nhttp:\n  read_header_timeout: " + timeout.String() + "\n  max_header_bytes: 8KiB\n"
	if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, _ := runHub(t, "--config", conf, "--data_dir", dir, "--influx.url", ix.URL, "--influx.bucket", ix.Bucket)

	att := startSlowHeaders(t, srv.Addr(), slow)
	defer att.close()
	opened := time.Now()

	c := dialDevice(t, srv, token)
	defer c.Close()
	sendBatchAndWaitAck(t, c)
	if n := att.cut.Load(); n != 0 {
		t.Fatalf("%d slow sockets already cut off when the device was served; the test proves nothing", n)
	}

	// Every slow socket is cut off by the hub at the timeout, and counted.
	waitFor(t, timeout+8*time.Second-time.Since(opened), fmt.Sprintf("all %d slow sockets cut off", slow), func() bool { return att.cut.Load() >= int64(slow) })
	if el := time.Since(opened); el < timeout-time.Second {
		t.Fatalf("slow sockets cut off after %s, before the %s timeout", el, timeout)
	}
	waitFor(t, 8*time.Second, fmt.Sprintf("%d unserved connections counted", slow), func() bool {
		return gatherSum(t, srv, "fleethub_http_conns_unserved_total") >= float64(slow)
	})

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

// slowHeaders is a slow-header attack: n sockets, each sending a request
// header one byte at a time and never finishing it.
type slowHeaders struct {
	conns []net.Conn
	stop  context.CancelFunc
	cut   atomic.Int64 // sockets the hub has closed
	wg    sync.WaitGroup
}

func startSlowHeaders(t *testing.T, addr string, n int) *slowHeaders {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	a := &slowHeaders{stop: stop}
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			a.close()
			t.Fatalf("slow socket %d: %v", len(a.conns), err)
		}
		a.conns = append(a.conns, c)
		c.Write([]byte("GET /v1/device HTTP/1.1\r\nHost: hub\r\nX-Slow: "))
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
	a.wg.Add(1)
	go func() { // one more header byte per socket every second
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
func (a *slowHeaders) close() {
	a.stop()
	for _, c := range a.conns {
		c.Close()
	}
	a.wg.Wait()
}

func dialDevice(t *testing.T, srv *Server, token string) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{protocol.Subprotocol}, HandshakeTimeout: 5 * time.Second}
	url := strings.Replace(srv.URL(), "http://", "ws://", 1) + "/v1/device"
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
	for key, mod := range map[string]func(*Config){
		"device.max_conns_per_addr":   func(c *Config) { c.Device.MaxConnsPerAddr = -1 },
		"device.max_msgs_per_sec":     func(c *Config) { c.Device.MaxMsgsPerSec = -1 },
		"device.max_points_per_sec":   func(c *Config) { c.Device.PointsBurst = -1 },
		"device.throttle_close_after": func(c *Config) { c.Device.ThrottleCloseAfter = 0 },
		"device.flap_max":             func(c *Config) { c.Device.FlapMax = -1 },
		"device.flap_hold":            func(c *Config) { c.Device.FlapHold = 25 * time.Hour },
		"http.read_header_timeout":    func(c *Config) { c.HTTP.ReadHeaderTimeout = 0 },
		"http.max_header_bytes":       func(c *Config) { c.HTTP.MaxHeaderBytes = 2 << 20 },
	} {
		c := defaultConfig()
		if err := c.Validate(); err != nil {
			t.Fatalf("defaults invalid: %v", err)
		}
		mod(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s: error %v, want it to name the key", key, err)
		}
	}
}
