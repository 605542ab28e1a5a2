package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/hub/certs"
	"github.com/fleetwire/fleetwire/hub/devicews"
	"github.com/fleetwire/fleetwire/hub/influx/influxtest"
	"github.com/fleetwire/fleetwire/hub/store"
)

// simsPerProcess keeps each simulator process well under the 20,000 open
// files allowed per process.
const simsPerProcess = 5000

// BenchmarkIdleConnections measures the memory a real fleethub process
// (TLS, production ping interval) holds per idle device connection: its
// RSS before any device connects and once conns simulated devices (child
// processes, no telemetry) are online and have been idle for the
// measurement window. b.N is ignored: run with -benchtime 1x.
//
// With FLEETWIRE_BENCH_WAIT_GC=1 it also waits (up to 2.5 min) for the
// hub's periodic forced GC after the last connect, so heap-KiB/conn is the
// live heap rather than live + handshake garbage.
func BenchmarkIdleConnections(b *testing.B) {
	ix := influxtest.Start(b)
	for _, n := range []int{1000, 5000, 19000} {
		b.Run(fmt.Sprintf("conns=%d", n), func(b *testing.B) { benchIdle(b, ix, n) })
	}
}

func benchIdle(b *testing.B, ix *influxtest.Server, n int) {
	dir := b.TempDir()
	tokFiles := createDevices(b, filepath.Join(dir, "fleethub.db"), n)
	// The production ping interval: pings on idle links are not what we
	// measure (the harness default of 1s would add write garbage).
	h := &hubProc{t: b, dataDir: dir, addr: freeAddr(b), influx: ix,
		extra: []string{"FLEETHUB_DEVICE_PING_INTERVAL=20s"}}
	h.start()
	b.Cleanup(h.stop)
	mc := &metricsClient{h: h, c: h.client()} // one keep-alive connection for every scrape
	before := mc.mem(b)

	b.ResetTimer()
	for _, f := range tokFiles {
		b.Cleanup(startSims(b, f, h.deviceURL(), 0, "E2E_CA="+h.caFile()))
	}
	poll(b, time.Minute, "all devices registered", func() bool {
		return mc.metric("fleethub_device_connections") == float64(n)
	})
	connected := time.Now()
	time.Sleep(5 * time.Second) // the idle window being measured
	if os.Getenv("FLEETWIRE_BENCH_WAIT_GC") == "1" {
		poll(b, 150*time.Second, "a GC after the last connect", func() bool {
			return mc.metric("go_memstats_last_gc_time_seconds") > float64(connected.UnixNano())/1e9
		})
	}
	after := mc.mem(b)
	b.StopTimer()

	kib := float64(after.rss-before.rss) / 1024 / float64(n)
	b.ReportMetric(kib, "KiB/conn")
	b.ReportMetric(float64(after.rss)/(1<<20), "hub-rss-MiB")
	b.ReportMetric(float64(after.heap-before.heap)/1024/float64(n), "heap-KiB/conn")
	b.ReportMetric(float64(after.stack-before.stack)/1024/float64(n), "stack-KiB/conn")
	b.ReportMetric((after.goroutines-before.goroutines)/float64(n), "goroutines/conn")
	if d := os.Getenv("FLEETWIRE_BENCH_SAMPLES"); d != "" {
		appendSample(b, filepath.Join(d, "idle-connections.txt"), fmt.Sprintf("%d %.2f %.1f\n", n, kib, float64(after.rss)/(1<<20)))
	}
}

// createDevices registers n devices straight in the hub's SQLite file
// (before the hub starts: one REST call each would dominate the run) and
// writes their tokens, simsPerProcess to a file.
func createDevices(b *testing.B, dbPath string, n int) []string {
	_, toks := registerDevices(b, dbPath, n, func(i int) string { return fmt.Sprintf("idle-%05d", i) }, nil)
	var files []string
	for first := 0; first < n; first += simsPerProcess {
		f := filepath.Join(filepath.Dir(dbPath), fmt.Sprintf("tokens-%d", len(files)))
		if err := os.WriteFile(f, []byte(strings.Join(toks[first:min(n, first+simsPerProcess)], "\n")+"\n"), 0o600); err != nil {
			b.Fatal(err)
		}
		files = append(files, f)
	}
	return files
}

