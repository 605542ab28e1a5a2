// Package influxtest runs a real InfluxDB OSS 1.8 server for tests: a fresh
// influxd on free loopback ports with its data in the test's temp dir and the
// database "fleet" created. Every integration test in the repository that
// needs InfluxDB starts one with Start.
package influxtest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/hub/internal/testproc"
	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
)

// Database is the database every Server creates at start.
const Database = "fleet"

// EnvBinary names the environment variable that overrides where influxd is.
const EnvBinary = "FLEETWIRE_INFLUXD"

// Timeouts. Startup is usually ~1 s; the generous limit absorbs loaded CI
// machines without turning a slow start into a flaky failure.
const (
	startTimeout = 30 * time.Second
	stopTimeout  = 10 * time.Second
)

// Server is a running (or stopped) influxd owned by one test.
type Server struct {
	// URL is the HTTP base URL, e.g. http://127.0.0.1:41234.
	URL string
	// Database is the database created at start ("fleet").
	Database string
	// Bucket is the 2.x-style bucket name for Database on 1.8 ("fleet/autogen").
	Bucket string
	// DataDir holds meta, data and wal; it survives Stop and Restart.
	DataDir string

	proc *testproc.Proc
}

// Start starts a fresh influxd on 127.0.0.1 (free ports) with data in
// t.TempDir(), creates database "fleet" and registers cleanup. The binary is
// $FLEETWIRE_INFLUXD, else <repo root>/.tools/bin/influxd, else influxd on
// PATH; if none exists the test fails telling to run `make tools`.
func Start(t testing.TB) *Server {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "influxd.conf")
	s := &Server{Database: Database, Bucket: Database + "/autogen", DataDir: dir}
	s.proc = &testproc.Proc{
		Name: "influxd",
		Args: []string{findBinary(t), "run", "-config", conf},
		// influxd reads INFLUXDB_* variables as config overrides; keep only
		// what it needs so the caller's environment cannot change the server.
		Env:          []string{"HOME=" + dir, "PATH=" + os.Getenv("PATH")},
		Logs:         []string{filepath.Join(dir, "influxd.log")},
		Ready:        func() error { return ping(s.URL) },
		StartTimeout: startTimeout,
		StopTimeout:  stopTimeout,
	}
	err := s.proc.StartFresh(func() error {
		httpAddr := testproc.FreeAddr(t)
		s.URL = "http://" + httpAddr
		return os.WriteFile(conf, []byte(renderConfig(dir, httpAddr, testproc.FreeAddr(t))), 0o600)
	})
	if err != nil {
		t.Fatalf("influxtest: %v\n%s", err, s.logTail())
	}
	t.Cleanup(func() { s.stop(t, syscall.SIGTERM) })
	s.exec(t, fmt.Sprintf("CREATE DATABASE %q", Database))
	return s
}

// renderConfig returns an influxd 1.8 config with every directory under dir,
// HTTP (with Flux) and RPC on the given loopback addresses, and every
// optional service off so the server starts fast and touches nothing outside
// dir.
func renderConfig(dir, httpAddr, rpcAddr string) string {
	return fmt.Sprintf(`reporting-disabled = true
bind-address = %[3]q

[meta]
  dir = %[1]q

[data]
  dir = %[4]q
  wal-dir = %[5]q
  query-log-enabled = false
  wal-fsync-delay = "0s"

[retention]
  enabled = false

[shard-precreation]
  enabled = false

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = %[2]q
  auth-enabled = false
  log-enabled = false
  write-tracing = false
  pprof-enabled = false
  flux-enabled = true
  flux-log-enabled = false

[logging]
  level = "warn"
  suppress-logo = true

[subscriber]
  enabled = false

[continuous_queries]
  enabled = false
`, filepath.Join(dir, "meta"), httpAddr, rpcAddr, filepath.Join(dir, "data"), filepath.Join(dir, "wal"))
}

// findBinary locates influxd; see Start for the order.
func findBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(EnvBinary); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("influxd not found: $%s=%s: %v", EnvBinary, p, err)
		}
		return p
	}
	if root, ok := repoRoot(); ok {
		p := filepath.Join(root, ".tools", "bin", "influxd")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("influxd"); err == nil {
		return p
	}
	t.Fatalf("influxd not found: run `make tools` (installs InfluxDB OSS 1.8.10 into .tools/bin), or set $%s", EnvBinary)
	return ""
}

