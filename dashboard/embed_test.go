package dashboard

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
)

func TestHandlerRoutesAndHeaders(t *testing.T) {
	h := newHandler(fstest.MapFS{
		"index.html":          {Data: []byte("<!doctype html><title>fw</title>")},
		"assets/index-abc.js": {Data: []byte("console.log(1)")},
		"favicon.svg":         {Data: []byte("<svg/>")},
		".gitkeep":            {},
	})
	cases := []struct {
		method, path string
		code         int
		cache, body  string
	}{
		{"GET", "/", 200, "no-cache", "<title>fw"},
		{"GET", "/index.html", 200, "no-cache", "<title>fw"},
		{"GET", "/device/pi-01", 200, "no-cache", "<title>fw"},
		{"GET", "/assets/index-abc.js", 200, "immutable", "console.log"},
		{"GET", "/favicon.svg", 200, "no-cache", "<svg"},
		{"GET", "/assets/missing.js", 404, "", ""},
		{"GET", "/.gitkeep", 200, "no-cache", "<title>fw"}, // dotfiles are never served
		{"GET", "/api/v1/nope", 404, "", ""},
		{"GET", "/v1/live", 404, "", ""},
		{"POST", "/", 405, "", ""},
	}
	for _, c := range cases {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(c.method, c.path, nil))
		if rec.Code != c.code {
			t.Errorf("%s %s: code %d, want %d", c.method, c.path, rec.Code, c.code)
		}
		if cc := rec.Header().Get("Cache-Control"); c.cache != "" && !strings.Contains(cc, c.cache) {
			t.Errorf("%s %s: Cache-Control %q, want %q", c.method, c.path, cc, c.cache)
		}
		if !strings.Contains(rec.Body.String(), c.body) {
			t.Errorf("%s %s: body %.60q, want %q", c.method, c.path, rec.Body.String(), c.body)
		}
		checkSecurityHeaders(t, rec.Header())
	}
}

func TestHandlerNotBuilt(t *testing.T) {
	rec := httptest.NewRecorder()
	newHandler(fstest.MapFS{".gitkeep": {}}).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "make dashboard") {
		t.Errorf("not built: %d %q", rec.Code, rec.Body.String())
	}
	checkSecurityHeaders(t, rec.Header())
}

func checkSecurityHeaders(t *testing.T, h http.Header) {
	t.Helper()
	csp := h.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe") {
		t.Errorf("CSP allows unsafe sources: %q", csp)
	}
	if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "same-origin" {
		t.Errorf("headers: %v", h)
	}
}
