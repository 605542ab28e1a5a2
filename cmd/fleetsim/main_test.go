package main

import (
	"bytes"
	"context"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/hub/api"
	"github.com/fleetwire/fleetwire/hub/devicews"
	"github.com/fleetwire/fleetwire/hub/store"
)

// TestMain lets the test binary serve as a fleetsim child process, the
// way the real binary re-executes itself for --procs.
func TestMain(m *testing.M) {
	if cfg := os.Getenv(envChild); cfg != "" {
		os.Exit(childMain(cfg, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// countSink is the hub's telemetry sink: it counts what the ingester
// stored, per device.
type countSink struct {
	batches, points atomic.Int64
	mu              sync.Mutex
	devices         map[string]int
}

func (s *countSink) Write(_ context.Context, bs []*hub.IngestBatch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.devices == nil {
		s.devices = map[string]int{}
	}
	for _, b := range bs {
		s.batches.Add(1)
		s.points.Add(int64(len(b.Batch.Points)))
		s.devices[b.DeviceID]++
	}
	return nil
}

func (s *countSink) deviceCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.devices)
}

// testHub is an in-process hub over TLS on 127.0.0.1: SQLite store, the
// real device endpoint, ingester, command service and REST API.
type testHub struct {
	st     *store.Store
	reg    *hub.Registry
	svc    *hub.CommandService
	sink   *countSink
	url    string // https://127.0.0.1:PORT
	caFile string
	dir    string
}

func startHub(t *testing.T) *testHub {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(context.Background(), filepath.Join(dir, "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	m := hub.NewMetrics(nil)
	h := &testHub{st: st, reg: hub.NewRegistry(m), sink: &countSink{}, dir: dir}
	ing := hub.NewIngester(hub.IngestConfig{}, h.sink, m, nil)
	h.svc = hub.NewCommandService(st, h.reg, hub.NewCommandMetrics(nil), nil)
	dws := devicews.New(devicews.Config{Store: st, Registry: h.reg, Ingester: ing, Metrics: m, Commands: h.svc, PingInterval: time.Minute})
	mux := http.NewServeMux()
	mux.Handle("/v1/device", dws)
	mux.Handle("/api/", api.New(api.Config{Store: st, Sessions: h.reg, Commands: h.svc}))
	srv := httptest.NewUnstartedServer(mux)
	srv.StartTLS()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); h.svc.Run(ctx) }()
	t.Cleanup(func() {
		srv.Close()
		dws.Close(context.Background())
		cancel()
		<-done
		ing.Close(context.Background())
		st.Close()
	})
	h.url = srv.URL
	h.caFile = filepath.Join(dir, "ca.pem")
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(h.caFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return h
}

// register creates the fleet's devices in the store and writes the
// tokens file.
func (h *testHub) register(t *testing.T, cfg *Config) {
	t.Helper()
	var b strings.Builder
	for i := range cfg.Devices {
		id := cfg.deviceID(i)
		_, tok, err := h.st.CreateDevice(context.Background(), id, map[string]string{"site": "sim"})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s %s\n", id, tok)
	}
	cfg.TokensFile = filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(cfg.TokensFile, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (h *testHub) config(n int) Config {
	cfg := defaultConfig()
	cfg.Hub = "wss" + strings.TrimPrefix(h.url, "https") + "/v1/device"
	cfg.CAFile = h.caFile
	cfg.Devices = n
	cfg.Interval = 200 * time.Millisecond
	cfg.Jitter = cfg.Interval
	cfg.Ramp = 1000
	cfg.Procs = 1
	cfg.Sources = []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3")}
	return cfg
}

// running is a fleet started in the background.
type running struct {
	cancel context.CancelFunc
	done   chan struct{}
	final  *Snapshot
	err    error
	out    syncBuffer
}

func start(t *testing.T, cfg Config) *running {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan struct{})}
	go func() { defer close(r.done); r.final, r.err = Run(ctx, cfg, &r.out) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t *testing.T) *Snapshot {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(time.Minute):
		t.Fatalf("fleetsim did not stop; output:\n%s", r.out.String())
	}
	if r.err != nil {
		t.Fatalf("fleetsim: %v\n%s", r.err, r.out.String())
	}
	return r.final
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
}

// sendAndWait sends a command and waits for its final state.
func (h *testHub) sendAndWait(t *testing.T, dev, name string, args map[string]string) hub.Command {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := h.svc.Send(ctx, hub.SendRequest{DeviceID: dev, Name: name, Args: args})
	if err != nil {
		t.Fatal(err)
	}
	for !c.State.Terminal() {
		if c, err = h.svc.Wait(ctx, c.ID, c.Version); err != nil {
			t.Fatalf("wait for %s: %v", c.ID, err)
		}
	}
	return c
}

func TestFleetConnectsSendsAndAnswers(t *testing.T) {
	h := startHub(t)
	cfg := h.config(50)
	h.register(t, &cfg)
	r := start(t, cfg)
	eventually(t, "50 devices online", func() bool { return h.reg.Count() == 50 })
	eventually(t, "batches from every device stored", func() bool { return h.sink.deviceCount() == 50 && h.sink.batches.Load() >= 100 })
	eventually(t, "a progress line", func() bool { return strings.Contains(r.out.String(), "connected 50/50") })

	c := h.sendAndWait(t, cfg.deviceID(7), "say", map[string]string{"msg": "hi", "to": "all"})
	if c.State != hub.StateSucceeded || c.Stdout != "msg=hi\nto=all\n" {
		t.Fatalf("echo: %s stdout %q error %q", c.State, c.Stdout, c.Error)
	}
	final := r.stop(t)
	if final.Devices != 50 || final.AllConnected <= 0 || final.Sessions < 50 {
		t.Fatalf("final %+v", final)
	}
	if final.Acked == 0 || final.Points != final.Acked*uint64(cfg.Metrics) {
		t.Fatalf("acked %d batches, %d points", final.Acked, final.Points)
	}
	if uint64(h.sink.batches.Load()) < final.Acked {
		t.Fatalf("fleetsim counts %d acked batches, the hub stored %d", final.Acked, h.sink.batches.Load())
	}
	if final.Commands["succeeded"] != 1 || len(final.Errors) != 0 {
		t.Fatalf("commands %v errors %v", final.Commands, final.Errors)
	}
	if _, n := quantile(final.Latency, 0.5); n == 0 {
		t.Fatal("no ack latency measured")
	}
	out := r.out.String()
	for _, want := range []string{"connected 50/50", "all connected after", "ack latency", "commands answered     1 (succeeded: 1)"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestCommandModes(t *testing.T) {
	h := startHub(t)
	for _, tc := range []struct {
		mode  string
		args  map[string]string
		state hub.CommandState
		check func(hub.Command) bool
	}{
		{ModeSleep, map[string]string{"duration": "300ms"}, hub.StateSucceeded, func(c hub.Command) bool { return c.DurationMs >= 300 }},
		{ModeFail, nil, hub.StateFailed, func(c hub.Command) bool { return c.ExitCode != nil && *c.ExitCode == 1 }},
		{ModeEcho, nil, hub.StateSucceeded, func(c hub.Command) bool { return c.Stdout == "" }},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			cfg := h.config(3)
			cfg.IDPrefix = tc.mode + "-"
			cfg.Commands = tc.mode
			h.register(t, &cfg)
			r := start(t, cfg)
			eventually(t, "devices online", func() bool { return h.reg.Online(cfg.deviceID(2)) })
			c := h.sendAndWait(t, cfg.deviceID(2), "work", tc.args)
			if c.State != tc.state || !tc.check(c) {
				t.Fatalf("%s: state %s exit %v duration %dms stdout %q", tc.mode, c.State, c.ExitCode, c.DurationMs, c.Stdout)
			}
			if final := r.stop(t); final.Commands[string(tc.state)] != 1 {
				t.Fatalf("fleetsim counted %v", final.Commands)
			}
		})
	}
}

// TestProcsSplit runs the fleet in two child processes (this test binary
// re-executed, see TestMain) and checks the parent's aggregate.
func TestProcsSplit(t *testing.T) {
	h := startHub(t)
	cfg := h.config(40)
	cfg.Procs = 2
	h.register(t, &cfg)
	r := start(t, cfg)
	eventually(t, "40 devices online", func() bool { return h.reg.Count() == 40 })
	eventually(t, "the aggregate progress line", func() bool { return strings.Contains(r.out.String(), "connected 40/40") })
	final := r.stop(t)
	if final.Procs != 2 || final.Devices != 40 || final.AllConnected <= 0 || final.Acked == 0 {
		t.Fatalf("final %+v", final)
	}
	if out := r.out.String(); !strings.Contains(out, "40 devices in 2 process(es)") {
		t.Fatalf("summary:\n%s", out)
	}
}

// TestCreateDevices registers the fleet through the REST API, then runs
// again with the same tokens file: nothing is created twice.
func TestCreateDevices(t *testing.T) {
	h := startHub(t)
	admin, err := h.st.CreateAPIToken(context.Background(), "admin", hub.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	cfg := h.config(5)
	cfg.Create, cfg.APIURL, cfg.AdminToken = true, h.url, admin
	cfg.Labels = map[string]string{"site": "demo-sim"}
	cfg.TokensFile = filepath.Join(t.TempDir(), "tokens")
	r := start(t, cfg)
	eventually(t, "5 devices online", func() bool { return h.reg.Count() == 5 })
	r.stop(t)
	fi, err := os.Stat(cfg.TokensFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("tokens file: %v %v", fi, err)
	}
	d, err := h.st.GetDevice(context.Background(), cfg.deviceID(4))
	if err != nil || d.Labels["site"] != "demo-sim" {
		t.Fatalf("device %+v %v", d, err)
	}
	cfg.Devices = 6 // one more: only it is created
	r = start(t, cfg)
	eventually(t, "6 devices online", func() bool { return h.reg.Count() == 6 })
	r.stop(t)
	toks, err := readTokens(cfg.TokensFile, false)
	if err != nil || len(toks) != 6 {
		t.Fatalf("tokens %d %v", len(toks), err)
	}
	if !strings.Contains(r.out.String(), "registering 1 devices") {
		t.Fatalf("output:\n%s", r.out.String())
	}
}

func TestBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--devices", "5", "--tokens", "x"}, "--hub: required"},
		{[]string{"--hub", "https://h/v1/device", "--tokens", "x"}, `--hub: "https://h/v1/device" is not a wss:// URL`},
		{[]string{"--hub", "ws://h/v1/device", "--tokens", "x"}, "ws:// is refused unless --allow-insecure"},
		{[]string{"--hub", "wss://h/v1/device"}, "--tokens: required"},
		{[]string{"--hub", "wss://h/v1/device", "--create", "--tokens", "t"}, "--api-url: required with --create"},
		{[]string{"--hub", "wss://h/v1/device", "--create", "--tokens", "t", "--api-url", "https://h"}, "--admin-token: required"},
		{[]string{"--hub", "wss://h/v1/device", "--tokens", "x", "--devices", "0"}, "--devices: must be at least 1"},
		{[]string{"--hub", "wss://h/v1/device", "--tokens", "x", "--commands", "dance"}, `--commands: "dance" must be echo, sleep or fail`},
		{[]string{"--hub", "wss://h/v1/device", "--tokens", "x", "--jitter", "2"}, "--jitter: fraction 2 must be in 0..1"},
		{[]string{"--hub", "wss://h/v1/device", "--tokens", "x", "--jitter", "20s"}, "--jitter: 20s is longer than --interval 10s"},
		{[]string{"--hub", "wss://h/v1/device", "--tokens", "x", "--ramp", "fast"}, `--ramp: "fast" is not a positive rate`},
		{[]string{"--hub", "wss://h/v1/device", "--tokens", "x", "--source", "127.0.0.9-127.0.0.2"}, "--source: \"127.0.0.9-127.0.0.2\" is not a range"},
		{[]string{"--hub", "wss://h/v1/device", "--tokens", "x", "--source", "192.0.2.1"}, "--source: cannot use 192.0.2.1"},
		{[]string{"--hub", "wss://h/v1/device", "--tokens", "x", "--labels", "site"}, `--labels: "site" is not key=value`},
		{[]string{"--hub", "wss://h/v1/device", "--tokens", "x", "--metrics", "0"}, "--metrics: must be 1.."},
		{[]string{"--hub", "wss://h/v1/device", "--tokens", "x", "--interval", "1ms"}, "--interval: 1ms is below the 100ms minimum"},
		{[]string{"--hub", "wss://h/v1/device", "--tokens", "x", "extra"}, `unexpected argument "extra"`},
		{[]string{"--bogus"}, "unknown flag: --bogus"},
	} {
		var stderr bytes.Buffer
		m := NewMain(&stderr, &stderr)
		m.getenv = func(string) string { return "" }
		err := m.ParseFlags(tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want %q", tc.args, err, tc.want)
		}
	}
	m := NewMain(&bytes.Buffer{}, &bytes.Buffer{})
	m.getenv = func(k string) string { return map[string]string{envAdminToken: "fwa_x"}[k] }
	if err := m.ParseFlags([]string{"--hub", "wss://h/v1/device", "--create", "--tokens", "t", "--api-url", "https://h", "--source", "127.0.0.2-127.0.0.4"}); err != nil {
		t.Fatalf("good flags: %v", err)
	}
	if m.Config.AdminToken != "fwa_x" || len(m.Config.Sources) != 3 || m.Config.Jitter != m.Config.Interval {
		t.Fatalf("config %+v", m.Config)
	}
}

func TestTokensFileMissingDevices(t *testing.T) {
	cfg := defaultConfig()
	cfg.Devices = 3
	cfg.TokensFile = filepath.Join(t.TempDir(), "tokens")
	os.WriteFile(cfg.TokensFile, []byte("# fleet\nsim-0000 tokA\n\nsim-0001 tokB\n"), 0o600)
	_, err := fleetTokens(context.Background(), &cfg, t.Logf)
	if err == nil || !strings.Contains(err.Error(), "has no token for 1 of the 3 devices (first: sim-0002)") {
		t.Fatalf("got %v", err)
	}
}
