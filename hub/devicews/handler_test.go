package devicews_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/hub/devicews"
	"github.com/fleetwire/fleetwire/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeStore knows tokens "good-<id>" and a revoked "revoked-<id>".
type fakeStore struct{}

func (fakeStore) AuthenticateDevice(_ context.Context, token string) (hub.Device, error) {
	switch {
	case strings.HasPrefix(token, "good-"):
		return hub.Device{ID: strings.TrimPrefix(token, "good-"), Labels: map[string]string{"site": "lab"}}, nil
	case strings.HasPrefix(token, "revoked-"):
		return hub.Device{}, hub.ErrRevoked
	case strings.HasPrefix(token, "rotate-"): // an operator asked it to rotate
		return hub.Device{ID: strings.TrimPrefix(token, "rotate-"), RotateRequested: true}, nil
	}
	return hub.Device{}, hub.ErrUnauthorized
}

func (fakeStore) TouchDevice(context.Context, string, time.Time, string) error { return nil }

// gateSink stores batches only when the test lets it: each Write waits for
// a value on release (nil = stored).
type gateSink struct {
	release chan error
	mu      sync.Mutex
	stored  []uint64
}

func (s *gateSink) Write(ctx context.Context, bs []*hub.IngestBatch) error {
	select {
	case err := <-s.release:
		if err != nil {
			return err
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	s.mu.Lock()
	for _, b := range bs {
		s.stored = append(s.stored, b.Batch.Seq)
	}
	s.mu.Unlock()
	return nil
}

type env struct {
	t        *testing.T
	srv      *httptest.Server
	h        *devicews.Handler
	reg      *hub.Registry
	ing      *hub.Ingester
	sink     *gateSink
	wsURL    string
	inflight int
}

func newEnv(t *testing.T, mod func(*devicews.Config)) *env {
	t.Helper()
	m := hub.NewMetrics(nil)
	e := &env{t: t, sink: &gateSink{release: make(chan error, 1000)}}
	e.reg = hub.NewRegistry(m)
	e.ing = hub.NewIngester(hub.IngestConfig{Workers: 1}, e.sink, m, nil)
	cfg := devicews.Config{
		Store: fakeStore{}, Registry: e.reg, Ingester: e.ing, Metrics: m,
		MaxInflight: 4, MaxMessageBytes: 4096, PingInterval: time.Second,
	}
	if mod != nil {
		mod(&cfg)
	}
	e.h = devicews.New(cfg)
	e.srv = httptest.NewServer(e.h)
	e.wsURL = "ws" + strings.TrimPrefix(e.srv.URL, "http")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.srv.Close()
		if err := e.h.Close(ctx); err != nil {
			t.Errorf("handler close: %v", err)
		}
		close(e.sink.release)
		if err := e.ing.Close(ctx); err != nil {
			t.Errorf("ingester close: %v", err)
		}
	})
	return e
}

func (e *env) dial(token string) (*websocket.Conn, *http.Response, error) {
	h := http.Header{}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	d := websocket.Dialer{Subprotocols: []string{protocol.Subprotocol}, HandshakeTimeout: 5 * time.Second}
	return d.Dial(e.wsURL, h)
}

// connect dials and completes hello/welcome.
func (e *env) connect(id string) *websocket.Conn {
	e.t.Helper()
	c, _, err := e.dial("good-" + id)
	if err != nil {
		e.t.Fatalf("dial: %v", err)
	}
	e.t.Cleanup(func() { c.Close() })
	e.send(c, &protocol.Hello{AgentVersion: "test", ProtocolVersion: protocol.Version, BootID: "b"})
	w, ok := e.read(c).(*protocol.Welcome)
	if !ok || w.DeviceID != id {
		e.t.Fatalf("expected welcome for %s, got %#v", id, w)
	}
	return c
}

func (e *env) send(c *websocket.Conn, msg any) {
	e.t.Helper()
	data, err := protocol.Encode(msg)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := c.WriteMessage(websocket.BinaryMessage, data); err != nil {
		e.t.Fatalf("write: %v", err)
	}
}

func (e *env) read(c *websocket.Conn) any {
	e.t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, data, err := c.ReadMessage()
	if err != nil {
		e.t.Fatalf("read: %v", err)
	}
	msg, err := protocol.Decode(data, 0)
	if err != nil {
		e.t.Fatalf("decode: %v", err)
	}
	return msg
}

