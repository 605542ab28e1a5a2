package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/fleetwire/fleetwire/agent/agentconf"
	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/hub/store"
	"go.yaml.in/yaml/v3"
)

// fakeSessions is a Sessions with function fields.
type fakeSessions struct {
	OnlineFn     func(id string) bool
	DisconnectFn func(id, reason string)
	rotations    recorder
}

func (f *fakeSessions) Online(id string) bool { return f.OnlineFn(id) }

func (f *fakeSessions) Disconnect(id, reason string) { f.DisconnectFn(id, reason) }
func (f *fakeSessions) RequestRotation(id string) bool {
	online := f.Online(id)
	f.rotations.add(id)
	return online
}

// recorder keeps Disconnect calls and the revoked state seen at that time.
type recorder struct {
	mu    sync.Mutex
	calls []string
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, s)
}

func (r *recorder) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

type env struct {
	t     *testing.T
	srv   *httptest.Server
	st    *store.Store
	svc   *hub.CommandService
	waits chan string // ids of long polls that reached Commands.Wait
	token string
	disc  *recorder
	sess  *fakeSessions
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	tok, _, err := st.EnsureAdminToken(ctx)
	if err != nil {
		t.Fatal(err)
	}
	svc := hub.NewCommandService(st, hub.NewRegistry(hub.NewMetrics(nil)), hub.NewCommandMetrics(nil), nil)
	e := &env{t: t, st: st, svc: svc, waits: make(chan string, 16), token: tok, disc: &recorder{}}
	sess := &fakeSessions{
		OnlineFn: func(id string) bool { return id == "pi-online" },
		DisconnectFn: func(id, reason string) {
			// Record whether the token was already dead when the session
			// was closed: revocation must come first.
			d, _ := st.GetDevice(context.Background(), id)
			e.disc.add(fmt.Sprintf("%s:%s:revoked=%v", id, reason, d.Revoked))
		},
	}
	e.sess = sess
	e.srv = httptest.NewServer(New(Config{
		Store: st, Sessions: sess, Commands: waitSignal{svc, e.waits}, HubURL: "wss://hub.example:8443/v1/device", CAFingerprint: strings.Repeat("ab", 32),
	}))
	t.Cleanup(e.srv.Close)
	return e
}

// do sends a request with the admin token and returns status and body.
func (e *env) do(method, path, body string) (int, []byte) {
	e.t.Helper()
	return e.doWith(method, path, body, "Bearer "+e.token, "application/json")
}

func (e *env) doWith(method, path, body, auth, ctype string) (int, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, b
}

func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

// wantError checks the status and that the body is a JSON error.
func wantError(t *testing.T, status int, body []byte, wantStatus int, contains string) {
	t.Helper()
	if status != wantStatus {
		t.Fatalf("status %d, want %d; body %s", status, wantStatus, body)
	}
	e := decode[errorBody](t, body)
	if e.Error == "" || !strings.Contains(e.Error, contains) {
		t.Fatalf("error %q does not contain %q", e.Error, contains)
	}
}

