// Package dashboard embeds the built web app (dashboard/dist, produced by
// `make dashboard` / dashboard/build.sh) and serves it. The Go build never
// needs npm: dist/.gitkeep is committed so the embed pattern always matches,
// and Handler explains what to run when the app has not been built.
package dashboard

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

//go:embed all:dist
var files embed.FS

// contentSecurityPolicy allows only the hub's own scripts, styles, images
// and connections. CSP Level 3 makes 'self' match ws:// and wss:// on the
// page's own host, which is all the live socket needs. uPlot sets styles
// through the CSSOM (element.style), which style-src does not restrict.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; " +
	"img-src 'self' data:; font-src 'self'; connect-src 'self'; manifest-src 'self'; " +
	"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// Cache policies: Vite puts content-hashed files under assets/, so they
// never change; everything else (index.html above all) must be revalidated
// so a new hub version is picked up at once.
const (
	cacheImmutable  = "public, max-age=31536000, immutable"
	cacheRevalidate = "no-cache"
)

func dist() fs.FS {
	sub, err := fs.Sub(files, "dist")
	if err != nil { // only if the embed pattern changed; a programming error
		panic("dashboard: " + err.Error())
	}
	return sub
}

// Built reports whether the embedded dist holds a built app (index.html).
func Built() bool {
	_, err := fs.Stat(dist(), "index.html")
	return err == nil
}

// Handler serves the single-page app: files from dist, index.html for any
// other path that does not look like a file (client-side routes), and 404
// for missing assets and for /api/ and /v1/ paths (those belong to the hub;
// a typo there must not answer 200 with HTML). Every answer carries the
// security headers. Without a build it answers 503 naming the make target.
func Handler() http.Handler { return newHandler(dist()) }

func newHandler(root fs.FS) http.Handler {
	_, err := fs.Stat(root, "index.html")
	built := err == nil
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setSecurityHeaders(w.Header())
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if !built {
			http.Error(w, "dashboard not built: run `make dashboard` (dashboard/build.sh) and rebuild fleethub",
				http.StatusServiceUnavailable)
			return
		}
		serve(w, r, root)
	})
}

func serve(w http.ResponseWriter, r *http.Request, root fs.FS) {
	p := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
	if p == "api" || p == "v1" || strings.HasPrefix(p, "api/") || strings.HasPrefix(p, "v1/") {
		http.NotFound(w, r)
		return
	}
	if p != "" && p != "index.html" && !strings.HasPrefix(path.Base(p), ".") {
		if st, err := fs.Stat(root, p); err == nil && !st.IsDir() {
			if strings.HasPrefix(p, "assets/") {
				w.Header().Set("Cache-Control", cacheImmutable)
			} else {
				w.Header().Set("Cache-Control", cacheRevalidate)
			}
			http.ServeFileFS(w, r, root, p)
			return
		}
		if path.Ext(p) != "" { // a missing file, not a client route
			http.NotFound(w, r)
			return
		}
	}
	serveIndex(w, r, root)
}

// serveIndex writes index.html directly: http.ServeFileFS would redirect
// "/index.html" to "/".
func serveIndex(w http.ResponseWriter, r *http.Request, root fs.FS) {
	b, err := fs.ReadFile(root, "index.html")
	if err != nil {
		http.Error(w, "dashboard index missing", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Cache-Control", cacheRevalidate)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(b)
}

func setSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY") // for browsers without frame-ancestors
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
}
