package dashws

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/hub/live"
	"github.com/fleetwire/fleetwire/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeAuth accepts "Bearer viewer" and "Bearer nobody" (a role that may
// do nothing); anything else is unauthenticated.
func fakeAuth(r *http.Request) (string, hub.Role, error) {
	switch r.Header.Get("Authorization") {
	case "Bearer viewer":
		return "alice", hub.RoleViewer, nil
	case "Bearer nobody":
		return "bob", hub.Role(""), nil
	}
	return "", "", errors.New("no session")
}

type env struct {
	t      *testing.T
	broker *live.Broker
	h      *Handler
	srv    *httptest.Server
	wsURL  string
}

func newEnv(t *testing.T, bcfg live.Config, mod func(*Config)) *env {
	t.Helper()
	e := &env{t: t, broker: live.New(bcfg)}
	mux := http.NewServeMux()
	e.srv = httptest.NewUnstartedServer(mux)
	e.srv.Start()
	cfg := Config{Broker: e.broker, Authenticate: fakeAuth, PublicURL: e.srv.URL + "/ui/",
		AllowedOrigins: []string{"https://dash.example"}}
	if mod != nil {
		mod(&cfg)
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.h = h
	mux.Handle("GET /v1/live", h)
	mux.Handle("GET /api/v1/devices/{id}/recent", NewRecentHandler(e.broker, fakeAuth))
	e.wsURL = "ws" + strings.TrimPrefix(e.srv.URL, "http") + "/v1/live"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := h.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
		e.srv.Close()
	})
	return e
}

func (e *env) dial(origin, auth string) (*websocket.Conn, *http.Response, error) {
	hdr := http.Header{}
	if origin != "" {
		hdr.Set("Origin", origin)
	}
	if auth != "" {
		hdr.Set("Authorization", auth)
	}
	c, resp, err := websocket.DefaultDialer.Dial(e.wsURL, hdr)
	if c != nil {
		e.t.Cleanup(func() { c.Close() })
	}
	return c, resp, err
}

// client dials as the viewer and reads the hello.
func (e *env) client() *websocket.Conn {
	e.t.Helper()
	c, _, err := e.dial(e.srv.URL, "Bearer viewer")
	if err != nil {
		e.t.Fatal(err)
	}
	if m := read(e.t, c); m["type"] != "hello" || m["user"] != "alice" || m["role"] != "viewer" {
		e.t.Fatalf("hello: %v", m)
	}
	return c
}

func read(t *testing.T, c *websocket.Conn) map[string]any {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var m map[string]any
	if err := c.ReadJSON(&m); err != nil {
		t.Fatalf("read: %v", err)
	}
	return m
}