// closeCode reads until the connection ends and returns the close code.
func closeCode(t *testing.T, c *websocket.Conn) int {
	t.Helper()
	code, _ := closeFrame(t, c)
	return code
}

func batch(seq uint64) *protocol.Batch {
	return &protocol.Batch{Seq: seq, BaseTime: 1700000000000, Points: []protocol.Point{{Name: "cpu.usage_percent", Value: 12.5}}}
}

func TestRefusedBeforeUpgrade(t *testing.T) {
	e := newEnv(t, nil)
	for _, tok := range []string{"", "wrong", "revoked-pi"} {
		c, resp, err := e.dial(tok)
		if err == nil {
			c.Close()
			t.Fatalf("token %q: upgrade succeeded", tok)
		}
		if resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("token %q: want 401, got %v", tok, resp)
		}
	}
	// A browser page (Origin set) must not reach the device endpoint.
	h := http.Header{"Authorization": {"Bearer good-pi"}, "Origin": {"https://evil.example"}}
	d := websocket.Dialer{Subprotocols: []string{protocol.Subprotocol}}
	if c, resp, err := d.Dial(e.wsURL, h); err == nil {
		c.Close()
		t.Fatal("upgrade with Origin succeeded")
	} else if resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("Origin: want 403, got %v", resp)
	}
}

func TestAckOnlyAfterStored(t *testing.T) {
	e := newEnv(t, nil)
	c := e.connect("pi")
	e.send(c, batch(1))
	e.send(c, batch(2))
	// Nothing stored yet: no ack may arrive.
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, _, err := c.ReadMessage(); err == nil {
		t.Fatal("got a message before the sink stored anything")
	}
	c.Close()
	c = e.connect("pi")
	e.send(c, batch(3))
	e.send(c, batch(4))
	// One release per write; the worker gathers what has arrived, so the
	// four batches take one to four writes (more under load).
	for range 4 {
		e.sink.release <- nil
	}
	deadline := time.Now().Add(5 * time.Second)
	var acked uint64
	for acked < 4 && time.Now().Before(deadline) {
		if a, ok := e.read(c).(*protocol.Ack); ok {
			acked = a.Seq
		}
	}
	if acked != 4 {
		t.Fatalf("acked %d, want 4", acked)
	}
}

func TestNoAckPastFailedWrite(t *testing.T) {
	e := newEnv(t, nil)
	c := e.connect("pi")
	e.send(c, batch(1))
	e.sink.release <- errors.New("influx gone")
	e.send(c, batch(2))
	e.sink.release <- nil
	// Batch 1 failed: the ack must never reach 2 in this session.
	c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	for {
		_, data, err := c.ReadMessage()
		if err != nil {
			break
		}
		if msg, _ := protocol.Decode(data, 0); msg != nil {
			if a, ok := msg.(*protocol.Ack); ok {
				t.Fatalf("ack %d sent past a failed batch", a.Seq)
			}
		}
	}
}

func TestWindowExceededClosesWithPolicy(t *testing.T) {
	e := newEnv(t, nil) // MaxInflight 4, sink never releases
	c := e.connect("pi")
	for seq := uint64(1); seq <= 5; seq++ {
		e.send(c, batch(seq))
	}
	if code := closeCode(t, c); code != int(protocol.ClosePolicy) {
		t.Fatalf("close code %d, want %d", code, protocol.ClosePolicy)
	}
}

