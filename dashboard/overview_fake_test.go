package dashboard_test

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
	"github.com/fleetwire/fleetwire/dashboard/browsertest"
)

const bigFleet = 10000

var bigSites = []string{"lab", "roof", "cellar", "yard"}

// bigDevices is a 10,000-device fleet for GET /api/v1/devices: dev-00000 …
// dev-09999, site by i%4, and dev-04242 alone in site=attic.
func bigDevices() []map[string]any {
	seen := time.Now().Add(-10 * time.Second).UTC().Format(time.RFC3339Nano)
	out := make([]map[string]any, 0, bigFleet)
	for i := 0; i < bigFleet; i++ {
		site := bigSites[i%4]
		if i == 4242 {
			site = "attic"
		}
		out = append(out, map[string]any{"id": fmt.Sprintf("dev-%05d", i), "labels": map[string]string{"site": site},
			"online": true, "last_seen": seen, "agent_version": "0.4.0", "transport": "ws"})
	}
	return out
}

// bigFleetMsg is a fleet message for devices [from, to) with metrics moving by step.
func bigFleetMsg(from, to, step int) map[string]any {
	now := time.Now().UnixMilli()
	devs := make([]map[string]any, 0, to-from)
	for i := from; i < to; i++ {
		devs = append(devs, map[string]any{"id": fmt.Sprintf("dev-%05d", i), "online": true, "last_seen": now,
			"metrics": map[string]float64{
				"cpu.usage_percent": float64((i*7+step*13)%90) + 5,
				"mem.used_percent":  40 + float64((step*5+i)%20),
				"temp.celsius":      45 + float64((step*3+i)%10),
			}})
	}
	return map[string]any{"type": "fleet", "devices": devs}
}

