package config

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoad feeds arbitrary bytes to the config loader as a YAML file: it
// returns a config or an error, never panics, and a loaded config prints.
func FuzzLoad(f *testing.F) {
	for _, seed := range []string{
		"data_dir: /x\nlisten: \":8443\"\ninterval: 10s\n",
		"influx:\n  url: http://a\n  token: t\n  timeout: 3s\nspool:\n  max_bytes: 64MiB\n",
		"hosts: [a, b]\nlabels: {k: v}\nexec:\n  - name: x\n    command: [\"/bin/true\"]\n",
		"interval: forever\n", "spool:\n  max_bytes: -1\n", "unknown: 1\n", "labels: [1, 2]\n",
		"{", "\x00", "a: &a [*a]\n", "influx: !!binary aGVsbG8=\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		var cfg testConfig
		if err := Load(path, "FUZZCFG", nil, &cfg); err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if err := Print(io.Discard, &cfg); err != nil {
			t.Fatalf("loaded config does not print: %v", err)
		}
	})
}

// FuzzParseByteSize: sizes parse to non-negative values or fail with a
// message; a parsed size prints to a string that parses back to it.
func FuzzParseByteSize(f *testing.F) {
	for _, s := range []string{"64MiB", "1KiB", "0", "10B", "1.5GiB", "-1", "9999999999999TiB", "", "MiB", "1 MiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseByteSize(s)
		if err != nil {
			if strings.TrimSpace(err.Error()) == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if b < 0 {
			t.Fatalf("%q parsed to negative %d", s, b)
		}
		back, err := ParseByteSize(b.String())
		if err != nil || back != b {
			t.Fatalf("%q -> %d -> %q -> %d, %v", s, b, b.String(), back, err)
		}
	})
}
