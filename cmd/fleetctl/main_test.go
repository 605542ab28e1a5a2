package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/hub/api"
	"github.com/fleetwire/fleetwire/hub/store"
	"go.yaml.in/yaml/v3"
)

// fakeSessions is the hub's session registry as a function-field fake.
type fakeSessions struct {
	OnlineFn     func(id string) bool
	DisconnectFn func(id, reason string)
}

func (f fakeSessions) Online(id string) bool        { return f.OnlineFn(id) }
func (f fakeSessions) Disconnect(id, reason string) { f.DisconnectFn(id, reason) }
func (f fakeSessions) RequestRotation(string) bool  { return false }

// harness is a real hub API (real store, TLS on loopback) and the env
// fleetctl sees.
type harness struct {
	t      *testing.T
	st     *store.Store
	svc    *hub.CommandService
	srv    *httptest.Server
	env    map[string]string
	now    time.Time
	dir    string
	mu     sync.Mutex
	closed []string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(context.Background(), filepath.Join(dir, "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	token, _, err := st.EnsureAdminToken(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	svc := hub.NewCommandService(st, hub.NewRegistry(hub.NewMetrics(nil)), hub.NewCommandMetrics(nil), nil)
	h := &harness{t: t, st: st, svc: svc, dir: dir, now: time.Now()}
	sess := fakeSessions{
		OnlineFn: func(id string) bool { return id == "pi-01" },
		DisconnectFn: func(id, reason string) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.closed = append(h.closed, id+":"+reason)
		},
	}
	h.srv = httptest.NewTLSServer(api.New(api.Config{
		Store: st, Sessions: sess, Commands: svc, HubURL: "wss://hub.example:8443/v1/device", CAFingerprint: strings.Repeat("0f", 32),
	}))
	t.Cleanup(h.srv.Close)
	caFile := filepath.Join(dir, "ca.pem")
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: h.srv.Certificate().Raw})
	if err := os.WriteFile(caFile, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	h.env = map[string]string{"FLEETCTL_HUB": h.srv.URL, "FLEETCTL_TOKEN": token, "FLEETCTL_CA_FILE": caFile}
	return h
}

// run runs fleetctl in-process with stdin "" and returns its results.
func (h *harness) run(args ...string) (int, string, string) {
	return h.runIn("", args...)
}

func (h *harness) runIn(stdin string, args ...string) (int, string, string) {
	h.t.Helper()
	var out, errb bytes.Buffer
	code := Run(context.Background(), args, System{
		Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb,
		Getenv: func(k string) string { return h.env[k] },
		Now:    func() time.Time { return h.now },
	})
	return code, out.String(), errb.String()
}

// ok runs fleetctl and fails the test unless it exits 0.
func (h *harness) ok(args ...string) string {
	h.t.Helper()
	code, out, errs := h.run(args...)
	if code != 0 {
		h.t.Fatalf("fleetctl %v: exit %d\nstdout: %s\nstderr: %s", args, code, out, errs)
	}
	return out
}

func (h *harness) disconnects() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.closed...)
}

