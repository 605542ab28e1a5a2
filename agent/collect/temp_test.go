package collect

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fleetwire/fleetwire/protocol"
)

// fakeZone writes <dir>/thermal_zoneN with the given type (none if empty)
// and temp files, as Linux exposes them (both end in a newline).
func fakeZone(t *testing.T, dir string, n, typ, temp string) {
	t.Helper()
	z := filepath.Join(dir, "thermal_zone"+n)
	if err := os.MkdirAll(z, 0o755); err != nil {
		t.Fatal(err)
	}
	if typ != "" {
		if err := os.WriteFile(filepath.Join(z, "type"), []byte(typ+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(z, "temp"), []byte(temp+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestTempPi(t *testing.T) {
	dir := t.TempDir()
	fakeZone(t, dir, "0", "cpu-thermal", "47236")
	// Cooling devices share the directory and must be ignored.
	if err := os.MkdirAll(filepath.Join(dir, "cooling_device0"), 0o755); err != nil {
		t.Fatal(err)
	}
	pts, err := collect(t, newTemp(dir))
	if err != nil {
		t.Fatal(err)
	}
	got := byName(pts)
	if len(got) != 1 || got["temp.celsius{zone=cpu-thermal}"] != 47.236 {
		t.Errorf("got %v, want temp.celsius{zone=cpu-thermal} = 47.236", got)
	}
}

func TestTempZones(t *testing.T) {
	dir := t.TempDir()
	fakeZone(t, dir, "0", "acpitz", "27800")
	fakeZone(t, dir, "1", "acpitz", "-5000")
	fakeZone(t, dir, "2", "x86_pkg_temp", "52000")
	fakeZone(t, dir, "3", "", "1000")          // no type file
	fakeZone(t, dir, "4", "bad\\type", "2000") // not a valid tag value
	fakeZone(t, dir, "5", "broken", "n/a")
	pts, err := collect(t, newTemp(dir))
	if err == nil || !strings.Contains(err.Error(), "temp broken") {
		t.Errorf("err = %v, want one naming zone broken", err)
	}
	want := map[string]any{
		"temp.celsius{zone=acpitz-0}":      27.8,
		"temp.celsius{zone=acpitz-1}":      -5.0,
		"temp.celsius{zone=x86_pkg_temp}":  52.0,
		"temp.celsius{zone=thermal_zone3}": 1.0,
		"temp.celsius{zone=thermal_zone4}": 2.0,
	}
	got := byName(pts)
	if len(got) != len(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

func TestTempNoZones(t *testing.T) {
	for name, dir := range map[string]string{
		"missing dir": filepath.Join(t.TempDir(), "nope"),
		"empty dir":   t.TempDir(),
	} {
		pts, err := collect(t, newTemp(dir))
		if err != nil || len(pts) != 0 {
			t.Errorf("%s: got %v, %v; want nothing and no error", name, pts, err)
		}
	}
}

func TestTempRescanWhenZoneGoes(t *testing.T) {
	dir := t.TempDir()
	fakeZone(t, dir, "0", "cpu-thermal", "40000")
	fakeZone(t, dir, "1", "gpu-thermal", "41000")
	c := newTemp(dir)
	if pts, err := collect(t, c); err != nil || len(pts) != 2 {
		t.Fatalf("got %v, %v; want 2 zones", pts, err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "thermal_zone1")); err != nil {
		t.Fatal(err)
	}
	// The call that notices is allowed to fail; the next sees the new set.
	collect(t, c)
	pts, err := collect(t, c)
	if err != nil {
		t.Fatal(err)
	}
	if got := byName(pts); len(got) != 1 || got["temp.celsius{zone=cpu-thermal}"] != 40.0 {
		t.Errorf("after removal got %v, want only cpu-thermal", got)
	}
	// Values are read fresh each time.
	fakeZone(t, dir, "0", "cpu-thermal", "55500")
	if got := byName(mustPoints(t, c)); got["temp.celsius{zone=cpu-thermal}"] != 55.5 {
		t.Errorf("after change got %v, want 55.5", got)
	}
}

func mustPoints(t *testing.T, c Collector) []protocol.Point {
	t.Helper()
	pts, err := collect(t, c)
	if err != nil {
		t.Fatal(err)
	}
	return pts
}
