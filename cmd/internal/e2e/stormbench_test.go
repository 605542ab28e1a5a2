package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/hub/influx/influxtest"
	"github.com/fleetwire/fleetwire/hub/store"
)

// BenchmarkReconnectStorm: 10,000 fleetsim devices (the agent's real link
// with its jittered backoff and Retry-After handling, over TLS from two
// source addresses) are connected to a real fleethub; the hub is stopped
// gracefully (devices get "going away") and started again on the same
// data and address. Reported: seconds from the new hub answering /healthz
// until every device is back (s-all-back) and from the stop signal
// (s-restart-to-all), the highest admission rate seen in 250 ms scrapes
// of fleethub_device_accepts_total (peak-accepts/s), the devices told to
// come back later by the accept-rate limit (limited), and the hub's
// goroutines once all are back minus before the restart
// (goroutines-delta). b.N is ignored: run with -benchtime 1x.
func BenchmarkReconnectStorm(b *testing.B) {
	const n = 10000
	ix := influxtest.Start(b)
	dir := b.TempDir()
	tokens := filepath.Join(dir, "tokens")
	registerFleet(b, filepath.Join(dir, "fleethub.db"), tokens, "storm-", n)
	h := &hubProc{t: b, dataDir: dir, addr: freeAddr(b), influx: ix, quiet: true, extra: append([]string{"FLEETHUB_DEVICE_PING_INTERVAL=20s"}, strings.Fields(os.Getenv("FLEETWIRE_STORM_HUB_ENV"))...)}
	h.start()
	b.Cleanup(func() { h.stop() })

	sim := exec.Command(bins.sim, "--hub", h.deviceURL(), "--ca-file", h.caFile(), "--devices", strconv.Itoa(n),
		"--id-prefix", "storm-", "--tokens", tokens, "--interval", "30s", "--metrics", "4", "--ramp", "2000/s",
		"--source", "127.0.0.2-127.0.0.3", "--work-dir", filepath.Join(dir, "sim"))
	simLog, err := os.Create(filepath.Join(dir, "fleetsim.log"))
	if err != nil {
		b.Fatal(err)
	}
	sim.Stdout, sim.Stderr = simLog, simLog
	if err := sim.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		sim.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { sim.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			sim.Process.Kill()
			<-done
		}
		simLog.Close()
		if b.Failed() {
			log, _ := os.ReadFile(simLog.Name())
			b.Logf("fleetsim log:\n%s", tail(string(log), 3000))
		}
	})

	mc := &metricsClient{h: h, c: h.client()}
	poll(b, 3*time.Minute, "all devices connected", func() bool { return mc.metric("fleethub_device_connections") == n })
	// The baseline: once the goroutine count has settled (handshake and
	// first-report goroutines have ended: two scrapes in a row within 0.1%).
	var baseGoroutines float64
	poll(b, time.Minute, "goroutines settled", func() bool {
		prev := baseGoroutines
		baseGoroutines = mc.metric("go_goroutines")
		return prev > 0 && baseGoroutines > 0 && baseGoroutines <= prev*1.001 && baseGoroutines >= prev*0.999
	})

	b.ResetTimer()
	stopAt := time.Now()
	h.stop()
	mc.c.CloseIdleConnections()
	h.start()
	upAt := time.Now()
	mc = &metricsClient{h: h, c: h.client()}
	var peak, last float64
	lastAt := upAt
	var timeline strings.Builder // connections every second, for the log
	nextMark := upAt
	poll(b, 2*time.Minute, "all devices back", func() bool {
		adm := mc.metric(`fleethub_device_accepts_total{result="admitted"}`)
		now := time.Now()
		if adm >= 0 {
			peak = max(peak, (adm-last)/now.Sub(lastAt).Seconds())
			last, lastAt = adm, now
		}
		conns := mc.metric("fleethub_device_connections")
		if !now.Before(nextMark) {
			fmt.Fprintf(&timeline, " %.0fs:%.0f", now.Sub(upAt).Seconds(), conns)
			nextMark = nextMark.Add(time.Second)
		}
		return conns == n
	})
	b.Logf("connections after the restart:%s", timeline.String())
	allBack := time.Now()
	b.StopTimer()
	limited := mc.metric(`fleethub_device_accepts_total{result="limited"}`)

	// Goroutines back to what n connected devices need: poll until within
	// 1% of the baseline (handshake and retry goroutines have ended); the
	// delta is reported either way.
	var g float64
	waitUntil(30*time.Second, 250*time.Millisecond, func() bool {
		g = mc.metric("go_goroutines")
		return g <= baseGoroutines*1.01
	})
	b.ReportMetric(allBack.Sub(upAt).Seconds(), "s-all-back")
	b.ReportMetric(allBack.Sub(stopAt).Seconds(), "s-restart-to-all")
	b.ReportMetric(peak, "peak-accepts/s")
	b.ReportMetric(max(limited, 0), "limited")
	b.ReportMetric(g-baseGoroutines, "goroutines-delta")
}

// registerFleet registers n devices prefix0000.. (fleetsim's numbering)
// and writes "id token" lines (fleetsim's --tokens format) to tokensFile.
func registerFleet(b *testing.B, dbPath, tokensFile, prefix string, n int) {
	b.Helper()
	ids, toks := registerDevices(b, dbPath, n, func(i int) string { return fmt.Sprintf("%s%04d", prefix, i) }, map[string]string{"fleet": "storm"})
	var sb strings.Builder
	for i := range ids {
		fmt.Fprintf(&sb, "%s %s\n", ids[i], toks[i])
	}
	if err := os.WriteFile(tokensFile, []byte(sb.String()), 0o600); err != nil {
		b.Fatal(err)
	}
}

// registerDevices registers n devices named id(i) straight in the hub's
// SQLite file, before the hub starts (one REST call each would dominate a
// benchmark's set-up), and returns their ids and tokens.
func registerDevices(b *testing.B, dbPath string, n int, id func(int) string, labels map[string]string) (ids, tokens []string) {
	b.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, dbPath)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	for i := 0; i < n; i++ {
		_, tok, err := st.CreateDevice(ctx, id(i), labels)
		if err != nil {
			b.Fatal(err)
		}
		ids, tokens = append(ids, id(i)), append(tokens, tok)
	}
	return ids, tokens
}