// repoRoot walks up from the working directory (the package under test) to
// the directory holding go.mod.
func repoRoot() (string, bool) {
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

// ping returns nil when influxd's /ping answers 204.
func ping(base string) error {
	client := &http.Client{Timeout: time.Second}
	resp, err := client.Get(base + "/ping")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("ping status %d", resp.StatusCode)
	}
	return nil
}

// logTail returns the end of influxd's log for failure messages.
func (s *Server) logTail() string {
	b := s.proc.Log()
	const max = 4000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return "influxd log:\n" + b
}

// Stop stops influxd gracefully (SIGTERM, then SIGKILL after 10 s). The data
// directory is kept so Restart can bring the same data back.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	s.stop(t, syscall.SIGTERM)
}

// Kill stops influxd with SIGKILL, as a crash would.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	s.stop(t, syscall.SIGKILL)
}

// Restart starts influxd again on the same port with the same data, after
// Stop or Kill (it stops a running server first).
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.stop(t, syscall.SIGTERM)
	if err := s.proc.Start(); err != nil {
		t.Fatalf("influxtest: %v\n%s", err, s.logTail())
	}
}

// Pause freezes influxd (SIGSTOP): connections stay open and hang, as with
// a server that stalls. Resume (SIGCONT) ends it. Stop and Kill resume a
// paused server first.
func (s *Server) Pause(t testing.TB) { s.signal(t, syscall.SIGSTOP) }

// Resume continues a paused influxd.
func (s *Server) Resume(t testing.TB) { s.signal(t, syscall.SIGCONT) }

func (s *Server) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := s.proc.Signal(sig); err != nil {
		t.Fatalf("influxtest: %v", err)
	}
}

// Running reports whether influxd is running.
func (s *Server) Running() bool { return s.proc.Running() }

func (s *Server) stop(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := s.proc.Stop(sig); err != nil {
		t.Errorf("influxtest: %v\n%s", err, s.logTail())
	}
}

// exec runs an InfluxQL statement over /query and fails the test on error.
func (s *Server) exec(t testing.TB, q string) {
	t.Helper()
	if err := s.InfluxQL(q); err != nil {
		t.Fatalf("influxtest: %v", err)
	}
}

// InfluxQL runs an InfluxQL statement (e.g. DROP DATABASE "fleet") over the
// 1.x /query endpoint and returns an error if the server refused it.
func (s *Server) InfluxQL(q string) error {
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.PostForm(s.URL+"/query", url.Values{"q": {q}})
	if err != nil {
		return fmt.Errorf("influxql %q: %w", q, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return fmt.Errorf("influxql %q: read: %w", q, err)
	}
	// /query answers 200 even for statement errors; they show up as an
	// "error" key in the JSON body.
	if resp.StatusCode != http.StatusOK || strings.Contains(string(body), `"error"`) {
		return fmt.Errorf("influxql %q: status %d: %s", q, resp.StatusCode, body)
	}
	return nil
}

// Query runs a Flux query through influxdb-client-go and returns the values
// of every record of every table, in order.
func (s *Server) Query(t testing.TB, flux string) []map[string]any {
	t.Helper()
	client := influxdb2.NewClient(s.URL, "")
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := client.QueryAPI("").Query(ctx, flux)
	if err != nil {
		t.Fatalf("influxtest: query: %v\n%s", err, flux)
	}
	defer res.Close()
	var out []map[string]any
	for res.Next() {
		out = append(out, res.Record().Values())
	}
	if err := res.Err(); err != nil {
		t.Fatalf("influxtest: query result: %v\n%s", err, flux)
	}
	return out
}

// CountPoints returns how many values of field in measurement are stored for
// device (tag device), over all time.
func (s *Server) CountPoints(t testing.TB, measurement, field, device string) int {
	t.Helper()
	q := fmt.Sprintf(`from(bucket: %s)
  |> range(start: 1970-01-01T00:00:00Z, stop: 2200-01-01T00:00:00Z)
  |> filter(fn: (r) => r._measurement == %s and r._field == %s and r.device == %s)
  |> group()
  |> count()`, FluxString(s.Bucket), FluxString(measurement), FluxString(field), FluxString(device))
	n := 0
	for _, rec := range s.Query(t, q) {
		v, ok := rec["_value"].(int64)
		if !ok {
			t.Fatalf("influxtest: count: _value is %T", rec["_value"])
		}
		n += int(v)
	}
	return n
}

// FluxString quotes s as a Flux string literal.
func FluxString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(s) + `"`
}
