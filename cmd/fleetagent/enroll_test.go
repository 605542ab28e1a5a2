package main

import (
	"bytes"
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