// hubMem is the hub's memory as the kernel and the Go runtime see it.
type hubMem struct {
	rss, heap, stack int64
	goroutines       float64
}

// metricsClient scrapes a hub's /metrics over one kept-alive connection
// (a client per scrape would leave connections open on the hub).
type metricsClient struct {
	h *hubProc
	c *http.Client
}

func (mc *metricsClient) mem(b *testing.B) hubMem {
	b.Helper()
	return hubMem{
		rss:        procRSS(b, mc.h.cmd.Process.Pid),
		heap:       int64(mc.metric("go_memstats_heap_inuse_bytes")),
		stack:      int64(mc.metric("go_memstats_stack_inuse_bytes")),
		goroutines: mc.metric("go_goroutines"),
	}
}

// procRSS reads VmRSS (bytes) of pid.
func procRSS(b *testing.B, pid int) int64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	b.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// metric reads one sample from the hub's /metrics, named as exposed:
// "go_goroutines", or with its labels, `name{result="admitted"}` (-1 if
// the scrape fails or the sample is missing).
func (mc *metricsClient) metric(name string) float64 {
	resp, err := mc.c.Get(mc.h.url("/metrics"))
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == name {
			v, _ := strconv.ParseFloat(f[1], 64)
			return v
		}
	}
	return -1
}

// poll checks cond every 250 ms (a scrape is not free for the hub) until
// it holds or timeout passes.
func poll(b *testing.B, timeout time.Duration, what string, cond func() bool) {
	b.Helper()
	if !waitUntil(timeout, 250*time.Millisecond, cond) {
		b.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

func appendSample(b *testing.B, path, line string) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(line); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkIdleSessionMemory is the in-process variant of
// BenchmarkIdleConnections for profiling: the device endpoint
// (hub/devicews over the hub's generated TLS config, real SQLite) runs in
// this process, the devices in child processes, so after runtime.GC the
// heap and stack growth per connection is exactly what the endpoint holds.
// With FLEETWIRE_BENCH_HEAPPROFILE=file it writes a heap profile there.
func BenchmarkIdleSessionMemory(b *testing.B) {
	const n = 5000
	dir := b.TempDir()
	tokFiles := createDevices(b, filepath.Join(dir, "fleethub.db"), n)
	st, err := store.Open(context.Background(), filepath.Join(dir, "fleethub.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	tlsCfg, info, err := certs.Load(dir, "", "", []string{"127.0.0.1"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	m := hub.NewMetrics(nil)
	reg := hub.NewRegistry(m)
	ing := hub.NewIngester(hub.IngestConfig{}, discard{}, m, nil)
	h := devicews.New(devicews.Config{Store: st, Registry: reg, Ingester: ing, Metrics: m})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	// Not httptest: its StartTLS would put its own certificate first.
	srv := &http.Server{Handler: h}
	go srv.Serve(tls.NewListener(ln, tlsCfg))
	b.Cleanup(func() {
		srv.Close()
		h.Close(context.Background())
		ing.Close(context.Background())
	})
	url := "wss://" + ln.Addr().String() + "/v1/device"
	profile := os.Getenv("FLEETWIRE_BENCH_HEAPPROFILE")
	if profile != "" {
		runtime.MemProfileRate = 512 // fine enough to account per connection
	}
	before := gcMem()
	b.ResetTimer()
	for _, f := range tokFiles {
		b.Cleanup(startSims(b, f, url, 0, "E2E_CA="+info.CAFile))
	}
	poll(b, time.Minute, "all devices registered", func() bool { return reg.Count() == n })
	after := gcMem()
	b.StopTimer()
	b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/1024/n, "heap-KiB/conn")
	b.ReportMetric(float64(after.StackInuse-before.StackInuse)/1024/n, "stack-KiB/conn")
	b.ReportMetric(float64(runtime.NumGoroutine())/n, "goroutines/conn")
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// gcMem collects twice (the second pass also frees what finalizers and
// the first pass's stack shrinking released) and reads the memory stats.
func gcMem() runtime.MemStats {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms
}