// TestFleetOverviewInBrowser: 10,000 devices page 100 at a time (counts,
// paging, text filter, label filter combined with it), sparklines from
// fleet messages on the current page only, and the reconnecting banner when
// the live socket drops.
func TestFleetOverviewInBrowser(t *testing.T) {
	hub := newFakeHub(t)
	hub.devices = bigDevices()
	ctx := browser(t)
	if err := chromedp.Run(ctx,
		chromedp.Navigate(hub.url+"/"),
		chromedp.WaitVisible(`input[name=username]`),
		chromedp.SetValue(`input[name=username]`, fakeUser),
		chromedp.SetValue(`input[name=password]`, fakePassword),
		chromedp.Click(`form.signin button[type=submit]`),
		chromedp.WaitVisible(`tr[data-device="dev-00000"]`),
	); err != nil {
		t.Fatalf("sign in: %v", err)
	}
	hub.fleet <- bigFleetMsg(0, bigFleet, 0)
	for step := 1; step <= 5; step++ {
		hub.fleet <- bigFleetMsg(0, 20, step)
	}

	// (a) counts, one page of rows, paging.
	const countsJS = `document.querySelector('.counts').textContent`
	// pi-01 comes from the fake hub's first fleet message: 10,001 online.
	if got, err := pollText(ctx, countsJS, fmt.Sprintf("%d online 0 offline", bigFleet+1), 5*time.Second); err != nil || !strings.HasPrefix(got, fmt.Sprint(bigFleet+1)+" online") {
		t.Fatalf("counts = %q, %v; want %d online", got, err, bigFleet+1)
	}
	const rowsJS = `document.querySelectorAll('table.devices tbody tr[data-device]').length.toString()`
	var rows string
	if err := chromedp.Run(ctx, chromedp.Evaluate(rowsJS, &rows)); err != nil {
		t.Fatal(err)
	}
	if rows != "100" {
		t.Errorf("rows in the DOM = %s; want one page of 100", rows)
	}
	const pagerJS = `document.querySelector('.pager').textContent`
	const firstJS = `(document.querySelector('table.devices tbody tr[data-device]')||{dataset:{}}).dataset.device||''`
	if got, err := pollText(ctx, pagerJS, "‹ Prev Page 1 of 101 (10001 devices) Next ›", 2*time.Second); err != nil || !strings.Contains(got, "Page 1 of 101") {
		t.Errorf("pager = %q, %v", got, err)
	}

	// (c) sparklines: dev-00000 had six fleet messages; every metric cell
	// of it has a canvas, and no more than 3 per row on the page exist.
	const sparkJS = `[...document.querySelectorAll('tr[data-device="dev-00000"] td[data-metric] .uplot.spark canvas')].length.toString()`
	if got, err := pollText(ctx, sparkJS, "3", 3*time.Second); err != nil || got != "3" {
		t.Fatalf("dev-00000 sparkline canvases = %s, %v; want 3", got, err)
	}
	const allSparksJS = `document.querySelectorAll('.uplot.spark').length`
	var sparks int
	if err := chromedp.Run(ctx, chromedp.Evaluate(allSparksJS, &sparks)); err != nil {
		t.Fatal(err)
	}
	if sparks > 3*100 {
		t.Errorf("%d sparklines in the DOM; want at most 3 per row of one page", sparks)
	}
	var png []byte // the viewport: the first rows, with their sparklines
	if err := chromedp.Run(ctx, chromedp.CaptureScreenshot(&png)); err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	out := filepath.Join(artifactsDir(t), "dashboard-overview-sparklines.png")
	if err := os.WriteFile(out, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", out)

	if err := chromedp.Run(ctx, browsertest.ClickNow(`.pager button:last-child`)); err != nil {
		t.Fatal(err)
	}
	if got, err := pollText(ctx, firstJS, "dev-00100", 2*time.Second); err != nil || got != "dev-00100" {
		t.Errorf("first row on page 2 = %q, %v; want dev-00100", got, err)
	}
	if got, _ := pollText(ctx, pagerJS, "", 0); !strings.Contains(got, "Page 2 of 101") {
		t.Errorf("pager on page 2 = %q", got)
	}
	// Page 2's devices have one value each, no line yet: the pool shrinks to nothing.
	if err := chromedp.Run(ctx, chromedp.Evaluate(allSparksJS, &sparks)); err != nil {
		t.Fatal(err)
	}
	if sparks != 0 {
		t.Errorf("%d sparklines on page 2 (no history there); want 0", sparks)
	}

	// Text filter narrows to one device.
	if err := chromedp.Run(ctx, chromedp.SendKeys(`input[type=search]`, "dev-04243")); err != nil {
		t.Fatal(err)
	}
	const idsJS = `[...document.querySelectorAll('table.devices tbody tr[data-device]')].map(r => r.dataset.device).join(' ')`
	if got, err := pollText(ctx, idsJS, "dev-04243", 2*time.Second); err != nil || got != "dev-04243" {
		t.Errorf("rows for filter dev-04243 = %q, %v", got, err)
	}

	// (b) label filter: site=attic is dev-04242 only; combined with the
	// text filter dev-04243 nothing matches; site=lab alone is 2,500.
	setLabel := func(v string) {
		t.Helper()
		if err := chromedp.Run(ctx, chromedp.Evaluate(fmt.Sprintf(`(() => { const s = document.querySelector('select.label-filter'); s.value = %q; s.dispatchEvent(new Event('change')) })()`, v), nil)); err != nil {
			t.Fatal(err)
		}
	}
	var options string
	if err := chromedp.Run(ctx, chromedp.Evaluate(`[...document.querySelectorAll('select.label-filter option')].map(o => o.value).join(' ')`, &options)); err != nil {
		t.Fatal(err)
	}
	if want := " site=attic site=cellar site=lab site=roof site=yard"; options != want {
		t.Errorf("label options = %q; want %q", options, want)
	}
	setLabel("site=attic")
	if got, err := pollText(ctx, idsJS, "", 2*time.Second); err != nil || got != "" {
		t.Errorf("rows for dev-04243 + site=attic = %q, %v; want none", got, err)
	}
	if err := chromedp.Run(ctx, chromedp.Evaluate(`document.querySelector('input[type=search]').value = ''`, nil), chromedp.SendKeys(`input[type=search]`, "dev-0424")); err != nil {
		t.Fatal(err)
	}
	if got, err := pollText(ctx, idsJS, "dev-04242", 2*time.Second); err != nil || got != "dev-04242" {
		t.Errorf("rows for dev-0424 + site=attic = %q, %v; want dev-04242", got, err)
	}
	if err := chromedp.Run(ctx, chromedp.Evaluate(`(() => { const s = document.querySelector('input[type=search]'); s.value = ''; s.dispatchEvent(new Event('input')) })()`, nil)); err != nil {
		t.Fatal(err)
	}
	setLabel("site=lab")
	if got, err := pollText(ctx, pagerJS, "‹ Prev Page 1 of 25 (2500 devices) Next ›", 2*time.Second); err != nil || !strings.Contains(got, "(2500 devices)") {
		t.Errorf("pager for site=lab = %q, %v; want 2500 devices", got, err)
	}

	// (d) the live socket drops and stays down: the banner shows; it comes
	// back: the banner hides.
	const bannerJS = `(() => { const b = document.querySelector('.banner'); return b.hidden ? 'hidden' : 'shown:' + b.dataset.state })()`
	if got, err := pollText(ctx, bannerJS, "hidden", time.Second); err != nil || got != "hidden" {
		t.Fatalf("banner before the drop = %q, %v", got, err)
	}
	hub.liveDown.Store(true)
	hub.drop <- struct{}{}
	if got, err := pollText(ctx, bannerJS, "shown:reconnecting", 3*time.Second); err != nil || got != "shown:reconnecting" {
		t.Fatalf("banner after the drop = %q, %v; want shown:reconnecting", got, err)
	}
	hub.liveDown.Store(false)
	if got, err := pollText(ctx, bannerJS, "hidden", 10*time.Second); err != nil || got != "hidden" {
		t.Fatalf("banner after the socket came back = %q, %v; want hidden", got, err)
	}
	// The reopened socket resubscribed: fleet messages flow again.
	hub.fleet <- map[string]any{"type": "fleet", "devices": []map[string]any{{"id": "dev-00000", "online": false}}}
	if got, err := pollText(ctx, countsJS, fmt.Sprintf("%d online 1 offline", bigFleet), 3*time.Second); err != nil || !strings.Contains(got, "1 offline") {
		t.Errorf("counts after reconnect + a fleet message = %q, %v", got, err)
	}
}

// TestRenderLatencyProbe: with window.__fleetwireRenderLatency defined
// before the app loads (as BenchmarkDeviceToRender does), each row drawn
// with a newer last-seen time adds paint time - device time; a page without
// it gets no global from the app.
func TestRenderLatencyProbe(t *testing.T) {
	hub := newFakeHub(t)
	ctx := browser(t)
	signIn := func() {
		t.Helper()
		if err := chromedp.Run(ctx,
			chromedp.WaitVisible(`input[name=username]`),
			chromedp.SetValue(`input[name=username]`, fakeUser),
			chromedp.SetValue(`input[name=password]`, fakePassword),
			chromedp.Click(`form.signin button[type=submit]`),
			chromedp.WaitVisible(`table.devices`),
		); err != nil {
			t.Fatalf("sign in: %v", err)
		}
	}
	if err := chromedp.Run(ctx, chromedp.Navigate(hub.url+"/")); err != nil {
		t.Fatal(err)
	}
	signIn()
	var kind string
	if err := chromedp.Run(ctx, chromedp.Evaluate(`typeof window.__fleetwireRenderLatency`, &kind)); err != nil {
		t.Fatal(err)
	}
	if kind != "undefined" {
		t.Errorf("without a benchmark the probe is %s; want undefined", kind)
	}

	if err := chromedp.Run(ctx,
		chromedp.ActionFunc(func(ctx context.Context) error {
			_, err := page.AddScriptToEvaluateOnNewDocument(`window.__fleetwireRenderLatency = []`).Do(ctx)
			return err
		}),
		chromedp.Reload(),
		chromedp.WaitVisible(`table.devices`), // the session cookie outlives the reload
	); err != nil {
		t.Fatal(err)
	}
	// The fake hub's first fleet message (pi-01, stamped now) is one sample;
	// the device list from the REST API adds none (not a live update).
	const countJS = `String(window.__fleetwireRenderLatency.length)`
	if n, err := pollText(ctx, countJS, "1", 3*time.Second); err != nil || n != "1" {
		t.Fatalf("probe has %s samples after the first fleet message, %v; want 1", n, err)
	}
	// Three devices whose batches were stamped 700 ms ago, then one of them again (same time: no new sample).
	seen := time.Now().Add(-700 * time.Millisecond).UnixMilli()
	msg := func(ids ...string) map[string]any {
		devs := []map[string]any{}
		for _, id := range ids {
			devs = append(devs, map[string]any{"id": id, "online": true, "last_seen": seen})
		}
		return map[string]any{"type": "fleet", "devices": devs}
	}
	const probeJS = `window.__fleetwireRenderLatency.join(',')`
	hub.fleet <- msg("probe-a", "probe-b", "probe-c")
	if n, err := pollText(ctx, countJS, "4", 3*time.Second); err != nil || n != "4" {
		t.Fatalf("probe has %s samples, %v; want 4 (pi-01 and one per probe device drawn)", n, err)
	}
	got, err := pollText(ctx, probeJS, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range strings.Split(got, ",")[1:] {
		var ms int
		fmt.Sscan(s, &ms)
		if ms < 700 || ms > 10000 {
			t.Errorf("probe sample %s ms; want >= 700 (the batch's age) and sane", s)
		}
	}
	// An unchanged last-seen adds nothing; a newer one adds one sample.
	hub.fleet <- msg("probe-a")
	seen = time.Now().UnixMilli()
	hub.fleet <- msg("probe-d")
	if n, err := pollText(ctx, countJS, "5", 3*time.Second); err != nil || n != "5" {
		t.Errorf("probe has %s samples after a repeat and a new device, %v; want 5", n, err)
	}
}
