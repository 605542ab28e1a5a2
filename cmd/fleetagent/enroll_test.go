package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEnrollFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--code", "fwe_X"}, "--hub"},
		{[]string{"--hub", "hub:8443", "--code", "fwe_X"}, "--hub"},
		{[]string{"--hub", "ftp://hub", "--code", "fwe_X"}, "--hub"},
		{[]string{"--hub", "https://hub:8443"}, "--code"},
		{[]string{"--hub", "https://hub:8443", "--code", "x", "--start", "maybe"}, "--start"},
		{[]string{"--hub", "https://hub:8443", "--code", "x", "extra"}, "unexpected argument"},
	} {
		e := NewEnroll(&bytes.Buffer{}, &bytes.Buffer{})
		e.Code = ""
		if err := e.ParseFlags(tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want it to name %s", tc.args, err, tc.want)
		}
	}
	e := NewEnroll(&bytes.Buffer{}, &bytes.Buffer{})
	if err := e.ParseFlags([]string{"--hub", "https://hub:8443", "--code", "fwe_X"}); err != nil {
		t.Fatal(err)
	}
	if e.ID == "" || e.ConfigPath != DefaultConfigPath || e.Start != "auto" {
		t.Errorf("defaults: %+v", e)
	}
}

func TestDeviceURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://hub.example:8443":  "wss://hub.example:8443/v1/device",
		"https://hub.example:8443/": "wss://hub.example:8443/v1/device",
		"http://10.0.0.2:8443":      "ws://10.0.0.2:8443/v1/device",
		"https://proxy.example/fw/": "wss://proxy.example/fw/v1/device",
	} {
		if got := deviceURL(in); got != want {
			t.Errorf("deviceURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestWritePrivate: the config is replaced atomically, mode 0600, even
// over a file that was world-readable.
func TestWritePrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "etc", "fleetagent.yaml")
	if err := writePrivate(path, []byte("a: 1\n")); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o644)
	if err := writePrivate(path, []byte("a: 2\n")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", fi.Mode(), err)
	}
	if b, _ := os.ReadFile(path); string(b) != "a: 2\n" {
		t.Errorf("content %q", b)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}

// TestEnrollWritesConfigAndStarts runs enroll against a stand-in hub
// endpoint (the real one is exercised end to end in cmd/internal/e2e):
// the config it writes loads as the agent's, and with --start yes it
// enables and restarts the service.
func TestEnrollWritesConfigAndStarts(t *testing.T) {
	var got map[string]string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/enroll" || r.Method != "POST" {
			http.NotFound(w, r)
			return
		}
		json.NewDecoder(r.Body).Decode(&got)
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"device_id":"pi-x","token":"fwd_`+strings.Repeat("A", 43)+`","labels":{"site":"lab"}}`)
	}))
	defer srv.Close()
	dir := t.TempDir()
	var out bytes.Buffer
	e := NewEnroll(&out, &out)
	var calls []string
	e.systemctl = func(args ...string) error { calls = append(calls, strings.Join(args, " ")); return nil }
	cfg := filepath.Join(dir, "fleetagent.yaml")
	if err := e.ParseFlags([]string{"--hub", srv.URL, "--code", " fwe_CODE ", "--id", "pi-x", "--config", cfg,
		"--spool-dir", filepath.Join(dir, "spool"), "--start", "yes"}); err != nil {
		t.Fatal(err)
	}
	if err := e.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got["code"] != "fwe_CODE" || got["device_id"] != "pi-x" || !strings.HasPrefix(got["agent_version"], version+" ") {
		t.Errorf("request %v", got)
	}
	if strings.Join(calls, "; ") != "enable --now fleetagent; restart fleetagent" {
		t.Errorf("systemctl calls %q", calls)
	}
	m := NewMain(io.Discard, io.Discard)
	if err := m.ParseFlags([]string{"--config", cfg}); err != nil {
		t.Fatalf("written config does not load: %v", err)
	}
	if m.Config.DeviceID != "pi-x" || m.Config.Hub.URL != strings.Replace(srv.URL, "http://", "ws://", 1)+"/v1/device" || !strings.HasPrefix(m.Config.Hub.Token, "fwd_") {
		t.Errorf("loaded %+v", m.Config.Hub)
	}
	if !strings.Contains(out.String(), "Enrolled as device pi-x (labels: site=lab)") {
		t.Errorf("output:\n%s", out.String())
	}
	// A second enroll over it is refused without --force.
	e2 := NewEnroll(io.Discard, io.Discard)
	e2.systemctl = e.systemctl
	e2.ParseFlags([]string{"--hub", srv.URL, "--code", "fwe_CODE", "--config", cfg, "--start", "no"})
	if err := e2.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("second enroll: %v", err)
	}
}
