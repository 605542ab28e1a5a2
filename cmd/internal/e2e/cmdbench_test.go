package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/hub/dashws"
	"github.com/fleetwire/fleetwire/hub/devicews"
	"github.com/fleetwire/fleetwire/hub/live"
	"github.com/fleetwire/fleetwire/hub/store"
	"github.com/fleetwire/fleetwire/protocol"
)

// envSims makes the test binary run as a process of simulated devices
// that answer every command at once (see simsMain).
const envSims = "FLEETWIRE_E2E_SIMS"

// simsMain connects one WebSocket per token in $E2E_TOKENS to $E2E_URL,
// spreading source addresses over 127.0.0.2.. (5,000 per address), and
// answers each command with received + succeeded. It prints "ready" once
// all are connected and runs until killed.
func simsMain() int {
	data, err := os.ReadFile(os.Getenv("E2E_TOKENS"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	tokens := strings.Fields(string(data))
	url := os.Getenv("E2E_URL")
	rate, _ := time.ParseDuration(os.Getenv("E2E_SIM_RATE")) // 0: no telemetry
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64) // connect 64 at a time
	for i, tok := range tokens {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int, tok string) {
			defer wg.Done()
			c, err := simDial(url, tok, net.IPv4(127, 0, 0, byte(2+i/5000)))
			<-sem
			if err != nil {
				fmt.Fprintln(os.Stderr, "sim dial:", err)
				os.Exit(1)
			}
			go simServe(c, rate)
		}(i, tok)
	}
	wg.Wait()
	openDashboards(url)
	fmt.Println("ready")
	select {}
}

// openDashboards opens $E2E_DASHBOARDS live sockets subscribed to the
// fleet topic and drains them, like browsers left open on the overview.
func openDashboards(deviceURL string) {
	var n int
	fmt.Sscan(os.Getenv("E2E_DASHBOARDS"), &n)
	base := "http" + strings.TrimPrefix(strings.TrimSuffix(deviceURL, "/v1/device"), "ws")
	for i := 0; i < n; i++ {
		d := websocket.Dialer{HandshakeTimeout: 30 * time.Second}
		c, _, err := d.Dial(strings.Replace(base, "http", "ws", 1)+"/v1/live", http.Header{"Origin": {base}})
		if err != nil {
			fmt.Fprintln(os.Stderr, "dashboard dial:", err)
			os.Exit(1)
		}
		c.WriteJSON(map[string]string{"type": "subscribe", "topic": "fleet"})
		go func() {
			for {
				if _, _, err := c.NextReader(); err != nil {
					return
				}
			}
		}()
	}
}

// simTLS trusts the CA in $E2E_CA (a wss:// hub), or nothing extra.
var simTLS = sync.OnceValue(func() *tls.Config {
	pem, err := os.ReadFile(os.Getenv("E2E_CA"))
	if err != nil {
		return nil
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &tls.Config{RootCAs: pool}
})

func simDial(url, token string, src net.IP) (*websocket.Conn, error) {
	nd := &net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 30 * time.Second}
	d := websocket.Dialer{NetDialContext: nd.DialContext, Subprotocols: []string{protocol.Subprotocol},
		HandshakeTimeout: 30 * time.Second, ReadBufferSize: 1024, WriteBufferSize: 1024, TLSClientConfig: simTLS()}
	c, _, err := d.Dial(url, http.Header{"Authorization": {"Bearer " + token}})
	if err != nil {
		return nil, err
	}
	hello, _ := protocol.Encode(&protocol.Hello{AgentVersion: "sim", ProtocolVersion: protocol.Version})
	if err := c.WriteMessage(websocket.BinaryMessage, hello); err != nil {
		return nil, err
	}
	if _, _, err := c.ReadMessage(); err != nil { // welcome
		return nil, err
	}
	return c, nil
}

func simServe(c *websocket.Conn, rate time.Duration) {
	var mu sync.Mutex // one writer at a time: telemetry and command results
	write := func(msg any) {
		data, _ := protocol.Encode(msg)
		mu.Lock()
		c.WriteMessage(websocket.BinaryMessage, data)
		mu.Unlock()
	}
	if rate > 0 {
		go simTelemetry(rate, write)
	}
	for {
		_, data, err := c.ReadMessage()
		if err != nil {
			os.Exit(0) // the hub went away: the benchmark is over
		}
		msg, err := protocol.Decode(data, 0)
		if err != nil {
			continue
		}
		if cmd, ok := msg.(*protocol.Command); ok {
			for _, st := range []string{"received", "succeeded"} {
				write(&protocol.CommandResult{ID: cmd.ID, State: st, Stdout: []byte("pong\n")})
			}
		}
	}
}