func TestBadMessagesClose(t *testing.T) {
	cases := map[string]struct {
		data []byte
		want int
	}{
		"garbage":      {[]byte{0xff, 0x00}, int(protocol.CloseProtocolError)},
		"unknown type": {[]byte{0x82, 0x18, 0x63, 0xa0}, int(protocol.CloseProtocolError)},
		"over limit":   {make([]byte, 4097), int(protocol.CloseTooBig)},
		// Hostile CBOR: each closes the session with a protocol error.
		"nesting 3000 deep": {append(hexb("82 03 a2 01 01 04 81 a2 01 61 78 03"), append(bytesRepeat(0x81, 3000), 0)...), int(protocol.CloseProtocolError)},
		"array of 2^38":     {hexb("82 03 a2 01 01 04 9b 00 00 00 40 00 00 00 00"), int(protocol.CloseProtocolError)},
		"duplicate map key": {hexb("82 04 a2 01 01 01 02"), int(protocol.CloseProtocolError)},
		"indefinite length": {hexb("82 04 bf 01 01 ff"), int(protocol.CloseProtocolError)},
		"trailing bytes":    {hexb("82 04 a1 01 18 2a 00"), int(protocol.CloseProtocolError)},
		"text frame":        {nil, int(protocol.CloseProtocolError)},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, nil)
			c := e.connect("pi")
			mt := websocket.BinaryMessage
			if tc.data == nil {
				mt, tc.data = websocket.TextMessage, []byte("{}")
			}
			if err := c.WriteMessage(mt, tc.data); err != nil {
				t.Fatal(err)
			}
			if code := closeCode(t, c); code != tc.want {
				t.Fatalf("close code %d, want %d", code, tc.want)
			}
		})
	}
}

func TestSeqMustIncrease(t *testing.T) {
	e := newEnv(t, nil)
	c := e.connect("pi")
	e.send(c, batch(5))
	e.send(c, batch(5))
	if code := closeCode(t, c); code != int(protocol.CloseProtocolError) {
		t.Fatalf("close code %d", code)
	}
}

func TestNewSessionReplacesOld(t *testing.T) {
	e := newEnv(t, nil)
	old := e.connect("pi")
	_ = e.connect("pi")
	if code := closeCode(t, old); code != int(protocol.CloseReplaced) {
		t.Fatalf("old session close code %d, want %d", code, protocol.CloseReplaced)
	}
	if !e.reg.Online("pi") {
		t.Fatal("device not online after replacement")
	}
}

func TestDisconnectClosesAtOnce(t *testing.T) {
	e := newEnv(t, nil)
	c := e.connect("pi")
	start := time.Now()
	e.reg.Disconnect("pi", "revoked")
	if code := closeCode(t, c); code != int(protocol.CloseRevoked) {
		t.Fatalf("close code %d", code)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("revocation took %s", d)
	}
	deadline := time.Now().Add(2 * time.Second)
	for e.reg.Online("pi") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if e.reg.Online("pi") {
		t.Fatal("still online after disconnect")
	}
}

func TestHelloRequired(t *testing.T) {
	e := newEnv(t, nil)
	c, _, err := e.dial("good-pi")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	e.send(c, batch(1))
	if code := closeCode(t, c); code != int(protocol.CloseProtocolError) {
		t.Fatalf("close code %d", code)
	}
	c2, _, err := e.dial("good-pi")
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	e.send(c2, &protocol.Hello{AgentVersion: "x", ProtocolVersion: protocol.Version + 1})
	if code := closeCode(t, c2); code != int(protocol.CloseUnsupportedVersion) {
		t.Fatalf("close code %d", code)
	}
}

func hexb(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

func bytesRepeat(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

// TestRotateRequestedAtConnect: a device asked to rotate while away is
// told at connect (close 4009) if its agent can rotate, before it counts
// as online; an agent that cannot is let in (closing it would only loop).
func TestRotateRequestedAtConnect(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct {
		caps []string
		want int
	}{
		{[]string{"telemetry", protocol.CapRotateToken}, int(protocol.CloseRotateToken)},
		{[]string{"telemetry"}, 0},
	} {
		c, _, err := e.dial("rotate-pi-r")
		if err != nil {
			t.Fatal(err)
		}
		e.send(c, &protocol.Hello{AgentVersion: "test", ProtocolVersion: protocol.Version, BootID: "b", Capabilities: tc.caps})
		if tc.want != 0 {
			if code := closeCode(t, c); code != tc.want {
				t.Errorf("caps %v: close %d, want %d", tc.caps, code, tc.want)
			}
			if e.reg.Online("pi-r") {
				t.Errorf("a device told to rotate counted as online")
			}
		} else {
			if _, ok := e.read(c).(*protocol.Welcome); !ok {
				t.Errorf("caps %v: no welcome", tc.caps)
			}
			eventually(t, fmt.Sprintf("caps %v: online after its welcome", tc.caps), func() bool { return e.reg.Online("pi-r") })
		}
		c.Close()
	}
}
