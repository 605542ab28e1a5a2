package dashboard_test

import (
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/fleetwire/fleetwire/dashboard/browsertest"
)

// history serves GET /api/v1/devices/{id}/history in the shape of
// hub/dashws.HistoryResponse: window means for cpu.usage_percent and
// temp.celsius, an empty series list for everything else (mem.used_percent
// has no stored data).
func (f *fakeHub) history(w http.ResponseWriter, r *http.Request) {
	metric, rng := r.URL.Query().Get("metric"), r.URL.Query().Get("range")
	if rng == "" {
		rng = "1h"
	}
	f.histMu.Lock()
	f.histReqs = append(f.histReqs, metric+" "+rng)
	f.histMu.Unlock()
	spans := map[string]time.Duration{"1h": time.Hour, "24h": 24 * time.Hour, "7d": 7 * 24 * time.Hour}
	span, ok := spans[rng]
	if !ok {
		http.Error(w, "range: want 1h, 24h or 7d", http.StatusBadRequest)
		return
	}
	every := span / 288
	series := []map[string]any{}
	if metric == "cpu.usage_percent" || metric == "temp.celsius" {
		end := time.Now().Truncate(every)
		var ts []int64
		var vs []float64
		for i := 287; i >= 0; i-- {
			ts = append(ts, end.Add(-time.Duration(i)*every).UnixMilli())
			vs = append(vs, 30+15*float64((i*7)%24)/24)
		}
		vs[len(vs)-1] = 42
		series = append(series, map[string]any{"name": metric, "t": ts, "v": vs})
	}
	writeJSON(w, map[string]any{"device": r.PathValue("id"), "range_seconds": int64(span / time.Second),
		"every_seconds": int64(every / time.Second), "series": series})
}

func (f *fakeHub) historyRequests() []string {
	f.histMu.Lock()
	defer f.histMu.Unlock()
	return append([]string(nil), f.histReqs...)
}

