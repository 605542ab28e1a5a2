package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fleetwire/fleetwire/hub/store"
)

// startOnce opens a hub on dir (nothing listens: NewServer is where the
// first admin is made) and returns what it printed.
func startOnce(t *testing.T, dir string, extra ...string) (*Server, string) {
	t.Helper()
	var out bytes.Buffer
	m := NewMain(&out, &bytes.Buffer{})
	args := append([]string{"--data_dir", dir, "--listen", "127.0.0.1:0", "--influx.url", "http://127.0.0.1:1"}, extra...)
	if err := m.ParseFlags(args); err != nil {
		t.Fatal(err)
	}
	s, err := NewServer(m.Config, &out, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s, out.String()
}

func TestFirstStartCreatesAdminUser(t *testing.T) {
	dir := t.TempDir()
	s, out := startOnce(t, dir)
	pw := s.AdminPassword
	if len(pw) < store.MinPasswordLen || strings.Count(out, pw) != 1 {
		t.Fatalf("password %q printed %d times:\n%s", pw, strings.Count(out, pw), out)
	}
	path := filepath.Join(dir, "admin.password")
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin.password: %v, mode %v", err, fi.Mode())
	}
	if b, _ := os.ReadFile(path); strings.TrimSpace(string(b)) != pw {
		t.Fatalf("admin.password holds %q", b)
	}
	u, err := s.store.CheckPassword(context.Background(), "admin", pw)
	if err != nil || u.Role != "admin" {
		t.Fatalf("sign in with printed password: %+v, %v", u, err)
	}
	s.Close(context.Background())

	// Second start: nothing printed, the password unchanged.
	s2, out2 := startOnce(t, dir)
	if out2 != "" || s2.AdminPassword != "" || s2.AdminToken != "" {
		t.Fatalf("second start printed:\n%s", out2)
	}
	if _, err := s2.store.CheckPassword(context.Background(), "admin", pw); err != nil {
		t.Fatalf("password changed on restart: %v", err)
	}
}

func TestAdminPasswordFromConfig(t *testing.T) {
	dir := t.TempDir()
	const pw = "twelve chars"
	s, out := startOnce(t, dir, "--config", writeConfig(t, "dashboard:\n  admin_password: "+pw+"\n"))
	if strings.Contains(out, pw) || s.AdminPassword != "" {
		t.Fatalf("configured password echoed:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "admin.password")); !os.IsNotExist(err) {
		t.Fatalf("admin.password written for a configured password: %v", err)
	}
	if _, err := s.store.CheckPassword(context.Background(), "admin", pw); err != nil {
		t.Fatal(err)
	}
	m := NewMain(&bytes.Buffer{}, &bytes.Buffer{})
	err := m.ParseFlags([]string{"--data_dir", dir, "--config", writeConfig(t, "dashboard:\n  admin_password: eleven char\n")})
	if err == nil || !strings.Contains(err.Error(), "dashboard.admin_password") {
		t.Fatalf("11-character password: %v", err)
	}
	err = m.ParseFlags([]string{"--data_dir", dir, "--config", writeConfig(t, "dashboard:\n  session_idle: 2h\n  session_max: 1h\n")})
	if err == nil || !strings.Contains(err.Error(), "dashboard.session_max") {
		t.Fatalf("max < idle: %v", err)
	}
}

// writeConfig writes a config file with body and returns its path.
func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fleethub.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
