package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/fleetwire/fleetwire/cmd/internal/cli"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fleetagent.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const goodConfig = `
device_id: pi-01
hub:
  url: wss://hub.example:8443/v1/device
  token: fwd_secret_value
  ca_fingerprint: "ab"
interval: 5s
spool:
  dir: /tmp/spool
  max_bytes: 8MiB
`

func TestPrintConfigMasksToken(t *testing.T) {
	var out bytes.Buffer
	m := NewMain(&out, &bytes.Buffer{})
	err := m.ParseFlags([]string{"--config", writeConfig(t, goodConfig), "--print-config"})
	if !errors.Is(err, cli.ErrDone) {
		t.Fatalf("ParseFlags: %v", err)
	}
	s := out.String()
	if strings.Contains(s, "fwd_secret_value") || !strings.Contains(s, "8MiB") || !strings.Contains(s, "5s") {
		t.Fatalf("printed config:\n%s", s)
	}
}

func TestConfigPrecedence(t *testing.T) {
	t.Setenv("FLEETAGENT_INTERVAL", "2s")
	m := NewMain(&bytes.Buffer{}, &bytes.Buffer{})
	if err := m.ParseFlags([]string{"--config", writeConfig(t, goodConfig), "--spool.dir", "/var/x"}); err != nil {
		t.Fatal(err)
	}
	if m.Config.Interval.String() != "2s" || m.Config.Spool.Dir != "/var/x" || m.Config.Spool.MaxBytes != 8<<20 {
		t.Fatalf("effective config %+v", m.Config)
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{goodConfig + "bogus: 1\n", "bogus"},
		{strings.Replace(goodConfig, "interval: 5s", "interval: 10ms", 1), "interval"},
		{strings.Replace(goodConfig, "max_bytes: 8MiB", "max_bytes: 1KiB", 1), "spool.max_bytes"},
		{strings.Replace(goodConfig, "token: fwd_secret_value", "token: \"\"", 1), "hub.token"},
	} {
		m := NewMain(&bytes.Buffer{}, &bytes.Buffer{})
		err := m.ParseFlags([]string{"--config", writeConfig(t, tc.body)})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want it to name %q", err, tc.want)
		}
	}
}

// TestDeployExampleLoads keeps deploy/fleetagent.yaml a valid config.
func TestDeployExampleLoads(t *testing.T) {
	m := NewMain(&bytes.Buffer{}, &bytes.Buffer{})
	if err := m.ParseFlags([]string{"--config", "../../deploy/fleetagent.yaml"}); err != nil {
		t.Fatalf("deploy/fleetagent.yaml: %v", err)
	}
	if !m.Config.Commands.Enabled || m.Config.Interval.String() != "10s" {
		t.Fatalf("unexpected example values: %+v", m.Config)
	}
}

func TestTuneRuntime(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	runtime.GOMAXPROCS(2)
	tuneRuntime(func(string) string { return "" })
	if n := runtime.GOMAXPROCS(0); n != 1 {
		t.Errorf("without GOMAXPROCS in the environment: GOMAXPROCS %d, want 1", n)
	}
	if p := debug.SetGCPercent(100); p != defaultGCPercent {
		t.Errorf("without GOGC in the environment: GC percent %d, want %d", p, defaultGCPercent)
	}
	runtime.GOMAXPROCS(2)
	tuneRuntime(func(k string) string { return map[string]string{"GOMAXPROCS": "2", "GOGC": "100"}[k] })
	if n := runtime.GOMAXPROCS(0); n != 2 {
		t.Errorf("with GOMAXPROCS=2 in the environment: GOMAXPROCS %d, want it left at 2", n)
	}
	if p := debug.SetGCPercent(100); p != 100 {
		t.Errorf("with GOGC=100 in the environment: GC percent %d, want it left at 100", p)
	}
}
