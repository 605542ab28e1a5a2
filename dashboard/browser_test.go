package dashboard_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"

	"github.com/fleetwire/fleetwire/dashboard"
	"github.com/fleetwire/fleetwire/dashboard/browsertest"
)

// fakeHub serves the dashboard plus just enough of /api/v1 and /v1/live for
// the overview: one user (admin/secret), two devices, and a live socket
// whose fleet messages the test pushes through fleet.
type fakeHub struct {
	t     *testing.T
	fleet chan any // messages sent on every open live socket (one browser here)
	url   string
	cmds  *fakeCommands

	histMu   sync.Mutex
	histReqs []string // "metric range" of every history request, in order

	// devices, when set, replaces the two devices of GET /api/v1/devices.
	devices []map[string]any
	// drop closes the open live socket (without a close frame, like a lost
	// connection); while liveDown is set, live upgrades are refused (503).
	drop     chan struct{}
	liveDown atomic.Bool
}

const (
	fakeUser          = "admin"
	fakeViewer        = "viewer" // same password, role viewer
	fakePassword      = "secret"
	fakeSession       = "sess-1"
	fakeViewerSession = "sess-viewer"
	fakeCSRF          = "csrf-1"
)

func newFakeHub(t *testing.T) *fakeHub {
	f := &fakeHub{t: t, fleet: make(chan any, 8), drop: make(chan struct{}, 1)}
	mux := http.NewServeMux()
	mux.Handle("/", dashboard.Handler())
	mux.HandleFunc("POST /api/v1/login", f.login)
	mux.HandleFunc("GET /api/v1/me", f.authed(func(w http.ResponseWriter, r *http.Request) {
		name, role := sessionUser(r)
		writeJSON(w, map[string]any{"name": name, "role": role, "kind": "user", "csrf_token": fakeCSRF})
	}))
	mux.HandleFunc("POST /api/v1/logout", f.authed(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	mux.HandleFunc("GET /api/v1/devices", f.authed(func(w http.ResponseWriter, r *http.Request) {
		if f.devices != nil {
			writeJSON(w, map[string]any{"devices": f.devices})
			return
		}
		seen := time.Now().Add(-30 * time.Second).UTC().Format(time.RFC3339Nano)
		writeJSON(w, map[string]any{"devices": []map[string]any{
			{"id": "pi-01", "labels": map[string]string{"site": "lab", "env": "test"}, "online": true, "last_seen": seen, "agent_version": "0.4.0", "transport": "ws"},
			{"id": "pi-02", "labels": map[string]string{"site": "roof", "env": "test"}, "online": false, "agent_version": "0.3.9", "agent_behind": true, "transport": "ws"},
		}})
	}))
	mux.HandleFunc("GET /api/v1/devices/{id}", f.authed(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"device": map[string]any{"id": r.PathValue("id"), "labels": map[string]string{"site": "lab"},
			"online": true, "agent_version": "0.4.0", "transport": "ws"}})
	}))
	mux.HandleFunc("GET /api/v1/devices/{id}/recent", f.authed(func(w http.ResponseWriter, r *http.Request) {
		// The shape of hub/dashws.RecentResponse.
		now := time.Now().UnixMilli()
		var ts []int64
		var vs []float64
		for i := int64(60); i > 0; i-- {
			ts, vs = append(ts, now-i*5000), append(vs, 20+float64(i%7))
		}
		vs[len(vs)-1] = 33
		writeJSON(w, map[string]any{"device": r.PathValue("id"), "window_seconds": 600, "series": []map[string]any{
			{"name": "cpu.usage_percent", "t": ts, "v": vs},
			{"name": "cpu.usage_percent", "tags": map[string]string{"cpu": "cpu0"}, "t": ts, "v": vs},
			{"name": "temp.celsius", "t": ts, "v": vs},
		}})
	}))
	mux.HandleFunc("GET /api/v1/devices/{id}/history", f.authed(f.history))
	f.cmds = newFakeCommands()
	f.cmds.routes(mux, f.authed)
	mux.HandleFunc("GET /v1/live", f.authed(f.live))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