func TestDeviceLifecycle(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()

	out := h.ok("device", "add", "pi-01", "--label", "site=lab", "-l", "rack=r1")
	token := findToken(t, out)
	if d, err := h.st.AuthenticateDevice(ctx, token); err != nil || d.Labels["rack"] != "r1" {
		t.Fatalf("printed token does not authenticate: %v", err)
	}
	for _, want := range []string{"Added device pi-01", "shown only this once", `device_id: "pi-01"`, "wss://hub.example:8443/v1/device", "ca_fingerprint"} {
		if !strings.Contains(out, want) {
			t.Errorf("add output lacks %q:\n%s", want, out)
		}
	}
	h.ok("device", "add", "pi-02")
	if err := h.st.TouchDevice(ctx, "pi-01", h.now.Add(-5*time.Minute), "0.3.1"); err != nil {
		t.Fatal(err)
	}

	out = h.ok("device", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || strings.Join(strings.Fields(lines[0]), " ") != "ID ONLINE LAST SEEN LABELS AGENT" {
		t.Fatalf("list output:\n%s", out)
	}
	if got := strings.Fields(lines[1]); strings.Join(got, " ") != "pi-01 yes 5m ago rack=r1,site=lab 0.3.1" {
		t.Fatalf("pi-01 row %q", lines[1])
	}
	if got := strings.Fields(lines[2]); strings.Join(got, " ") != "pi-02 no never - -" {
		t.Fatalf("pi-02 row %q", lines[2])
	}

	out = h.ok("device", "show", "pi-01")
	for _, want := range []string{"pi-01", "yes", "rack=r1,site=lab", "5m ago", "0.3.1"} {
		if !strings.Contains(out, want) {
			t.Errorf("show output lacks %q:\n%s", want, out)
		}
	}

	// Once another device runs a newer agent, pi-01's is marked behind.
	if err := h.st.TouchDevice(ctx, "pi-02", h.now.Add(-time.Minute), "0.4.0"); err != nil {
		t.Fatal(err)
	}
	out = h.ok("device", "list")
	if !strings.Contains(out, "0.3.1 (behind)") || strings.Contains(out, "0.4.0 (behind)") {
		t.Errorf("list after an upgrade elsewhere:\n%s", out)
	}
	if out = h.ok("device", "show", "pi-01"); !strings.Contains(out, "0.3.1 (behind)") {
		t.Errorf("show of the older agent:\n%s", out)
	}

	out = h.ok("device", "revoke", "pi-01")
	if !strings.Contains(out, "Revoked device pi-01") || !strings.Contains(out, "revoked") {
		t.Fatalf("revoke output:\n%s", out)
	}
	if got := h.disconnects(); len(got) != 1 || got[0] != "pi-01:revoked" {
		t.Fatalf("disconnects %v", got)
	}
	if _, err := h.st.AuthenticateDevice(ctx, token); err != hub.ErrRevoked {
		t.Fatalf("token after revoke: %v", err)
	}

	out = h.ok("device", "delete", "pi-01", "--yes")
	if !strings.Contains(out, "Deleted device pi-01") {
		t.Fatalf("delete output %q", out)
	}
	code, _, errs := h.run("device", "show", "pi-01")
	if code != 1 || strings.TrimSpace(errs) != "fleetctl: device pi-01 not found (404)" {
		t.Fatalf("show deleted: exit %d, stderr %q", code, errs)
	}
}

// findToken returns the one fwd_ token on its own line of out.
func findToken(t *testing.T, out string) string {
	t.Helper()
	var found []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.TrimSpace(line); strings.HasPrefix(f, "fwd_") {
			found = append(found, f)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want the token on one line of its own, found %d:\n%s", len(found), out)
	}
	return found[0]
}

func TestJSONOutput(t *testing.T) {
	h := newHarness(t)
	var added struct {
		Device struct {
			ID     string            `json:"id"`
			Labels map[string]string `json:"labels"`
		} `json:"device"`
		Token       string `json:"token"`
		AgentConfig string `json:"agent_config"`
	}
	decodeJSON(t, h.ok("device", "add", "pi-01", "-l", "site=lab", "-o", "json"), &added)
	if added.Device.ID != "pi-01" || added.Device.Labels["site"] != "lab" || !strings.HasPrefix(added.Token, "fwd_") || added.AgentConfig == "" {
		t.Fatalf("add json %+v", added)
	}
	var list struct {
		Devices []struct {
			ID     string `json:"id"`
			Online bool   `json:"online"`
		} `json:"devices"`
	}
	decodeJSON(t, h.ok("device", "list", "--output", "json"), &list)
	if len(list.Devices) != 1 || list.Devices[0].ID != "pi-01" || !list.Devices[0].Online {
		t.Fatalf("list json %+v", list)
	}
	var show struct {
		Device struct {
			ID      string `json:"id"`
			Revoked bool   `json:"revoked"`
		} `json:"device"`
	}
	decodeJSON(t, h.ok("device", "revoke", "pi-01", "-o", "json"), &show)
	if show.Device.ID != "pi-01" || !show.Device.Revoked {
		t.Fatalf("revoke json %+v", show)
	}
	decodeJSON(t, h.ok("device", "show", "pi-01", "-o", "json"), &show)
	if !show.Device.Revoked {
		t.Fatalf("show json %+v", show)
	}
	var del map[string]string
	decodeJSON(t, h.ok("device", "delete", "pi-01", "--yes", "-o", "json"), &del)
	if del["deleted"] != "pi-01" {
		t.Fatalf("delete json %v", del)
	}
}

func decodeJSON(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, s)
	}
}

