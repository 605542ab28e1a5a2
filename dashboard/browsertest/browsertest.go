// Package browsertest starts Debian's Chromium for the dashboard's tests
// (chromedp). A missing browser fails the test: CI never skips it.
package browsertest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Start launches headless Chromium ($FLEETWIRE_CHROMIUM, default
// /usr/bin/chromium) with a fresh profile and the flags this machine needs
// (no background networking: the network is closed), plus extra options.
// The returned context drives the browser until the test ends.
func Start(t testing.TB, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	bin := os.Getenv("FLEETWIRE_CHROMIUM")
	if bin == "" {
		bin = "/usr/bin/chromium"
	}
	if _, err := exec.LookPath(bin); err != nil {
		t.Fatalf("chromium not found at %s (%v): run `make tools dashboard` (Debian package chromium)", bin, err)
	}
	// Not t.TempDir: Chromium's helper processes may still write to the
	// profile for a moment after the browser exits, so removal retries.
	profile, err := os.MkdirTemp("", "fleetwire-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for i := 0; i < 50 && os.RemoveAll(profile) != nil; i++ {
			time.Sleep(100 * time.Millisecond) // retry interval of the cleanup
		}
	})
	opts := append([]chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 800),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-default-browser-check", true),
	}, extra...)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	timeout := 60 * time.Second
	if _, bench := t.(*testing.B); bench {
		timeout = 10 * time.Minute // a benchmark's length depends on b.N
	}
	ctx, cancelTimeout := context.WithTimeout(ctx, timeout)
	t.Cleanup(func() { cancelTimeout(); cancel(); cancelAlloc() })
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("start chromium %s: %v", bin, err)
	}
	return ctx
}

// Artifacts is where screenshots go: $FLEETWIRE_ARTIFACTS, or a temp dir.
func Artifacts(t testing.TB) string {
	dir := os.Getenv("FLEETWIRE_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// ClickNow clicks the first element matching the CSS selector sel, finding
// and clicking it in one JavaScript turn. The overview rebuilds its rows
// as live updates arrive, so a node chromedp.Click has found can be
// replaced before its click lands ("Could not find node with given id").
func ClickNow(sel string) chromedp.Action {
	return chromedp.ActionFunc(func(ctx context.Context) error {
		q, err := json.Marshal(sel)
		if err != nil {
			return err
		}
		var ok bool
		js := `(() => { const e = document.querySelector(` + string(q) + `); if (!e) return false; e.click(); return true })()`
		if err := chromedp.Evaluate(js, &ok).Do(ctx); err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("click: no element matches %s", sel)
		}
		return nil
	})
}