// simTelemetry sends one small batch per tick, stamped with the send time
// (the hub acks; the window of 64 is never reached at these rates).
func simTelemetry(rate time.Duration, write func(any)) {
	// Spread the fleet over the tick instead of sending in lockstep.
	time.Sleep(time.Duration(rand.Int64N(int64(rate)))) // jitter, not a wait for a condition
	t := time.NewTicker(rate)
	for seq := uint64(1); ; seq++ {
		write(&protocol.Batch{Seq: seq, BaseTime: time.Now().UnixMilli(), Points: []protocol.Point{
			{Name: "cpu.usage_percent", Value: float64(seq % 100)},
			{Name: "mem.used_percent", Value: 42.0},
		}})
		<-t.C
	}
}

// cmdBench is an in-process hub (real SQLite, command service, device
// endpoint) with n simulated devices in a child process.
type cmdBench struct {
	svc *hub.CommandService
	ids []string
	url string
}

func startCmdBench(b *testing.B, n int) *cmdBench { return startBench(b, n, 0) }

func startBench(b *testing.B, n int, rate time.Duration, env ...string) *cmdBench {
	b.Helper()
	dir := b.TempDir()
	st, err := store.Open(context.Background(), filepath.Join(dir, "hub.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	var tokens strings.Builder
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("sim-%05d", i)
		_, tok, err := st.CreateDevice(context.Background(), ids[i], map[string]string{"fleet": "bench"})
		if err != nil {
			b.Fatal(err)
		}
		tokens.WriteString(tok + "\n")
	}
	tokFile := filepath.Join(dir, "tokens")
	os.WriteFile(tokFile, []byte(tokens.String()), 0o600)

	m := hub.NewMetrics(nil)
	reg := hub.NewRegistry(m)
	ing := hub.NewIngester(hub.IngestConfig{}, discard{}, m, nil)
	svc := hub.NewCommandService(st, reg, hub.NewCommandMetrics(nil), nil)
	broker := live.New(live.Config{})
	reg.OnPresence(broker.DeviceState)
	h := devicews.New(devicews.Config{Store: st, Registry: reg, Ingester: ing, Metrics: m, Commands: svc, Live: broker, PingInterval: time.Minute})
	mux := http.NewServeMux()
	mux.Handle("/v1/device", h)
	srv := httptest.NewServer(mux)
	viewer := func(*http.Request) (string, hub.Role, error) { return "bench", hub.RoleViewer, nil }
	lh, err := dashws.New(dashws.Config{Broker: broker, Authenticate: viewer, PublicURL: srv.URL})
	if err != nil {
		b.Fatal(err)
	}
	mux.Handle("/v1/live", lh)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); svc.Run(ctx) }()

	b.Cleanup(func() {
		srv.Close()
		lh.Close(context.Background())
		h.Close(context.Background())
		cancel()
		<-done
		ing.Close(context.Background())
	})
	b.Cleanup(startSims(b, tokFile, "ws"+strings.TrimPrefix(srv.URL, "http")+"/v1/device", rate, env...)) // runs first
	eventually(b, time.Minute, "all devices online", func() bool { return reg.Count() == n })
	return &cmdBench{svc: svc, ids: ids, url: srv.URL}
}

// startSims runs the simulated devices (simsMain) for the tokens in
// tokFile against the device endpoint url, sending telemetry every rate (0:
// none), and returns once all are connected; the returned func kills them.
func startSims(b testing.TB, tokFile, url string, rate time.Duration, env ...string) (stop func()) {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envSims+"=1", "E2E_TOKENS="+tokFile, "E2E_URL="+url, "E2E_SIM_RATE="+rate.String())
	cmd.Env = append(cmd.Env, env...)
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	stop = func() { cmd.Process.Kill(); cmd.Wait() }
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		stop()
		b.Fatalf("simulators: %q", line)
	}
	return stop
}

type discard struct{}

func (discard) Write(context.Context, []*hub.IngestBatch) error { return nil }

// roundTrip sends ping to a device and waits for its final state.
func (cb *cmdBench) roundTrip(b *testing.B, id string) time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	c, err := cb.svc.Send(ctx, hub.SendRequest{DeviceID: id, Name: "ping"})
	if err != nil {
		b.Fatal(err)
	}
	for !c.State.Terminal() {
		if c, err = cb.svc.Wait(ctx, c.ID, c.Version); err != nil {
			b.Fatalf("wait %s: %v (state %s)", c.ID, err, c.State)
		}
	}
	if c.State != hub.StateSucceeded {
		b.Fatalf("command %s: %s", c.ID, c.State)
	}
	return time.Since(start)
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

