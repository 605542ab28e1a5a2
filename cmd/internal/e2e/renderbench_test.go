package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/fleetwire/fleetwire/hub/influx/influxtest"
)

// BenchmarkDeviceToRender: 1,000 simulated devices each send a batch per
// second over TLS to a real fleethub (storing into a real InfluxDB); the
// embedded dashboard, signed in in headless Chromium, shows the overview.
// For every row the page draws with a newer last-seen time, the page's
// latency probe records (start of the next animation frame, i.e. after the
// row was painted) - (the device's timestamp on the batch). Both clocks are
// this machine's. b.N is the number of samples (the first page holds 100
// devices, so about 100 samples a second).
func BenchmarkDeviceToRender(b *testing.B) {
	const devices = 1000
	ix := influxtest.Start(b)
	h := startHub(b, ix)
	var tokens strings.Builder
	for i := 0; i < devices; i++ {
		tokens.WriteString(h.addDevice(fmt.Sprintf("sim-%05d", i), map[string]string{"fleet": "bench"}) + "\n")
	}
	tokFile := filepath.Join(b.TempDir(), "tokens")
	if err := os.WriteFile(tokFile, []byte(tokens.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(startSims(b, tokFile, h.deviceURL(), time.Second, "E2E_CA="+h.caFile()))

	pw, err := os.ReadFile(filepath.Join(h.dataDir, "admin.password"))
	if err != nil {
		b.Fatal(err)
	}
	ctx := realBrowser(b)
	if err := chromedp.Run(ctx,
		chromedp.ActionFunc(func(ctx context.Context) error {
			_, err := page.AddScriptToEvaluateOnNewDocument(`window.__fleetwireRenderLatency = []`).Do(ctx)
			return err
		}),
		chromedp.Navigate(h.url("/")),
		chromedp.WaitVisible(`input[name=username]`),
		chromedp.SetValue(`input[name=username]`, "admin"),
		chromedp.SetValue(`input[name=password]`, strings.TrimSpace(string(pw))),
		chromedp.Click(`form.signin button[type=submit]`),
		chromedp.WaitVisible(`tr[data-device="sim-00000"]`),
	); err != nil {
		b.Fatalf("sign in: %v", err)
	}
	// Warm up until every device on the page has reported at least once
	// since sign-in, then measure from an empty probe.
	const countJS = `String(window.__fleetwireRenderLatency.length)`
	if got, err := jsPoll(ctx, countJS, 20*time.Second, func(s string) bool { return atoi(s) >= 300 }); err != nil || atoi(got) < 300 {
		b.Fatalf("render probe has %s samples after 20 s (%v); is the overview receiving the fleet topic?", got, err)
	}
	var ignored int
	if err := chromedp.Run(ctx, chromedp.Evaluate(`window.__fleetwireRenderLatency.length = 0`, &ignored)); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	within := time.Duration(b.N/20+30) * time.Second // at least 20 samples/s expected
	if got, err := jsPoll(ctx, countJS, within, func(s string) bool { return atoi(s) >= b.N }); err != nil || atoi(got) < b.N {
		b.Fatalf("render probe has %s of %d samples after %s (%v)", got, b.N, within, err)
	}
	b.StopTimer()
	var ms []int64
	if err := chromedp.Run(ctx, chromedp.Evaluate(`window.__fleetwireRenderLatency.slice()`, &ms)); err != nil {
		b.Fatal(err)
	}
	lat := make([]time.Duration, len(ms))
	for i, v := range ms {
		lat[i] = time.Duration(v) * time.Millisecond
	}
	reportLatency(b, lat, "device-to-render-1000")
	b.ReportMetric(float64(len(lat)), "samples")
}

func atoi(s string) int {
	var n int
	fmt.Sscan(s, &n)
	return n
}