// TestDeviceRangesInBrowser switches the device charts from Live to 24 h
// (history requests, charts of window means, an empty state for the metric
// without data, the range in the hash, no live appends), reloads on the
// hash, and goes back to Live.
func TestDeviceRangesInBrowser(t *testing.T) {
	hub := newFakeHub(t)
	ctx := browser(t)
	if err := chromedp.Run(ctx,
		chromedp.Navigate(hub.url+"/"),
		chromedp.WaitVisible(`input[name=username]`),
		chromedp.SetValue(`input[name=username]`, fakeUser),
		chromedp.SetValue(`input[name=password]`, fakePassword),
		chromedp.Click(`form.signin button[type=submit]`),
		chromedp.WaitVisible(`tr[data-device="pi-01"] a`),
		browsertest.ClickNow(`tr[data-device="pi-01"] a`),
		chromedp.WaitVisible(`.chart[data-metric="cpu.usage_percent"] canvas`),
	); err != nil {
		t.Fatalf("device page: %v", err)
	}
	// cardsJS describes each card: metric=canvas (a visible chart) or
	// metric=<empty-state text>.
	const cardsJS = `[...document.querySelectorAll('.chart[data-metric]')].map(c => {
		const plot = c.querySelector('.uplot'), empty = c.querySelector('.chart-empty')
		const shown = plot && !plot.hidden && plot.querySelector('canvas') && plot.getBoundingClientRect().height > 0
		return c.dataset.metric + '=' + (shown ? 'canvas' : (empty && !empty.hidden ? empty.textContent : '?'))
	}).join(' ')`
	const want = "cpu.usage_percent=canvas mem.used_percent=no data in this range temp.celsius=canvas"
	const pressedJS = `(document.querySelector('.range-buttons button[aria-pressed=true]')||{dataset:{}}).dataset.range||''`
	const valueJS = `(document.querySelector('.chart[data-metric="cpu.usage_percent"] .value')||{}).textContent||''`

	// Live: memory has no recent data, so its card says so instead of
	// staying blank.
	if got, err := pollText(ctx, cardsJS, want, 3*time.Second); err != nil || got != want {
		t.Fatalf("live cards = %q, %v; want %q", got, err, want)
	}
	if got, _ := pollText(ctx, pressedJS, "live", time.Second); got != "live" {
		t.Errorf("pressed range on load = %q, want live", got)
	}
	if n := len(hub.historyRequests()); n != 0 {
		t.Errorf("%d history requests in Live mode", n)
	}

	// 24 h: one history request per key metric, charts of the means, the
	// empty state for memory, the range in the hash.
	if err := chromedp.Run(ctx, chromedp.Click(`.range-buttons button[data-range="24h"]`)); err != nil {
		t.Fatal(err)
	}
	if got, err := pollText(ctx, valueJS, "42.0 %", 3*time.Second); err != nil || got != "42.0 %" {
		t.Fatalf("CPU value in 24 h = %q, %v; want the last mean 42.0 %%", got, err)
	}
	if got, err := pollText(ctx, cardsJS, want, 3*time.Second); err != nil || got != want {
		t.Fatalf("24 h cards = %q, %v; want %q", got, err, want)
	}
	reqs := hub.historyRequests()
	sort.Strings(reqs)
	if got := strings.Join(reqs, ", "); got != "cpu.usage_percent 24h, mem.used_percent 24h, temp.celsius 24h" {
		t.Errorf("history requests = %q; want one per key metric with range=24h", got)
	}
	var hash, note string
	if err := chromedp.Run(ctx,
		chromedp.Evaluate(`location.hash`, &hash),
		chromedp.Text(`.range-note`, &note),
	); err != nil {
		t.Fatal(err)
	}
	if hash != "#/device/pi-01?range=24h" {
		t.Errorf("hash after 24 h = %q", hash)
	}
	if note != "mean per 5 min" {
		t.Errorf("range note = %q, want mean per 5 min (86400 s / 288)", note)
	}
	// No live appends in a history range.
	hub.fleet <- map[string]any{"type": "points", "device": "pi-01", "points": []map[string]any{
		{"name": "cpu.usage_percent", "t": time.Now().UnixMilli(), "v": 77.7},
	}}
	time.Sleep(300 * time.Millisecond)
	if got, _ := pollText(ctx, valueJS, "42.0 %", 0); got != "42.0 %" {
		t.Errorf("CPU value in 24 h after a live point = %q, want 42.0 %% (no live appends)", got)
	}
	shot(t, ctx, "dashboard-device-24h.png")

	// The hash alone restores the range.
	if err := chromedp.Run(ctx, chromedp.Reload(), chromedp.WaitVisible(`.range-buttons`)); err != nil {
		t.Fatal(err)
	}
	if got, err := pollText(ctx, pressedJS, "24h", 3*time.Second); err != nil || got != "24h" {
		t.Errorf("pressed range after reload on #...?range=24h = %q, %v", got, err)
	}
	if got, err := pollText(ctx, cardsJS, want, 3*time.Second); err != nil || got != want {
		t.Errorf("24 h cards after reload = %q, %v", got, err)
	}

	// Back to Live: the recent window, then live points again.
	before := len(hub.historyRequests())
	if err := chromedp.Run(ctx, chromedp.Click(`.range-buttons button[data-range="live"]`)); err != nil {
		t.Fatal(err)
	}
	if got, err := pollText(ctx, valueJS, "33.0 %", 3*time.Second); err != nil || got != "33.0 %" {
		t.Fatalf("CPU value back in Live = %q, %v; want 33.0 %% from the recent window", got, err)
	}
	if err := chromedp.Run(ctx, chromedp.Evaluate(`location.hash`, &hash)); err != nil {
		t.Fatal(err)
	}
	if hash != "#/device/pi-01" {
		t.Errorf("hash back in Live = %q", hash)
	}
	// The socket of the page before the reload may still take a message
	// from hub.fleet until its close is seen: send until one lands.
	var got string
	var err error
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline) && got != "55.5 %"; {
		hub.fleet <- map[string]any{"type": "points", "device": "pi-01", "points": []map[string]any{
			{"name": "cpu.usage_percent", "t": time.Now().UnixMilli(), "v": 55.5},
		}}
		got, err = pollText(ctx, valueJS, "55.5 %", 300*time.Millisecond)
	}
	if got != "55.5 %" {
		t.Errorf("CPU value after a live point in Live = %q, %v; want 55.5 %%", got, err)
	}
	if got, err := pollText(ctx, cardsJS, want, 2*time.Second); err != nil || got != want {
		t.Errorf("live cards after switching back = %q, %v", got, err)
	}
	if n := len(hub.historyRequests()); n != before {
		t.Errorf("%d history requests in Live mode", n-before)
	}
}