// send writes msg, then a ping, and waits for the pong: the hub handles a
// connection's messages in order, so msg has taken effect on return.
// Messages before the pong are returned.
func send(t *testing.T, c *websocket.Conn, msgs ...string) []map[string]any {
	t.Helper()
	for _, m := range append(msgs, `{"type":"ping"}`) {
		if err := c.WriteMessage(websocket.TextMessage, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	var got []map[string]any
	for {
		m := read(t, c)
		if m["type"] == "pong" {
			return got
		}
		got = append(got, m)
	}
}

func TestRefusedBeforeUpgrade(t *testing.T) {
	e := newEnv(t, live.Config{}, nil)
	cases := []struct {
		name, origin, auth string
		want               int
	}{
		{"foreign origin", "https://evil.example", "Bearer viewer", http.StatusForbidden},
		{"origin with a suffix", e.srv.URL + ".evil.example", "Bearer viewer", http.StatusForbidden},
		{"missing origin", "", "Bearer viewer", http.StatusForbidden},
		{"null origin", "null", "Bearer viewer", http.StatusForbidden},
		{"no auth", e.srv.URL, "", http.StatusUnauthorized},
		{"bad auth", "https://dash.example", "Bearer wrong", http.StatusUnauthorized},
		{"no role", e.srv.URL, "Bearer nobody", http.StatusForbidden},
	}
	for _, tc := range cases {
		c, resp, err := e.dial(tc.origin, tc.auth)
		if c != nil || !errors.Is(err, websocket.ErrBadHandshake) || resp == nil || resp.StatusCode != tc.want {
			t.Errorf("%s: conn %v err %v resp %v, want status %d and no upgrade", tc.name, c != nil, err, resp, tc.want)
		}
	}
	if got := testutil.ToFloat64(e.broker.Metrics().Subscribers); got != 0 {
		t.Errorf("a refused request subscribed: %v", got)
	}
	resp, err := http.Get(e.srv.URL + "/v1/live")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUpgradeRequired {
		t.Errorf("plain GET: %d", resp.StatusCode)
	}
	// The extra allowlisted origin gets in.
	if c, _, err := e.dial("https://dash.example", "Bearer viewer"); err != nil {
		t.Fatalf("allowlisted origin: %v", err)
	} else {
		c.Close()
	}
}

func TestFleetAndDeviceStream(t *testing.T) {
	e := newEnv(t, live.Config{MaxDeviceTopics: 1}, nil)
	c := e.client()
	if got := send(t, c, `{"type":"subscribe","topic":"fleet"}`); len(got) != 0 {
		t.Fatalf("unexpected %v", got)
	}
	now := time.Now().UnixMilli()
	for i := range 3 {
		e.broker.Publish("pi-01", &protocol.Batch{Seq: uint64(i + 1), BaseTime: now, Points: []protocol.Point{
			{Name: "cpu.usage_percent", Value: float64(10 * i)}, {Name: "mem.used_percent", Value: 40.5}}})
	}
	// Coalescing may merge the three or not; the newest value arrives.
	for {
		m := read(t, c)
		d := m["devices"].([]any)[0].(map[string]any)
		if d["id"] != "pi-01" {
			t.Fatalf("fleet: %v", m)
		}
		if d["metrics"].(map[string]any)["cpu.usage_percent"] == 20.0 {
			break
		}
	}
	send(t, c, `{"type":"unsubscribe","topic":"fleet"}`, `{"type":"subscribe","topic":"device","device":"pi-01"}`)
	got := send(t, c, `{"type":"subscribe","topic":"device","device":"pi-02"}`, `{"type":"subscribe","topic":"nope"}`, `not json`)
	if len(got) != 3 || got[0]["type"] != "error" || !strings.Contains(got[0]["error"].(string), "too many") || got[1]["type"] != "error" || got[2]["type"] != "error" {
		t.Fatalf("want 3 errors, connection open: %v", got)
	}
	e.broker.Publish("pi-01", &protocol.Batch{Seq: 9, BaseTime: now, Points: []protocol.Point{{Name: "x", Value: 1.5, Tags: map[string]string{"k": "v"}}}})
	m := read(t, c)
	pts, _ := m["points"].([]any)
	if m["type"] != "points" || m["device"] != "pi-01" || len(pts) != 1 || pts[0].(map[string]any)["v"] != 1.5 {
		t.Fatalf("points: %v", m)
	}
	e.broker.DeviceState("pi-01", false)
	if m := read(t, c); m["type"] != "device_state" || m["online"] != false {
		t.Fatalf("state: %v", m)
	}
	// After unsubscribing, nothing arrives before the pong.
	send(t, c, `{"type":"unsubscribe","topic":"device","device":"pi-01"}`)
	e.broker.Publish("pi-01", &protocol.Batch{Seq: 10, BaseTime: now, Points: []protocol.Point{{Name: "x", Value: 1.0}}})
	if got := send(t, c); len(got) != 0 {
		t.Fatalf("after unsubscribe: %v", got)
	}
}

func TestOversizedAndBinaryMessagesClose(t *testing.T) {
	e := newEnv(t, live.Config{}, nil)
	for _, tc := range []struct {
		typ  int
		data []byte
		code int
	}{
		{websocket.TextMessage, []byte(`{"type":"ping"` + strings.Repeat(" ", 4096) + `}`), websocket.CloseMessageTooBig},
		{websocket.BinaryMessage, []byte(`{"type":"ping"}`), websocket.ClosePolicyViolation},
	} {
		c := e.client()
		if err := c.WriteMessage(tc.typ, tc.data); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _, err := c.ReadMessage()
		if !websocket.IsCloseError(err, tc.code) {
			t.Errorf("want close %d, got %v", tc.code, err)
		}
	}
	// At the limit exactly is fine.
	c := e.client()
	send(t, c, `{"type":"ping"`+strings.Repeat(" ", 4096-len(`{"type":"ping"}`))+`}`)
}

// A browser that stops reading is disconnected, and publishing (ingest's
// side) never waits for it.
func TestSlowClientDisconnected(t *testing.T) {
	e := newEnv(t, live.Config{QueueLen: 1, SlowAfter: 3 * time.Millisecond, FlushInterval: time.Millisecond}, func(c *Config) {
		c.WriteTimeout = time.Minute // the broker, not the write deadline, must act
	})
	c := e.client()
	send(t, c, `{"type":"subscribe","topic":"device","device":"d"}`, `{"type":"subscribe","topic":"fleet"}`)
	// From here on the client never reads.
	pts := make([]protocol.Point, 100)
	for i := range pts {
		pts[i] = protocol.Point{Name: "cpu.usage_percent", Value: float64(i), Tags: map[string]string{"padding": strings.Repeat("p", 200)}}
	}
	tooSlow := e.broker.Metrics().Disconnects.WithLabelValues("too_slow")
	deadline := time.Now().Add(30 * time.Second)
	published := 0
	for seq := uint64(1); testutil.ToFloat64(tooSlow) == 0 || published < 100_000; seq++ {
		if time.Now().After(deadline) {
			t.Fatalf("after %d points: not disconnected, or publishing stalled", published)
		}
		e.broker.Publish("d", &protocol.Batch{Seq: seq, BaseTime: time.Now().UnixMilli(), Points: pts})
		published += len(pts)
	}
	// The hub closed the socket: the client hits the end of the stream.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, _, err := c.ReadMessage(); err != nil {
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("connection not closed by the hub")
			}
			break
		}
	}
}