// BenchmarkCommandRoundTrip: ping to one online device at a time, from
// Send to the stored succeeded result, with n devices connected.
func BenchmarkCommandRoundTrip(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) {
			cb := startCmdBench(b, n)
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				lat = append(lat, cb.roundTrip(b, cb.ids[(i*7919)%n]))
			}
			reportLatency(b, lat, fmt.Sprintf("command-rtt-%d", n))
		})
	}
}

// BenchmarkBulkSend: one bulk ping to every one of n connected devices,
// from SendBulk until every command is final.
func BenchmarkBulkSend(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) {
			cb := startCmdBench(b, n)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				ctx := context.Background()
				st, err := cb.svc.SendBulk(ctx, hub.SendRequest{Selector: map[string]string{"fleet": "bench"}, Name: "ping"})
				if err != nil {
					b.Fatal(err)
				}
				for !st.Done {
					time.Sleep(50 * time.Millisecond) // polling interval of the progress display
					if st, err = cb.svc.Bulk(ctx, st.BulkID); err != nil {
						b.Fatal(err)
					}
				}
				if st.ByState[hub.StateSucceeded] != n {
					b.Fatalf("bulk outcomes %v", st.ByState)
				}
			}
			b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/bulk")
		})
	}
}

// BenchmarkDeviceToBrowser: n simulated devices each send a batch per
// second; a dashboard client subscribed to 64 device topics (the per-socket
// limit) measures, for every point it receives, the time from the device's
// timestamp to its arrival on the live socket (not including the page's
// rendering: see BenchmarkDeviceToRender). b.N is the number of samples.
func BenchmarkDeviceToBrowser(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) {
			cb := startBench(b, n, time.Second)
			d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
			ws, _, err := d.Dial("ws"+strings.TrimPrefix(cb.url, "http")+"/v1/live", http.Header{"Origin": {cb.url}})
			if err != nil {
				b.Fatal(err)
			}
			defer ws.Close()
			for _, id := range cb.ids[:64] {
				ws.WriteJSON(map[string]string{"type": "subscribe", "topic": "device", "device": id})
			}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for len(lat) < b.N {
				var msg struct {
					Type   string `json:"type"`
					Points []struct {
						T int64 `json:"t"`
					} `json:"points"`
				}
				ws.SetReadDeadline(time.Now().Add(30 * time.Second))
				if err := ws.ReadJSON(&msg); err != nil {
					b.Fatal(err)
				}
				now := time.Now().UnixMilli()
				for _, p := range msg.Points {
					lat = append(lat, time.Duration(now-p.T)*time.Millisecond)
				}
			}
			reportLatency(b, lat, fmt.Sprintf("device-to-browser-%d", n))
		})
	}
}

// reportLatency reports p50-ms and p99-ms and, when
// $FLEETWIRE_BENCH_SAMPLES names a directory (make bench sets it), writes
// every sample in ms, one per line, to <dir>/<name>.txt for the plots.
func reportLatency(b *testing.B, lat []time.Duration, name string) {
	b.Helper()
	b.ReportMetric(float64(percentile(lat, 0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
	dir := os.Getenv("FLEETWIRE_BENCH_SAMPLES")
	if dir == "" {
		return
	}
	var sb strings.Builder
	for _, d := range lat {
		fmt.Fprintf(&sb, "%.3f\n", float64(d.Microseconds())/1000)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".txt"), []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkDashboardCost: hub CPU (% of one core) and Go heap with 1,000
// devices at 1 Hz and D dashboards open on the fleet overview (the
// dashboards run in the child process, so this process's usage is the
// hub's). Compare dashboards=0 with dashboards=50 for the cost of one.
func BenchmarkDashboardCost(b *testing.B) {
	for _, dashboards := range []int{0, 50} {
		b.Run(fmt.Sprintf("dashboards=%d", dashboards), func(b *testing.B) {
			startBench(b, 1000, time.Second, fmt.Sprintf("E2E_DASHBOARDS=%d", dashboards))
			time.Sleep(3 * time.Second) // warm-up: every device has reported a few times
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				before := cpuTime()
				time.Sleep(10 * time.Second) // the measurement window
				b.ReportMetric(100*(cpuTime()-before).Seconds()/10, "cpu-%core")
			}
			var ms runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&ms)
			b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MiB")
		})
	}
}

// cpuTime is this process's user + system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
