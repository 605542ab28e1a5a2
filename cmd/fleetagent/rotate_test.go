package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestKeptToken: a rotated token is used only for the config token it was
// rotated from; STATE_DIRECTORY (systemd) decides where it is kept.
func TestKeptToken(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("STATE_DIRECTORY", "")
	cfg := defaultConfig()
	cfg.Spool.Dir = filepath.Join(dir, "spool")
	cfg.Hub.Token = "fwd_config"
	if got, err := cfg.currentToken(); err != nil || got != "fwd_config" {
		t.Fatalf("no kept token: %q, %v", got, err)
	}
	kept := filepath.Join(dir, "device.token")
	if cfg.tokenFile() != kept {
		t.Fatalf("token file %s, want %s", cfg.tokenFile(), kept)
	}
	os.WriteFile(kept, []byte("fwd_rotated\n"+tokenOrigin("fwd_config")+"\n"), 0o600)
	if got, _ := cfg.currentToken(); got != "fwd_rotated" {
		t.Errorf("kept token for this config: got %q", got)
	}
	cfg.Hub.Token = "fwd_enrolled_again"
	if got, _ := cfg.currentToken(); got != "fwd_enrolled_again" {
		t.Errorf("a kept token from another config token was used: %q", got)
	}
	os.WriteFile(kept, []byte("garbage"), 0o600)
	if _, err := cfg.currentToken(); err == nil {
		t.Errorf("garbage token file accepted")
	}
	t.Setenv("STATE_DIRECTORY", "/var/lib/fleetagent:/other")
	if got := cfg.tokenFile(); got != "/var/lib/fleetagent/device.token" {
		t.Errorf("under systemd: %s", got)
	}
	cfg.Hub.TokenFile = "/x/t"
	if got := cfg.tokenFile(); got != "/x/t" {
		t.Errorf("hub.token_file: %s", got)
	}
}