func TestCloseSaysGoingAway(t *testing.T) {
	e := newEnv(t, live.Config{}, nil)
	c := e.client()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := e.h.Close(ctx); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := c.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Fatalf("want 1001, got %v", err)
	}
	if _, resp, err := e.dial(e.srv.URL, "Bearer viewer"); err == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("dial after close: %v", err)
	}
}

func TestRecentHandler(t *testing.T) {
	e := newEnv(t, live.Config{}, nil)
	now := time.Now()
	e.broker.Publish("pi-01", &protocol.Batch{Seq: 1, BaseTime: now.Add(-8 * time.Minute).UnixMilli(), Points: []protocol.Point{{Name: "cpu.usage_percent", Value: 1.0}}})
	e.broker.Publish("pi-01", &protocol.Batch{Seq: 2, BaseTime: now.UnixMilli(), Points: []protocol.Point{{Name: "cpu.usage_percent", Value: 2.0}}})
	get := func(path, auth string) (*http.Response, RecentResponse) {
		req, _ := http.NewRequest("GET", e.srv.URL+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body RecentResponse
		if resp.StatusCode == http.StatusOK {
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
		}
		return resp, body
	}
	if resp, body := get("/api/v1/devices/pi-01/recent", "Bearer viewer"); resp.StatusCode != 200 || len(body.Series) != 1 || len(body.Series[0].V) != 2 || body.WindowSeconds != 600 {
		t.Fatalf("whole window: %d %+v", resp.StatusCode, body)
	}
	if _, body := get("/api/v1/devices/pi-01/recent?since=5m", "Bearer viewer"); len(body.Series) != 1 || len(body.Series[0].V) != 1 || body.Series[0].V[0] != 2 {
		t.Fatalf("since=5m: %+v", body)
	}
	if _, body := get("/api/v1/devices/pi-09/recent", "Bearer viewer"); body.Series == nil || len(body.Series) != 0 {
		t.Fatalf("unknown device: %+v", body)
	}
	for path, want := range map[string]int{
		"/api/v1/devices/pi-01/recent?since=-1m": 400,
		"/api/v1/devices/pi-01/recent?since=x":   400,
		"/api/v1/devices/PI/recent":              400,
	} {
		if resp, _ := get(path, "Bearer viewer"); resp.StatusCode != want {
			t.Errorf("%s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	if resp, _ := get("/api/v1/devices/pi-01/recent", ""); resp.StatusCode != 401 {
		t.Errorf("no auth: %d", resp.StatusCode)
	}
	if resp, _ := get("/api/v1/devices/pi-01/recent", "Bearer nobody"); resp.StatusCode != 403 {
		t.Errorf("no role: %d", resp.StatusCode)
	}
}

func TestOrigins(t *testing.T) {
	set, err := newOriginSet("https://Hub.Example:443/fleet/", []string{"http://localhost:8080", "http://[::1]:80"})
	if err != nil {
		t.Fatal(err)
	}
	for o, want := range map[string]bool{
		"https://hub.example": true, "HTTPS://HUB.EXAMPLE": true, "https://hub.example:443": true,
		"http://hub.example": false, "https://hub.example:8443": false, "https://hub.example.evil": false,
		"http://localhost:8080": true, "http://localhost": false, "http://[::1]": true,
		"https://hub.example/x": false, "https://u@hub.example": false, "null": false, "": false,
	} {
		if got := set.allows(o); got != want {
			t.Errorf("allows(%q) = %v, want %v", o, got, want)
		}
	}
	for _, bad := range []string{"hub.example", "ftp://hub.example", "https://hub.example/path"} {
		if _, err := newOriginSet("", []string{bad}); err == nil {
			t.Errorf("allowlist entry %q accepted", bad)
		}
	}
}