func TestCreateDevice(t *testing.T) {
	e := newEnv(t)
	status, body := e.do("POST", "/api/v1/devices", `{"id":"pi-01","labels":{"site":"lab"}}`)
	if status != http.StatusCreated {
		t.Fatalf("status %d: %s", status, body)
	}
	resp := decode[CreateDeviceResponse](t, body)
	if resp.Device.ID != "pi-01" || resp.Device.Labels["site"] != "lab" || !strings.HasPrefix(resp.Token, "fwd_") {
		t.Fatalf("response %+v", resp)
	}
	if d, err := e.st.AuthenticateDevice(context.Background(), resp.Token); err != nil || d.ID != "pi-01" {
		t.Fatalf("returned token does not authenticate: %v", err)
	}
	var cfg struct {
		DeviceID string `yaml:"device_id"`
		Interval string `yaml:"interval"`
		Spool    struct {
			Dir      string `yaml:"dir"`
			MaxBytes string `yaml:"max_bytes"`
		} `yaml:"spool"`
	}
	var raw map[string]any
	if err := yaml.Unmarshal([]byte(resp.AgentConfig), &raw); err != nil {
		t.Fatalf("agent config is not YAML: %v\n%s", err, resp.AgentConfig)
	}
	hubMap, _ := raw["hub"].(map[string]any)
	if err := yaml.Unmarshal([]byte(resp.AgentConfig), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.DeviceID != "pi-01" || hubMap["url"] != "wss://hub.example:8443/v1/device" || hubMap["token"] != resp.Token ||
		hubMap["ca_fingerprint"] != strings.Repeat("ab", 32) || hubMap["ca_file"] != nil ||
		cfg.Interval != "10s" || cfg.Spool.Dir != "/var/lib/fleetagent/spool" || cfg.Spool.MaxBytes != "64MiB" {
		t.Fatalf("agent config:\n%s", resp.AgentConfig)
	}

	status, body = e.do("POST", "/api/v1/devices", `{"id":"pi-01"}`)
	wantError(t, status, body, http.StatusConflict, "already exists")
	status, body = e.do("POST", "/api/v1/devices", `{"id":"Bad ID"}`)
	wantError(t, status, body, http.StatusBadRequest, "device id")
	status, body = e.do("POST", "/api/v1/devices", `{"id":"pi-02","labels":{"device":"x"}}`)
	wantError(t, status, body, http.StatusBadRequest, "reserved")
}

func TestAgentConfigWithoutFingerprint(t *testing.T) {
	out := agentConfig("pi-01", "fwd_x", "", "")
	var raw struct {
		Hub map[string]any `yaml:"hub"`
	}
	if err := yaml.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if raw.Hub["ca_file"] != DefaultCAFile || raw.Hub["ca_fingerprint"] != nil || raw.Hub["url"] != agentconf.PlaceholderHubURL {
		t.Fatalf("config:\n%s", out)
	}
}

func TestBodyRules(t *testing.T) {
	e := newEnv(t)
	status, body := e.do("POST", "/api/v1/devices", `{"id":"pi-01","colour":"red"}`)
	wantError(t, status, body, http.StatusBadRequest, "unknown field")
	status, body = e.do("POST", "/api/v1/devices", `{"id":"pi-01"}{"id":"pi-02"}`)
	wantError(t, status, body, http.StatusBadRequest, "after the JSON object")
	status, body = e.do("POST", "/api/v1/devices", `{"id":`)
	wantError(t, status, body, http.StatusBadRequest, "invalid JSON")
	status, body = e.doWith("POST", "/api/v1/devices", `{"id":"pi-01"}`, "Bearer "+e.token, "text/plain")
	wantError(t, status, body, http.StatusUnsupportedMediaType, "Content-Type")
	status, body = e.doWith("POST", "/api/v1/devices", `{"id":"pi-01"}`, "Bearer "+e.token, "")
	wantError(t, status, body, http.StatusUnsupportedMediaType, "Content-Type")
	status, _ = e.doWith("POST", "/api/v1/devices", `{"id":"pi-ct"}`, "Bearer "+e.token, "application/json; charset=utf-8")
	if status != http.StatusCreated {
		t.Fatalf("json with charset: status %d", status)
	}
}

func TestBodyLimit(t *testing.T) {
	e := newEnv(t)
	pad := func(obj string, size int) string { return obj + strings.Repeat(" ", size-len(obj)) }
	at := pad(`{"id":"pi-at"}`, MaxBodyBytes)
	if status, body := e.do("POST", "/api/v1/devices", at); status != http.StatusCreated {
		t.Fatalf("body of exactly %d bytes: status %d %s", len(at), status, body)
	}
	past := pad(`{"id":"pi-past"}`, MaxBodyBytes+1)
	status, body := e.do("POST", "/api/v1/devices", past)
	wantError(t, status, body, http.StatusRequestEntityTooLarge, "exceeds")
	if _, err := e.st.GetDevice(context.Background(), "pi-past"); err == nil {
		t.Fatal("device from an oversized body was created")
	}
	big := `{"id":"pi-big","labels":{"k":"` + strings.Repeat("v", MaxBodyBytes) + `"}}`
	status, body = e.do("POST", "/api/v1/devices", big)
	wantError(t, status, body, http.StatusRequestEntityTooLarge, "exceeds")
}

func TestAuth(t *testing.T) {
	e := newEnv(t)
	devTok := func() string {
		_, tok, err := e.st.CreateDevice(context.Background(), "pi-01", nil)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}()
	bad := map[string]string{
		"missing":      "",
		"wrong scheme": "Basic " + e.token,
		"no token":     "Bearer ",
		"wrong token":  "Bearer fwa_" + strings.Repeat("A", 43),
		"device token": "Bearer " + devTok,
		"garbage":      "Bearer x",
	}
	routes := [][2]string{
		{"GET", "/api/v1/devices"}, {"POST", "/api/v1/devices"}, {"GET", "/api/v1/devices/pi-01"},
		{"POST", "/api/v1/devices/pi-01/revoke"}, {"DELETE", "/api/v1/devices/pi-01"},
		{"GET", "/api/v1/deadletters"}, {"GET", "/api/v1/nothing"},
		{"POST", "/api/v1/commands"}, {"GET", "/api/v1/commands"}, {"GET", "/api/v1/commands/c1?wait=1s"},
		{"POST", "/api/v1/commands/c1/cancel"}, {"GET", "/api/v1/bulk/b1"},
		{"POST", "/api/v1/tokens"}, {"GET", "/api/v1/tokens"}, {"DELETE", "/api/v1/tokens/admin"},
	}
	for name, auth := range bad {
		for _, rt := range routes {
			status, body := e.doWith(rt[0], rt[1], `{"id":"pi-x"}`, auth, "application/json")
			if status != http.StatusUnauthorized || decode[errorBody](t, body).Error == "" {
				t.Errorf("%s %s with %s: status %d body %s", rt[0], rt[1], name, status, body)
			}
		}
	}
	if d, err := e.st.GetDevice(context.Background(), "pi-01"); err != nil || d.Revoked {
		t.Fatalf("unauthenticated requests changed the device: %+v %v", d, err)
	}
	if status, _ := e.doWith("GET", "/api/v1/devices", "", "bearer "+e.token, ""); status != http.StatusOK {
		t.Fatalf("lower-case scheme: status %d", status)
	}
}

func TestListAndGet(t *testing.T) {
	e := newEnv(t)
	for _, id := range []string{"pi-online", "pi-b", "pi-a"} {
		if status, body := e.do("POST", "/api/v1/devices", `{"id":"`+id+`"}`); status != http.StatusCreated {
			t.Fatalf("create %s: %d %s", id, status, body)
		}
	}
	status, body := e.do("GET", "/api/v1/devices", "")
	if status != http.StatusOK {
		t.Fatalf("list: %d %s", status, body)
	}
	list := decode[DeviceListResponse](t, body).Devices
	if len(list) != 3 || list[0].ID != "pi-a" || list[2].ID != "pi-online" || !list[2].Online || list[0].Online {
		t.Fatalf("list %+v", list)
	}
	status, body = e.do("GET", "/api/v1/devices/pi-online", "")
	if d := decode[DeviceResponse](t, body).Device; status != http.StatusOK || d.ID != "pi-online" || !d.Online {
		t.Fatalf("get: %d %s", status, body)
	}
	status, body = e.do("GET", "/api/v1/devices/nope", "")
	wantError(t, status, body, http.StatusNotFound, "device nope not found")
	status, body = e.do("GET", "/api/v1/elsewhere", "")
	wantError(t, status, body, http.StatusNotFound, "no such API route")
}

func TestEmptyListIsArray(t *testing.T) {
	e := newEnv(t)
	_, body := e.do("GET", "/api/v1/devices", "")
	if !bytes.Contains(body, []byte(`"devices": []`)) {
		t.Fatalf("empty list body %s", body)
	}
}

func TestRevoke(t *testing.T) {
	e := newEnv(t)
	_, body := e.do("POST", "/api/v1/devices", `{"id":"pi-01"}`)
	tok := decode[CreateDeviceResponse](t, body).Token
	status, body := e.do("POST", "/api/v1/devices/pi-01/revoke", "")
	if status != http.StatusOK || !decode[DeviceResponse](t, body).Device.Revoked {
		t.Fatalf("revoke: %d %s", status, body)
	}
	if got := e.disc.get(); len(got) != 1 || got[0] != "pi-01:revoked:revoked=true" {
		t.Fatalf("Disconnect calls %v; want one, after the store revoked", got)
	}
	if _, err := e.st.AuthenticateDevice(context.Background(), tok); err != hub.ErrRevoked {
		t.Fatalf("token after revoke: %v", err)
	}
	status, body = e.do("POST", "/api/v1/devices/nope/revoke", "")
	wantError(t, status, body, http.StatusNotFound, "not found")
	if got := e.disc.get(); len(got) != 1 {
		t.Fatalf("Disconnect called for an unknown device: %v", got)
	}
}

func TestDelete(t *testing.T) {
	e := newEnv(t)
	e.do("POST", "/api/v1/devices", `{"id":"pi-01"}`)
	status, body := e.do("DELETE", "/api/v1/devices/pi-01", "")
	if status != http.StatusNoContent || len(body) != 0 {
		t.Fatalf("delete: %d %s", status, body)
	}
	if got := e.disc.get(); len(got) != 1 || !strings.HasPrefix(got[0], "pi-01:deleted:") {
		t.Fatalf("Disconnect calls %v", got)
	}
	status, body = e.do("GET", "/api/v1/devices/pi-01", "")
	wantError(t, status, body, http.StatusNotFound, "not found")
	status, body = e.do("DELETE", "/api/v1/devices/pi-01", "")
	wantError(t, status, body, http.StatusNotFound, "not found")
}

func TestDeadLetters(t *testing.T) {
	e := newEnv(t)
	var dl []hub.DeadLetter
	for i := range 5 {
		dl = append(dl, hub.DeadLetter{DeviceID: "pi-01", Line: fmt.Sprintf("m v=%d", i), Error: "conflict"})
	}
	if err := e.st.AddDeadLetters(context.Background(), dl); err != nil {
		t.Fatal(err)
	}
	status, body := e.do("GET", "/api/v1/deadletters?limit=2", "")
	resp := decode[DeadLetterListResponse](t, body)
	if status != http.StatusOK || len(resp.DeadLetters) != 2 || resp.Total != 5 || resp.DeadLetters[0].Line != "m v=4" {
		t.Fatalf("deadletters: %d %s", status, body)
	}
	status, body = e.do("GET", "/api/v1/deadletters", "")
	if resp := decode[DeadLetterListResponse](t, body); status != http.StatusOK || len(resp.DeadLetters) != 5 {
		t.Fatalf("deadletters default limit: %d %s", status, body)
	}
	for _, q := range []string{"0", "-1", "x", "1001"} {
		status, body = e.do("GET", "/api/v1/deadletters?limit="+q, "")
		wantError(t, status, body, http.StatusBadRequest, "limit")
	}
	if status, _ = e.do("GET", "/api/v1/deadletters?limit=1000", ""); status != http.StatusOK {
		t.Fatalf("limit=1000: %d", status)
	}
}