func (f *fakeHub) authed(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie("fw_session")
		if err != nil || (c.Value != fakeSession && c.Value != fakeViewerSession) {
			http.Error(w, `{"error":"authentication required"}`, http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodPost && r.Header.Get("X-CSRF-Token") != fakeCSRF {
			http.Error(w, `{"error":"csrf"}`, http.StatusForbidden)
			return
		}
		next(w, r)
	}
}

func (f *fakeHub) login(w http.ResponseWriter, r *http.Request) {
	var req struct{ Username, Password string }
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || (req.Username != fakeUser && req.Username != fakeViewer) || req.Password != fakePassword {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":"invalid credentials"}`))
		return
	}
	session, role := fakeSession, "admin"
	if req.Username == fakeViewer {
		session, role = fakeViewerSession, "viewer"
	}
	http.SetCookie(w, &http.Cookie{Name: "fw_session", Value: session, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
	writeJSON(w, map[string]any{"user": map[string]string{"name": req.Username, "role": role}, "csrf_token": fakeCSRF})
}

// sessionUser names the user of an authed request.
func sessionUser(r *http.Request) (name, role string) {
	if c, _ := r.Cookie("fw_session"); c != nil && c.Value == fakeViewerSession {
		return fakeViewer, "viewer"
	}
	return fakeUser, "admin"
}

// live checks Origin like the hub does, says hello, waits for the first
// subscription, sends the first summary, then forwards f.fleet.
func (f *fakeHub) live(w http.ResponseWriter, r *http.Request) {
	if f.liveDown.Load() {
		http.Error(w, "live down (test)", http.StatusServiceUnavailable)
		return
	}
	up := websocket.Upgrader{CheckOrigin: func(r *http.Request) bool { return r.Header.Get("Origin") == f.url }}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer ws.Close()
	_ = ws.WriteJSON(map[string]string{"type": "hello", "user": fakeUser, "role": "admin"})
	var sub struct{ Type, Topic string }
	// The overview subscribes to fleet first; a page opened directly on
	// #/device/<id> subscribes to that device's topic instead.
	if err := ws.ReadJSON(&sub); err != nil || sub.Type != "subscribe" || (sub.Topic != "fleet" && sub.Topic != "device") {
		f.t.Errorf("first live message = %+v, %v; want subscribe fleet or device", sub, err)
		return
	}
	_ = ws.WriteJSON(fleetMsg(12.5))
	// Drain client messages so close frames are seen; once closed, this
	// (say, a reloaded page's old) socket stops taking messages from f.fleet.
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				return
			}
		}
	}()
	for {
		select {
		case m := <-f.fleet:
			if err := ws.WriteJSON(m); err != nil {
				return
			}
		case <-f.drop:
			return
		case <-closed:
			return
		case <-r.Context().Done():
			return
		}
	}
}