func TestConfigOut(t *testing.T) {
	h := newHarness(t)
	path := filepath.Join(h.dir, "pi-01.yaml")
	out := h.ok("device", "add", "pi-01", "--config-out", path)
	token := findToken(t, out)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config file: %v, mode %v", err, fi.Mode())
	}
	b, _ := os.ReadFile(path)
	var cfg struct {
		DeviceID string            `yaml:"device_id"`
		Hub      map[string]string `yaml:"hub"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil || cfg.DeviceID != "pi-01" || cfg.Hub["token"] != token {
		t.Fatalf("config file %v:\n%s", err, b)
	}
	if strings.Contains(out, "device_id:") {
		t.Fatalf("config printed although written to a file:\n%s", out)
	}
	// An existing file is not overwritten, but the new token is still shown.
	code, out, errs := h.run("device", "add", "pi-02", "--config-out", path)
	if code != 1 || !strings.Contains(errs, "write agent config") || !strings.Contains(out, "device_id: \"pi-02\"") {
		t.Fatalf("existing config file: exit %d\nstdout %s\nstderr %s", code, out, errs)
	}
	findToken(t, out)
	if b2, _ := os.ReadFile(path); !bytes.Equal(b, b2) {
		t.Fatal("existing config file was overwritten")
	}
}

func TestDeleteConfirmation(t *testing.T) {
	h := newHarness(t)
	h.ok("device", "add", "pi-01")
	code, _, errs := h.runIn("n\n", "device", "delete", "pi-01")
	if code != 1 || !strings.Contains(errs, "Delete device pi-01") || !strings.Contains(errs, "not deleted") {
		t.Fatalf("declined delete: exit %d, stderr %q", code, errs)
	}
	if _, err := h.st.GetDevice(context.Background(), "pi-01"); err != nil {
		t.Fatalf("device gone after a declined delete: %v", err)
	}
	if code, _, errs := h.runIn("y\n", "device", "delete", "pi-01"); code != 0 {
		t.Fatalf("confirmed delete: exit %d, stderr %q", code, errs)
	}
	if got := h.disconnects(); len(got) != 1 || got[0] != "pi-01:deleted" {
		t.Fatalf("disconnects %v", got)
	}
}

func TestTokenFile(t *testing.T) {
	h := newHarness(t)
	file := filepath.Join(h.dir, "token")
	if err := os.WriteFile(file, []byte(h.env["FLEETCTL_TOKEN"]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	delete(h.env, "FLEETCTL_TOKEN")
	h.ok("--token-file", file, "device", "list")
	code, _, errs := h.run("--token-file", file, "--token", "fwa_x", "device", "list")
	if code != 2 || !strings.Contains(errs, "not both") {
		t.Fatalf("token and token file: exit %d, %q", code, errs)
	}
}

func TestErrors(t *testing.T) {
	h := newHarness(t)
	h.ok("device", "add", "pi-01")
	cases := []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string
	}{
		{"conflict", nil, []string{"device", "add", "pi-01"}, 1, "fleetctl: device pi-01: already exists (409)"},
		{"invalid id", nil, []string{"device", "add", "Bad"}, 1, "(400)"},
		{"reserved label", nil, []string{"device", "add", "pi-02", "-l", "device=x"}, 1, "reserved (400)"},
		{"revoke unknown", nil, []string{"device", "revoke", "nope"}, 1, "fleetctl: device nope not found (404)"},
		{"delete unknown", nil, []string{"device", "delete", "nope", "--yes"}, 1, "not found (404)"},
		{"wrong token", map[string]string{"FLEETCTL_TOKEN": "fwa_" + strings.Repeat("A", 43)}, []string{"device", "list"}, 1, "invalid API token (401)"},
		{"no token", map[string]string{"FLEETCTL_TOKEN": ""}, []string{"device", "list"}, 2, "no API token"},
		{"no hub", map[string]string{"FLEETCTL_HUB": ""}, []string{"device", "list"}, 2, "no hub address"},
		{"plain http", map[string]string{"FLEETCTL_HUB": strings.Replace(h.srv.URL, "https", "http", 1)}, []string{"device", "list"}, 2, "https://"},
		{"untrusted CA", map[string]string{"FLEETCTL_CA_FILE": ""}, []string{"device", "list"}, 1, "--ca-file"},
		{"bad CA file", map[string]string{"FLEETCTL_CA_FILE": filepath.Join(h.dir, "hub.db")}, []string{"device", "list"}, 1, "no PEM certificates"},
		{"bad label flag", nil, []string{"device", "add", "pi-03", "-l", "novalue"}, 2, "want key=value"},
		{"missing arg", nil, []string{"device", "show"}, 2, "want a device ID"},
		{"unknown command", nil, []string{"device", "frobnicate"}, 2, "unknown command"},
		{"unknown flag", nil, []string{"device", "list", "--bogus"}, 2, "unknown flag"},
		{"bad output", nil, []string{"device", "list", "-o", "xml"}, 2, "table or json"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			saved := h.env
			h.env = merge(saved, tc.env)
			defer func() { h.env = saved }()
			code, out, errs := h.run(tc.args...)
			if code != tc.code || !strings.Contains(errs, tc.want) || !strings.HasPrefix(errs, "fleetctl: ") {
				t.Fatalf("exit %d (want %d)\nstdout %s\nstderr %s\nwant stderr containing %q", code, tc.code, out, errs, tc.want)
			}
		})
	}
	if list, _ := h.st.ListDevices(context.Background()); len(list) != 1 {
		t.Fatalf("failed commands changed the registry: %+v", list)
	}
}

func merge(a, b map[string]string) map[string]string {
	m := map[string]string{}
	for k, v := range a {
		m[k] = v
	}
	for k, v := range b {
		m[k] = v
	}
	return m
}

func TestHelpHidesToken(t *testing.T) {
	h := newHarness(t)
	out := h.ok("--help")
	if strings.Contains(out, h.env["FLEETCTL_TOKEN"]) || !strings.Contains(out, "device") {
		t.Fatalf("help output:\n%s", out)
	}
	if out := h.ok(); !strings.Contains(out, "Usage:") {
		t.Fatalf("bare fleetctl:\n%s", out)
	}
}

func TestRelTime(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { t := now.Add(-d); return &t }
	cases := []struct {
		t    *time.Time
		want string
	}{
		{nil, "never"},
		{at(-time.Minute), "just now"},
		{at(0), "0s ago"},
		{at(59 * time.Second), "59s ago"},
		{at(time.Minute), "1m ago"},
		{at(59 * time.Minute), "59m ago"},
		{at(time.Hour), "1h ago"},
		{at(47 * time.Hour), "47h ago"},
		{at(48 * time.Hour), "2d ago"},
	}
	for _, c := range cases {
		if got := relTime(c.t, now); got != c.want {
			t.Errorf("relTime(%v) = %q, want %q", c.t, got, c.want)
		}
	}
}
