package e2e

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/fleetwire/fleetwire/agent/collect"
	"github.com/fleetwire/fleetwire/dashboard/browsertest"
	"github.com/fleetwire/fleetwire/hub/influx/influxtest"
	"github.com/fleetwire/fleetwire/protocol"
)

// realBrowser starts Chromium for the test hub.
func realBrowser(t testing.TB) context.Context {
	// Only for this test: the hub is a loopback subprocess whose TLS
	// certificate comes from a CA it generated moments ago in a temp data
	// dir; Chromium cannot be told to trust that CA alone without an NSS
	// database, so certificate errors are ignored here. Never use this flag
	// against anything but this test hub.
	return browsertest.Start(t, chromedp.Flag("ignore-certificate-errors", true))
}

// jsPoll evaluates a JS expression returning a string until ok accepts it
// or within passes; it returns the last value seen.
func jsPoll(ctx context.Context, expr string, within time.Duration, ok func(string) bool) (string, error) {
	deadline := time.Now().Add(within)
	var got string
	for {
		if err := chromedp.Run(ctx, chromedp.Evaluate(expr, &got)); err != nil {
			return got, err
		}
		if ok(got) || time.Now().After(deadline) {
			return got, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	var png []byte
	if err := chromedp.Run(ctx, chromedp.FullScreenshot(&png, 100)); err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	out := filepath.Join(dir, name)
	if err := os.WriteFile(out, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", out)
}

// TestDashboardAgainstRealHub drives the embedded dashboard of a real
// fleethub (with influxd and two real agents streaming system metrics) in
// headless Chromium: sign-in form, overview online + live values, device
// page charts, a ping from the console, and a viewer without Send.
func TestDashboardAgainstRealHub(t *testing.T) {
	start := time.Now()
	ix := influxtest.Start(t)
	h := startHub(t, ix)

	// Plain HTTP first: the dashboard is embedded and carries a CSP.
	resp, err := h.client().Get(h.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == 503 {
		t.Fatalf("hub serves 503 at /: the dashboard was not built into the binary; run `make dashboard` (or `make test`), then test again:\n%s", body)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("GET /: HTTP %d", resp.StatusCode)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); csp == "" {
		t.Errorf("GET / has no Content-Security-Policy header")
	} else {
		t.Logf("CSP: %s", csp)
	}

	devices := map[string]map[string]string{"pi-lab": {"site": "lab"}, "pi-two": nil}
	for id, labels := range devices {
		tok := h.addDevice(id, labels)
		// Real collectors, except CPU: a loaded test machine can read a flat
		// 100.0 % for seconds, and the test must see a value move.
		cols, err := collect.New(collect.Config{Disabled: []string{collect.NameCPU}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		cols = append(cols, &movingCPU{})
		cfg, _ := commandConfig(t)
		startAgent(t, h, tok, agentOpts{interval: 200 * time.Millisecond, collectors: cols, commands: cfg})
	}

	pw, err := os.ReadFile(filepath.Join(h.dataDir, "admin.password"))
	if err != nil {
		t.Fatalf("first admin password: %v", err)
	}
	ctx := realBrowser(t)
	dir := browsertest.Artifacts(t)
	signIn := func(user, password string) {
		t.Helper()
		if err := chromedp.Run(ctx,
			chromedp.WaitVisible(`input[name=username]`),
			chromedp.SetValue(`input[name=username]`, user),
			chromedp.SetValue(`input[name=password]`, password),
			chromedp.Click(`form.signin button[type=submit]`),
			chromedp.WaitVisible(`tr[data-device="pi-two"]`),
		); err != nil {
			t.Fatalf("sign in as %s: %v", user, err)
		}
	}
	if err := chromedp.Run(ctx, chromedp.Navigate(h.url("/"))); err != nil {
		t.Fatal(err)
	}
	signIn("admin", strings.TrimSpace(string(pw)))

	// Both devices online (agents may still be connecting: allow 10 s).
	const onlineJS = `[...document.querySelectorAll('table.devices tbody tr[data-device]')].map(r => r.dataset.device + ':' + r.querySelector('.badge').textContent).sort().join(' ')`
	if got, err := jsPoll(ctx, onlineJS, 10*time.Second, func(s string) bool { return s == "pi-lab:online pi-two:online" }); err != nil || got != "pi-lab:online pi-two:online" {
		t.Fatalf("overview rows = %q, %v; want both online", got, err)
	}
	// Wait for the first values, then see one of them move within 2 s.
	const metricsJS = `[...document.querySelectorAll('table.devices tbody tr[data-device] td[data-metric=cpu], table.devices tbody tr[data-device] td[data-metric=mem]')].map(c => c.textContent).join('|')`
	hasValues := func(s string) bool { return s != "" && !strings.Contains(s, "–") }
	first, err := jsPoll(ctx, metricsJS, 10*time.Second, hasValues)
	if err != nil || !hasValues(first) {
		t.Fatalf("CPU/memory cells = %q, %v; want values", first, err)
	}
	changedAt := time.Now()
	if got, err := jsPoll(ctx, metricsJS, 2*time.Second, func(s string) bool { return s != first }); err != nil || got == first {
		t.Fatalf("CPU/memory cells stayed %q for 2 s (%v); want a live change", got, err)
	} else {
		t.Logf("cells %q -> %q after %s", first, got, time.Since(changedAt).Round(time.Millisecond))
	}
	screenshot(t, ctx, dir, "real-overview.png")

	// Device page: charts are drawn; ping from the console answers pong.
	const stateJS = `(document.querySelector('.cmd-current')||{dataset:{}}).dataset.state||''`
	var canvases int
	if err := chromedp.Run(ctx,
		browsertest.ClickNow(`tr[data-device="pi-lab"] a`),
		chromedp.WaitVisible(`.chart[data-metric="cpu.usage_percent"] canvas`),
		chromedp.Evaluate(`document.querySelectorAll('.chart canvas').length`, &canvases),
		chromedp.WaitVisible(`#cmd-send`),
		chromedp.SendKeys(`#console input[name=command]`, "ping"),
		chromedp.Click(`#cmd-send`),
	); err != nil {
		t.Fatalf("device page: %v", err)
	}
	if canvases == 0 {
		t.Errorf("device page has no chart canvases")
	}
	final := func(s string) bool {
		return s == "succeeded" || s == "failed" || s == "rejected" || s == "canceled" || s == "expired"
	}
	if got, err := jsPoll(ctx, stateJS, 10*time.Second, final); err != nil || got != "succeeded" {
		t.Fatalf("console state = %q, %v; want succeeded", got, err)
	}
	var stdout string
	if err := chromedp.Run(ctx, chromedp.Evaluate(`(document.querySelector('.cmd-current pre[data-stream=stdout]')||{}).textContent||''`, &stdout)); err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(stdout) != "pong" {
		t.Errorf("console stdout = %q, want pong", stdout)
	}
	const cpuValueJS = `(document.querySelector('.chart[data-metric="cpu.usage_percent"] .value')||{}).textContent||''`
	if got, err := jsPoll(ctx, cpuValueJS, 3*time.Second, func(s string) bool { return strings.HasSuffix(s, "%") }); err != nil || !strings.HasSuffix(got, "%") {
		t.Errorf("device page CPU value = %q, %v; want a percentage", got, err)
	}
	screenshot(t, ctx, dir, "real-device.png")

	// The 1 h range comes from InfluxDB (window means through the hub's
	// history API), not from the live window.
	if err := chromedp.Run(ctx, chromedp.Click(`button[data-range="1h"]`)); err != nil {
		t.Fatal(err)
	}
	const historyJS = `(() => { const c = document.querySelector('.chart[data-metric="cpu.usage_percent"]');
		const e = c.querySelector('.chart-empty'); const v = c.querySelector('.value');
		return ((e && !e.hidden) ? 'empty' : 'data') + ' ' + (v ? v.textContent : '') + ' ' + location.hash })()`
	if got, err := jsPoll(ctx, historyJS, 10*time.Second, func(s string) bool {
		return strings.HasPrefix(s, "data ") && strings.Contains(s, "%") && strings.HasSuffix(s, "range=1h")
	}); err != nil || !strings.HasPrefix(got, "data ") {
		t.Errorf("1 h history chart: %q, %v; want data from InfluxDB", got, err)
	}
	if err := chromedp.Run(ctx, chromedp.Click(`button[data-range="live"]`)); err != nil {
		t.Fatal(err)
	}

	// A viewer (made through the API) sees the device page without Send.
	const viewerPW = "viewer-password-1234"
	if code := h.api("POST", "/api/v1/users", map[string]any{"name": "watcher", "role": "viewer", "password": viewerPW}, nil); code != 201 && code != 200 {
		t.Fatalf("create viewer: HTTP %d", code)
	}
	if err := chromedp.Run(ctx, chromedp.Click(`#logout`)); err != nil {
		t.Fatal(err)
	}
	signIn("watcher", viewerPW)
	var sends int
	if err := chromedp.Run(ctx,
		browsertest.ClickNow(`tr[data-device="pi-lab"] a`),
		chromedp.WaitVisible(`.chart[data-metric="cpu.usage_percent"] canvas`),
		chromedp.WaitVisible(`#console [data-role-note]`),
		chromedp.Evaluate(`document.querySelectorAll('#cmd-send').length`, &sends),
	); err != nil {
		t.Fatalf("viewer device page: %v", err)
	}
	if sends != 0 {
		t.Errorf("viewer sees %d Send buttons", sends)
	}
	t.Logf("total %s", time.Since(start).Round(time.Millisecond))
}

// movingCPU reports a CPU usage that changes at every collection.
type movingCPU struct{ n int64 }

func (c *movingCPU) Name() string { return "moving-cpu" }
func (c *movingCPU) Collect(context.Context) ([]protocol.Point, error) {
	c.n++
	return []protocol.Point{{Name: "cpu.usage_percent", Value: float64(10 + c.n%80)}}, nil
}
