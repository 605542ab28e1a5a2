// Package e2e runs the real programs together: influxd, fleethub (as a
// subprocess, so it can be SIGKILLed), agents (in-process on the real
// agent packages, or as subprocesses) over TLS on loopback.
package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/agent"
	"github.com/fleetwire/fleetwire/agent/collect"
	"github.com/fleetwire/fleetwire/agent/command"
	"github.com/fleetwire/fleetwire/agent/link"
	"github.com/fleetwire/fleetwire/agent/spool"
	"github.com/fleetwire/fleetwire/agent/trust"
	"github.com/fleetwire/fleetwire/hub/influx/influxtest"
	"github.com/fleetwire/fleetwire/protocol"
)

// bins holds the programs built once for the whole package.
var bins struct{ dir, hub, agent, ctl, sim string }

func TestMain(m *testing.M) {
	if os.Getenv(envDeviceProc) != "" {
		os.Exit(deviceProcMain())
	}
	if os.Getenv(envSims) != "" {
		os.Exit(simsMain())
	}
	dir, err := os.MkdirTemp("", "fleetwire-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := 1
	if err := buildPrograms(dir); err != nil {
		fmt.Fprintln(os.Stderr, "build programs:", err)
	} else {
		code = m.Run()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

func buildPrograms(dir string) error {
	bins.dir = dir
	bins.hub, bins.agent, bins.ctl = filepath.Join(dir, "fleethub"), filepath.Join(dir, "fleetagent"), filepath.Join(dir, "fleetctl")
	bins.sim = filepath.Join(dir, "fleetsim")
	cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/fleethub", "./cmd/fleetagent", "./cmd/fleetctl", "./cmd/fleetsim")
	cmd.Dir = repoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v\n%s", err, out)
	}
	return nil
}

// eventually polls cond every 20 ms until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !waitUntil(timeout, 20*time.Millisecond, cond) {
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

// waitUntil checks cond every interval until it holds (true) or timeout
// passes (false).
func waitUntil(timeout, every time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(every) // the polling interval
	}
	return true
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// hubProc is a fleethub subprocess.
type hubProc struct {
	t       testing.TB
	dataDir string
	addr    string
	influx  *influxtest.Server
	extra   []string
	quiet   bool // log at info instead of debug (load benchmarks)

	cmd   *exec.Cmd
	done  chan struct{}
	log   *os.File
	token string
}

func startHub(t testing.TB, ix *influxtest.Server, extraEnv ...string) *hubProc {
	t.Helper()
	h := &hubProc{t: t, dataDir: t.TempDir(), addr: freeAddr(t), influx: ix, extra: extraEnv}
	h.start()
	t.Cleanup(h.stop)
	return h
}

func (h *hubProc) start() {
	t := h.t
	t.Helper()
	logf, err := os.OpenFile(filepath.Join(h.dataDir, "hub.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	h.log = logf
	level := "debug"
	if h.quiet {
		level = "info"
	}
	cmd := exec.Command(bins.hub, "--data_dir", h.dataDir, "--listen", h.addr,
		"--public_url", "https://"+h.addr, "--influx.url", h.influx.URL, "--influx.bucket", h.influx.Bucket,
		"--log.level", level)
	// Every simulated device here shares the loopback address, and the
	// fault tests make devices reconnect often on purpose: the per-address
	// cap and the flap hold-off (tested in hub/devicews) stay out of the
	// way; extraEnv can turn them back on.
	cmd.Env = append(os.Environ(), "FLEETHUB_DEVICE_PING_INTERVAL=1s", "FLEETHUB_SHUTDOWN_TIMEOUT=10s",
		"FLEETHUB_DEVICE_MAX_CONNS_PER_ADDR=0", "FLEETHUB_DEVICE_FLAP_MAX=0")
	cmd.Env = append(cmd.Env, h.extra...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start hub: %v", err)
	}
	h.cmd, h.done = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(h.done) }()
	eventually(t, 30*time.Second, "hub /healthz", func() bool {
		select {
		case <-h.done:
			t.Fatalf("hub exited at start; log:\n%s", h.logText())
		default:
		}
		resp, err := h.client().Get(h.url("/healthz"))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	tok, err := os.ReadFile(filepath.Join(h.dataDir, "admin.token"))
	if err != nil {
		t.Fatalf("admin token: %v", err)
	}
	h.token = strings.TrimSpace(string(tok))
}

func (h *hubProc) logText() string {
	b, _ := os.ReadFile(filepath.Join(h.dataDir, "hub.log"))
	return string(b)
}

func (h *hubProc) url(path string) string { return "https://" + h.addr + path }
func (h *hubProc) deviceURL() string      { return "wss://" + h.addr + "/v1/device" }
func (h *hubProc) caFile() string         { return filepath.Join(h.dataDir, "ca.pem") }

// client trusts the hub's generated CA (nothing else).
func (h *hubProc) client() *http.Client {
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(h.caFile())
	if err == nil {
		pool.AppendCertsFromPEM(pem)
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

func (h *hubProc) signal(sig syscall.Signal) {
	h.t.Helper()
	select {
	case <-h.done:
		return
	default:
	}
	_ = h.cmd.Process.Signal(sig)
	select {
	case <-h.done:
	case <-time.After(30 * time.Second):
		h.cmd.Process.Kill()
		<-h.done
		h.t.Errorf("hub did not exit on %v", sig)
	}
	h.log.Close()
}

func (h *hubProc) kill() { h.signal(syscall.SIGKILL) }
func (h *hubProc) stop() {
	h.signal(syscall.SIGTERM)
	if h.t.Failed() {
		h.t.Logf("hub log:\n%s", tail(h.logText(), 4000))
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// api calls the admin REST API and decodes the JSON answer into out.
func (h *hubProc) api(method, path string, body, out any) int {
	h.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, h.url(path), rd)
	req.Header.Set("Authorization", "Bearer "+h.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := h.client().Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			h.t.Fatalf("%s %s: decode: %v", method, path, err)
		}
	}
	return resp.StatusCode
}

// addDevice registers a device and returns its token.
func (h *hubProc) addDevice(id string, labels map[string]string) string {
	h.t.Helper()
	var out struct {
		Token string `json:"token"`
	}
	if code := h.api("POST", "/api/v1/devices", map[string]any{"id": id, "labels": labels}, &out); code != 201 {
		h.t.Fatalf("add device: HTTP %d", code)
	}
	return out.Token
}

// deviceJSON is the API's answer for one device.
type deviceJSON struct {
	Device struct {
		Online       bool   `json:"online"`
		Revoked      bool   `json:"revoked"`
		AgentVersion string `json:"agent_version"`
	} `json:"device"`
}

// testAgent is an agent running in this process on the real agent code.
type testAgent struct {
	t           testing.TB
	parts       *agentParts
	stopBatcher context.CancelFunc
	batcherDone chan struct{}
	spool       *spool.Spool
	link        *link.Link
	cancel      context.CancelFunc
	done        chan struct{}

	mu       sync.Mutex
	produced []protocol.Batch
}

type agentOpts struct {
	url        string // default the hub's device URL (a proxy in front of it, say)
	interval   time.Duration
	collectors []collect.Collector
	spoolDir   string
	commands   *command.Config
}

// agentParts is an agent built from the real packages: spool, link and
// batcher, wired as fleetagent wires them.
type agentParts struct {
	spool    *spool.Spool
	link     *link.Link
	batcher  *agent.Batcher
	executor *command.Executor // nil without commands
}

// close releases what buildAgent opened (after Run returned).
func (p *agentParts) close() {
	if p.executor != nil {
		p.executor.Close()
	}
	p.spool.Close()
}

type agentSetup struct {
	spoolDir, url, caFile, token, version string
	noSync                                bool
	interval                              time.Duration
	collectors                            []collect.Collector
	onSpooled                             func(*protocol.Batch)
	commands                              *command.Config
}

func buildAgent(c agentSetup) (*agentParts, error) {
	sp, err := spool.Open(c.spoolDir, spool.Options{MaxBytes: 64 << 20, NoSync: c.noSync})
	if err != nil {
		return nil, err
	}
	tlsCfg, err := trust.ClientConfig("127.0.0.1", c.caFile, "")
	if err != nil {
		sp.Close()
		return nil, err
	}
	parts := &agentParts{spool: sp}
	lcfg := link.Config{
		URL: c.url, Token: c.token, TLS: tlsCfg, Spool: sp,
		Hello:      protocol.Hello{AgentVersion: c.version, BootID: "e2e"},
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond,
	}
	if c.commands != nil {
		lcfg.OnCommand = func(cmd protocol.Command) { parts.executor.Handle(cmd) }
	}
	lk, err := link.New(lcfg)
	if err != nil {
		sp.Close()
		return nil, err
	}
	parts.link = lk
	if c.commands != nil {
		parts.executor, err = command.New(*c.commands, command.Builtins{}, lk.SendResult, nil)
		if err != nil {
			sp.Close()
			return nil, err
		}
	}
	b, err := agent.NewBatcher(agent.Options{
		Interval: c.interval, Collectors: c.collectors, Spool: sp, OnSpooled: c.onSpooled, HubMaxPoints: lk.MaxBatchPoints,
	})
	if err != nil {
		parts.close()
		return nil, err
	}
	parts.batcher = b
	return parts, nil
}

func startAgent(t testing.TB, h *hubProc, token string, o agentOpts) *testAgent {
	t.Helper()
	if o.spoolDir == "" {
		o.spoolDir = t.TempDir()
	}
	a := &testAgent{t: t, done: make(chan struct{})}
	if o.url == "" {
		o.url = h.deviceURL()
	}
	parts, err := buildAgent(agentSetup{
		spoolDir: o.spoolDir, url: o.url, caFile: h.caFile(), token: token, version: "e2e",
		noSync: true, interval: o.interval, collectors: o.collectors, onSpooled: a.record,
		commands: o.commands,
	})
	if err != nil {
		t.Fatal(err)
	}
	a.parts, a.spool, a.link = parts, parts.spool, parts.link
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	bctx, bcancel := context.WithCancel(ctx)
	a.stopBatcher = bcancel
	a.batcherDone = make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); parts.link.Run(ctx) }()
	go func() { defer wg.Done(); defer close(a.batcherDone); parts.batcher.Run(bctx) }()
	go func() { wg.Wait(); close(a.done) }()
	t.Cleanup(a.stop)
	return a
}

// record keeps a deep copy of each spooled batch: the expected data.
func (a *testAgent) record(b *protocol.Batch) {
	c := *b
	c.Points = append([]protocol.Point(nil), b.Points...)
	a.mu.Lock()
	a.produced = append(a.produced, c)
	a.mu.Unlock()
}

func (a *testAgent) batches() []protocol.Batch {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]protocol.Batch(nil), a.produced...)
}

// stop ends the agent (idempotent).
func (a *testAgent) stop() {
	select {
	case <-a.done:
		return
	default:
	}
	a.cancel()
	<-a.done
	a.parts.close()
}

// finish stops producing, waits until the hub has acked everything
// produced, then stops the agent: afterwards the produced set is final and
// all of it must be stored.
func (a *testAgent) finish(t *testing.T) {
	t.Helper()
	a.stopBatcher()
	<-a.batcherDone
	eventually(t, 30*time.Second, "the last batches acked", a.drained)
	a.stop()
}

// drained reports whether the hub acked every spooled batch.
func (a *testAgent) drained() bool { return a.spool.Stats().Batches == 0 }

// counter is a deterministic collector: point n carries n.
type counter struct {
	mu sync.Mutex
	n  int64
}

func (c *counter) Name() string { return "counter" }
func (c *counter) Collect(context.Context) ([]protocol.Point, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	return []protocol.Point{
		{Name: "e2e.n", Value: c.n},
		{Name: "e2e.third", Value: float64(c.n) / 3, Tags: map[string]string{"kind": "gauge"}},
	}, nil
}

// storedPoint is one value read back from InfluxDB.
type storedPoint struct {
	key   string
	value any
}

// pointKey identifies a point the way InfluxDB does: series + time.
func pointKey(measurement, field string, tags map[string]string, ms int64) string {
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "%s/%s@%d", measurement, field, ms)
	for _, k := range keys {
		fmt.Fprintf(&b, ",%s=%s", k, tags[k])
	}
	return b.String()
}

// expected turns produced batches into key -> value the hub must store.
func expected(device string, labels map[string]string, batches []protocol.Batch) map[string]any {
	want := map[string]any{}
	for _, b := range batches {
		for _, p := range b.Points {
			tags := protocol.StoredTags(b.Tags, p.Tags, labels, device)
			m, f := protocol.SplitName(p.Name)
			want[pointKey(m, f, tags, b.BaseTime+p.DT)] = normalize(p.Value)
		}
	}
	return want
}

func normalize(v any) any {
	switch x := v.(type) {
	case uint64:
		return int64(x)
	case int:
		return int64(x)
	case float32:
		return float64(x)
	}
	return v
}

// stored reads every point of device back from InfluxDB with Flux.
func stored(t testing.TB, ix *influxtest.Server, device string) []storedPoint {
	t.Helper()
	q := fmt.Sprintf(`from(bucket: %q) |> range(start: 2000-01-01T00:00:00Z) |> filter(fn: (r) => r.device == %q)`, ix.Bucket, device)
	var out []storedPoint
	for _, rec := range ix.Query(t, q) {
		tags := map[string]string{}
		for k, v := range rec {
			if strings.HasPrefix(k, "_") || k == "result" || k == "table" {
				continue
			}
			if s, ok := v.(string); ok {
				tags[k] = s
			}
		}
		ts, _ := rec["_time"].(time.Time)
		key := pointKey(fmt.Sprint(rec["_measurement"]), fmt.Sprint(rec["_field"]), tags, ts.UnixMilli())
		out = append(out, storedPoint{key: key, value: normalize(rec["_value"])})
	}
	return out
}

// checkExactlyOnce asserts InfluxDB holds exactly the produced points of
// device: each once, same value, same time; nothing else.
func checkExactlyOnce(t testing.TB, ix *influxtest.Server, device string, labels map[string]string, batches []protocol.Batch) {
	t.Helper()
	want := expected(device, labels, batches)
	produced := 0
	for _, b := range batches {
		produced += len(b.Points)
	}
	if produced != len(want) {
		// InfluxDB keeps one point per series and time: the agent must
		// never give two readings of a series the same millisecond.
		t.Errorf("%s produced %d points but only %d distinct series and times", device, produced, len(want))
	}
	got := stored(t, ix, device)
	seen := map[string]bool{}
	for _, p := range got {
		if seen[p.key] {
			t.Errorf("duplicate point %s", p.key)
		}
		seen[p.key] = true
		w, ok := want[p.key]
		if !ok {
			t.Errorf("unexpected point %s = %v", p.key, p.value)
			continue
		}
		if w != p.value {
			t.Errorf("point %s = %v (%T), want %v (%T)", p.key, p.value, p.value, w, w)
		}
	}
	missing := 0
	for k := range want {
		if !seen[k] {
			missing++
			if missing <= 5 {
				t.Errorf("missing point %s", k)
			}
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d produced points missing", missing, len(want))
	}
	t.Logf("%d produced points, %d stored", len(want), len(got))
}
