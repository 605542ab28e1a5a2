package main

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/fleetwire/fleetwire/agent/trust"
	"github.com/fleetwire/fleetwire/hub/influx/influxtest"
	"github.com/fleetwire/fleetwire/hub/store"
	"github.com/fleetwire/fleetwire/protocol"
)

// syncBuf collects the hub's output while it runs.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestShutdownClosesSessionsAndLeaksNothing runs the whole hub in-process,
// connects a device, cancels the hub's context and checks that the device
// got "going away", Run returned, and no goroutine outlives the hub.
func TestShutdownClosesSessionsAndLeaksNothing(t *testing.T) {
	ix := influxtest.Start(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := t.TempDir()
	// Register a device before the hub starts (same SQLite file).
	st, err := store.Open(context.Background(), filepath.Join(dir, "fleethub.db"))
	if err != nil {
		t.Fatal(err)
	}
	_, token, err := st.CreateDevice(context.Background(), "pi-shutdown", nil)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()

	var out, logs syncBuf
	m := NewMain(&out, &logs)
	if err := m.ParseFlags([]string{"--data_dir", dir, "--listen", "127.0.0.1:0", "--influx.url", ix.URL, "--influx.bucket", ix.Bucket}); err != nil {
		t.Fatal(err)
	}
	started := make(chan *Server, 1)
	m.Started = func(s *Server) { started <- s }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	var srv *Server
	select {
	case srv = <-started:
	case err := <-done:
		t.Fatalf("hub exited: %v\n%s", err, logs.String())
	}
	if !strings.Contains(out.String(), "fwa_") {
		t.Errorf("first start did not print the admin token:\n%s", out.String())
	}

	tlsCfg, err := trust.ClientConfig("127.0.0.1", srv.CAFile(), "")
	if err != nil {
		t.Fatal(err)
	}
	d := websocket.Dialer{TLSClientConfig: tlsCfg, Subprotocols: []string{protocol.Subprotocol}}
	url := strings.Replace(srv.URL(), "https://", "wss://", 1) + "/v1/device"
	c, _, err := d.Dial(url, map[string][]string{"Authorization": {"Bearer " + token}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	hello, _ := protocol.Encode(&protocol.Hello{AgentVersion: "t", ProtocolVersion: protocol.Version})
	c.WriteMessage(websocket.BinaryMessage, hello)
	if _, _, err := c.ReadMessage(); err != nil {
		t.Fatalf("welcome: %v", err)
	}

	cancel()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _, err = c.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != int(protocol.CloseGoingAway) {
		t.Fatalf("device got %v, want close %d", err, protocol.CloseGoingAway)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("hub did not stop")
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--listen", "nope"}, "listen"},
		{[]string{"--influx.url", "::"}, "influx.url"},
		{[]string{"--public_url", "ftp://x"}, "public_url"},
	} {
		m := NewMain(&bytes.Buffer{}, &bytes.Buffer{})
		err := m.ParseFlags(append(tc.args, "--data_dir", t.TempDir()))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want it to name %q", tc.args, err, tc.want)
		}
	}
}

// TestDeployExampleLoads keeps deploy/fleethub.yaml a valid config.
func TestDeployExampleLoads(t *testing.T) {
	m := NewMain(&bytes.Buffer{}, &bytes.Buffer{})
	if err := m.ParseFlags([]string{"--config", "../../deploy/fleethub.yaml"}); err != nil {
		t.Fatalf("deploy/fleethub.yaml: %v", err)
	}
	if m.Config.Influx.Bucket != "fleet/autogen" {
		t.Fatalf("unexpected example values: %+v", m.Config)
	}
}

// TestDashboardLimitKeys: the live-socket limits are config keys whose
// errors name them (their behaviour at the edge is tested in hub/live and
// hub/dashws).
func TestDashboardLimitKeys(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{"dashboard:\n  max_device_topics: 0\n", "dashboard.max_device_topics"},
		{"dashboard:\n  max_pending_points: 99\n", "dashboard.max_pending_points"},
		{"dashboard:\n  slow_after: 10ms\n", "dashboard.slow_after"},
	} {
		m := NewMain(&bytes.Buffer{}, &bytes.Buffer{})
		err := m.ParseFlags([]string{"--config", writeConfig(t, tc.body), "--data_dir", t.TempDir()})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want it to name %q", tc.body, err, tc.want)
		}
	}
	m := NewMain(&bytes.Buffer{}, &bytes.Buffer{})
	if err := m.ParseFlags([]string{"--config", writeConfig(t, "dashboard:\n  max_device_topics: 8\n  slow_after: 2s\n"), "--data_dir", t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	if d := m.Config.Dashboard; d.MaxDeviceTopics != 8 || d.SlowAfter != 2*time.Second || d.MaxPendingPoints != 10_000 {
		t.Errorf("loaded %+v", d)
	}
}