func fleetMsg(cpu float64) map[string]any {
	return map[string]any{"type": "fleet", "devices": []map[string]any{{
		"id": "pi-01", "online": true, "last_seen": time.Now().UnixMilli(),
		"metrics": map[string]float64{"cpu.usage_percent": cpu, "mem.used_percent": 41.2, "temp.celsius": 48.3},
	}}}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// browser starts Chromium for a test of the built dashboard. A missing
// browser or an unbuilt dashboard fails the test: CI must not skip it.
func browser(t *testing.T) context.Context {
	if !dashboard.Built() {
		t.Fatal("dashboard not built (dashboard/dist has no index.html): run `make tools dashboard`, then test again")
	}
	return browsertest.Start(t)
}

func artifactsDir(t *testing.T) string { return browsertest.Artifacts(t) }

// pollText evaluates a JS expression until it returns want or the deadline
// passes; it returns the last value seen.
func pollText(ctx context.Context, expr, want string, within time.Duration) (string, error) {
	deadline := time.Now().Add(within)
	var got string
	for {
		if err := chromedp.Run(ctx, chromedp.Evaluate(expr, &got)); err != nil {
			return got, err
		}
		if got == want || time.Now().After(deadline) {
			return got, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestOverviewInBrowser(t *testing.T) {
	hub := newFakeHub(t)
	ctx := browser(t)

	// A wrong password shows the error and stays on the sign-in page.
	var errText string
	err := chromedp.Run(ctx,
		chromedp.Navigate(hub.url+"/"),
		chromedp.WaitVisible(`input[name=username]`),
		chromedp.SendKeys(`input[name=username]`, fakeUser),
		chromedp.SendKeys(`input[name=password]`, "wrong"),
		chromedp.Click(`form.signin button[type=submit]`),
		chromedp.WaitVisible(`form.signin .error`),
		chromedp.Text(`form.signin .error`, &errText),
	)
	if err != nil {
		t.Fatalf("sign-in page: %v", err)
	}
	if !strings.Contains(errText, "Wrong user name or password") {
		t.Errorf("error after a wrong password = %q", errText)
	}

	// Sign in; the overview lists both devices with their first live values.
	err = chromedp.Run(ctx,
		chromedp.SetValue(`input[name=password]`, fakePassword),
		chromedp.Click(`form.signin button[type=submit]`),
		chromedp.WaitVisible(`tr[data-device="pi-02"]`),
	)
	if err != nil {
		t.Fatalf("sign in: %v", err)
	}
	const rowsJS = `document.querySelectorAll('table.devices tbody tr[data-device]').length.toString()`
	if n, err := pollText(ctx, rowsJS, "2", 2*time.Second); err != nil || n != "2" {
		t.Fatalf("device rows = %s, %v; want 2", n, err)
	}
	// An agent older than the fleet's newest is marked.
	const agentJS = `Array.from(document.querySelectorAll('tr[data-device] td[data-col=agent]')).map(td => td.textContent).sort().join('|')`
	if got, err := pollText(ctx, agentJS, "0.3.9 (behind)|0.4.0", 2*time.Second); err != nil || got != "0.3.9 (behind)|0.4.0" {
		t.Errorf("agent cells = %q, %v; want pi-02 marked behind", got, err)
	}
	const cpuJS = `(document.querySelector('tr[data-device="pi-01"] td[data-metric=cpu]')||{}).textContent||''`
	if got, err := pollText(ctx, cpuJS, "12.5 %", 2*time.Second); err != nil || got != "12.5 %" {
		t.Fatalf("pi-01 CPU after the first fleet message = %q, %v; want 12.5 %%", got, err)
	}

	// A live fleet message moves the value within 2 s.
	hub.fleet <- fleetMsg(87.5)
	if got, err := pollText(ctx, cpuJS, "87.5 %", 2*time.Second); err != nil || got != "87.5 %" {
		t.Fatalf("pi-01 CPU after a live update = %q, %v; want 87.5 %% within 2s", got, err)
	}
	var counts, banner string
	if err := chromedp.Run(ctx,
		chromedp.Text(`.counts`, &counts),
		chromedp.Evaluate(`document.querySelector('.banner').hidden ? 'hidden' : 'shown'`, &banner),
	); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(counts, "1 online") || !strings.Contains(counts, "1 offline") {
		t.Errorf("counts = %q, want 1 online, 1 offline", counts)
	}
	if banner != "hidden" {
		t.Errorf("reconnecting banner %s while the socket is open", banner)
	}

	var png []byte
	if err := chromedp.Run(ctx, chromedp.CaptureScreenshot(&png)); err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	out := filepath.Join(artifactsDir(t), "dashboard-overview.png")
	if err := os.WriteFile(out, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("overview screenshot: %s", out)

	// Device page: charts fill from the recent window, then move live.
	const valueJS = `(document.querySelector('.chart[data-metric="cpu.usage_percent"] .value')||{}).textContent||''`
	if err := chromedp.Run(ctx,
		browsertest.ClickNow(`tr[data-device="pi-01"] a`),
		chromedp.WaitVisible(`.chart[data-metric="cpu.usage_percent"] canvas`),
	); err != nil {
		t.Fatalf("device page: %v", err)
	}
	if got, err := pollText(ctx, valueJS, "33.0 %", 2*time.Second); err != nil || got != "33.0 %" {
		t.Fatalf("device page CPU from the recent window = %q, %v; want 33.0 %%", got, err)
	}
	hub.fleet <- map[string]any{"type": "points", "device": "pi-01", "points": []map[string]any{
		{"name": "cpu.usage_percent", "t": time.Now().UnixMilli(), "v": 55.5},
		{"name": "cpu.usage_percent", "t": time.Now().UnixMilli(), "v": 99.0, "tags": map[string]string{"cpu": "cpu0"}},
	}}
	if got, err := pollText(ctx, valueJS, "55.5 %", 2*time.Second); err != nil || got != "55.5 %" {
		t.Fatalf("device page CPU after a live point = %q, %v; want 55.5 %%", got, err)
	}
	if err := chromedp.Run(ctx, chromedp.CaptureScreenshot(&png)); err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	out = filepath.Join(filepath.Dir(out), "dashboard-device.png")
	if err := os.WriteFile(out, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("device screenshot: %s", out)
}

// TestCommandsInBrowser covers the command console (send ping, watch it
// finish with "pong", history), the bulk panel (selector -> 2/2 done) and
// a viewer, who sees neither Send button.
func TestCommandsInBrowser(t *testing.T) {
	hub := newFakeHub(t)
	ctx := browser(t)
	signIn := func(user string) {
		t.Helper()
		if err := chromedp.Run(ctx,
			chromedp.WaitVisible(`input[name=username]`),
			chromedp.SetValue(`input[name=username]`, user),
			chromedp.SetValue(`input[name=password]`, fakePassword),
			chromedp.Click(`form.signin button[type=submit]`),
			chromedp.WaitVisible(`tr[data-device="pi-02"]`),
		); err != nil {
			t.Fatalf("sign in as %s: %v", user, err)
		}
	}
	if err := chromedp.Run(ctx, chromedp.Navigate(hub.url+"/")); err != nil {
		t.Fatal(err)
	}
	signIn(fakeUser)

	// Bulk: every device labelled env=test runs ping; progress reaches 2/2.
	if err := chromedp.Run(ctx,
		chromedp.WaitVisible(`#bulk-send`),
		chromedp.SendKeys(`#bulk input[name=selector]`, "env=test"),
		chromedp.SendKeys(`#bulk input[name=command]`, "ping"),
		chromedp.Click(`#bulk-send`),
		chromedp.WaitVisible(`.bulk-progress .bulk-count`),
	); err != nil {
		t.Fatalf("bulk send: %v", err)
	}
	const bulkJS = `(document.querySelector('.bulk-progress .bulk-count')||{}).textContent||''`
	if got, err := pollText(ctx, bulkJS, "2/2 done", 5*time.Second); err != nil || got != "2/2 done" {
		t.Fatalf("bulk progress = %q, %v; want 2/2 done", got, err)
	}
	var bulkRows string
	if err := chromedp.Run(ctx, chromedp.Evaluate(`[...document.querySelectorAll('.bulk-progress tbody tr')].map(r => r.dataset.device + ':' + r.querySelector('[data-state]').dataset.state).join(' ')`, &bulkRows)); err != nil {
		t.Fatal(err)
	}
	if bulkRows != "pi-01:succeeded pi-02:succeeded" {
		t.Errorf("bulk per-device rows = %q", bulkRows)
	}

	shot(t, ctx, "dashboard-bulk.png")

	// Device console at tablet width: ping -> state succeeded, stdout pong.
	const stateJS = `(document.querySelector('.cmd-current')||{dataset:{}}).dataset.state||''`
	if err := chromedp.Run(ctx,
		chromedp.EmulateViewport(820, 1180),
		browsertest.ClickNow(`tr[data-device="pi-01"] a`),
		chromedp.WaitVisible(`#cmd-send`),
		chromedp.SendKeys(`#console input[name=command]`, "ping"),
		chromedp.SendKeys(`#console input[name=args]`, "count=1"),
		chromedp.Click(`#cmd-send`),
	); err != nil {
		t.Fatalf("console send: %v", err)
	}
	if got, err := pollText(ctx, stateJS, "succeeded", 5*time.Second); err != nil || got != "succeeded" {
		t.Fatalf("console state = %q, %v; want succeeded", got, err)
	}
	var stdout, exit string
	if err := chromedp.Run(ctx,
		chromedp.Evaluate(`document.querySelector('.cmd-current pre[data-stream=stdout]').textContent`, &stdout),
		chromedp.Evaluate(`document.querySelector('.cmd-current .cmd-exit').textContent`, &exit),
	); err != nil {
		t.Fatal(err)
	}
	var currentText string
	if err := chromedp.Run(ctx, chromedp.Text(`.cmd-current`, &currentText)); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(currentText, "null") || strings.Contains(currentText, "undefined") {
		t.Errorf("console shows a stray null/undefined: %q", currentText)
	}
	if strings.TrimSpace(stdout) != "pong" || exit != "exit 0" {
		t.Errorf("console output = %q, %q; want pong, exit 0", stdout, exit)
	}
	// History: the ping just sent and pi-01's share of the bulk, both succeeded.
	const historyJS = `[...document.querySelectorAll('table.commands tbody tr[data-command]')].map(r => r.querySelector('[data-state]').dataset.state).join(' ')`
	if got, err := pollText(ctx, historyJS, "succeeded succeeded", 3*time.Second); err != nil || got != "succeeded succeeded" {
		t.Errorf("history states = %q, %v; want two succeeded", got, err)
	}
	// A command off the allowlist ends rejected, with the reason shown.
	if err := chromedp.Run(ctx,
		chromedp.SetValue(`#console input[name=command]`, "reboot"),
		chromedp.Evaluate(`document.querySelector('#console input[name=args]').value = ''`, nil),
		chromedp.Click(`#cmd-send`),
	); err != nil {
		t.Fatal(err)
	}
	if got, err := pollText(ctx, stateJS, "rejected", 5*time.Second); err != nil || got != "rejected" {
		t.Fatalf("console state after reboot = %q, %v; want rejected", got, err)
	}
	// "hold" stays queued: Cancel on it ends it canceled.
	if err := chromedp.Run(ctx,
		chromedp.SetValue(`#console input[name=command]`, "hold"),
		chromedp.Click(`#cmd-send`),
		chromedp.WaitVisible(`.cmd-current button.cancel`),
		chromedp.Click(`.cmd-current button.cancel`),
	); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	if got, err := pollText(ctx, stateJS, "canceled", 3*time.Second); err != nil || got != "canceled" {
		t.Fatalf("console state after Cancel = %q, %v; want canceled", got, err)
	}
	// Back to ping for the screenshot.
	if err := chromedp.Run(ctx, chromedp.Click(`table.commands tbody tr:nth-child(3) button.link`)); err != nil {
		t.Fatal(err)
	}
	if got, err := pollText(ctx, stateJS, "succeeded", 2*time.Second); err != nil || got != "succeeded" {
		t.Errorf("picking ping from the history: state %q, %v", got, err)
	}
	shot(t, ctx, "dashboard-device-console.png")

	// A viewer sees the console and the history but no Send button.
	if err := chromedp.Run(ctx, chromedp.Click(`#logout`)); err != nil {
		t.Fatal(err)
	}
	signIn(fakeViewer)
	var sends, notes int
	if err := chromedp.Run(ctx,
		chromedp.WaitVisible(`#bulk [data-role-note]`),
		chromedp.Evaluate(`document.querySelectorAll('#bulk-send').length`, &sends),
	); err != nil {
		t.Fatalf("viewer overview: %v", err)
	}
	if sends != 0 {
		t.Errorf("viewer sees %d bulk Send buttons", sends)
	}
	if err := chromedp.Run(ctx,
		browsertest.ClickNow(`tr[data-device="pi-01"] a`),
		chromedp.WaitVisible(`#console [data-role-note]`),
		chromedp.WaitVisible(`table.commands tbody tr[data-command]`),
		chromedp.Evaluate(`document.querySelectorAll('#cmd-send, #console input[name=command], button.cancel').length`, &sends),
		chromedp.Evaluate(`document.querySelectorAll('#console [data-role-note]').length`, &notes),
	); err != nil {
		t.Fatalf("viewer device page: %v", err)
	}
	if sends != 0 || notes != 1 {
		t.Errorf("viewer console: %d send controls, %d role notes; want 0 and 1", sends, notes)
	}
	if err := chromedp.Run(ctx,
		chromedp.Click(`button[title="Toggle dark/light theme"]`),
		chromedp.WaitVisible(`#console [data-role-note]`),
	); err != nil {
		t.Fatal(err)
	}
	shot(t, ctx, "dashboard-device-viewer.png")
}

// shot saves a full-page PNG to the artifacts directory.
func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	var png []byte
	if err := chromedp.Run(ctx, chromedp.FullScreenshot(&png, 100)); err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	out := filepath.Join(artifactsDir(t), name)
	if err := os.WriteFile(out, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", out)
}
