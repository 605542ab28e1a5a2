// Package deploy holds the packaging and service files; its tests build the
// .deb packages with deploy/build-debs.sh and check them: contents, the
// systemd units, install/upgrade/remove/purge with dpkg in a throwaway
// root, and the arm binaries under qemu.
package deploy

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// need fails (never skips) when a tool is missing: make tools installs them.
func need(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil && !filepath.IsAbs(tool) {
			t.Fatalf("%s not found: run `make tools` (scripts/install-debs.sh installs it)", tool)
		} else if filepath.IsAbs(tool) {
			if _, err := os.Stat(tool); err != nil {
				t.Fatalf("%s missing: run `make tools`", tool)
			}
		}
	}
}

func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// debs are the packages every test shares, built once per `go test`:
// version 1.0.0 and 1.0.1 (the upgrade) for amd64, and armhf/arm64 agents.
type debs struct {
	dir  string // holds the binaries and the .deb files
	once sync.Once
	err  error
}

var built debs

func (d *debs) path(pkg, version, arch string) string {
	return filepath.Join(d.dir, fmt.Sprintf("%s_%s_%s.deb", pkg, version, arch))
}

// build cross-compiles the binaries (the Go build cache makes reruns
// quick) the way scripts/release.sh does and packages them with
// deploy/build-debs.sh, the script `make release` runs.
func (d *debs) build(t *testing.T) *debs {
	t.Helper()
	need(t, "dpkg-deb", "../.tools/bin/nfpm")
	d.once.Do(func() { d.err = d.doBuild() })
	if d.err != nil {
		t.Fatal(d.err)
	}
	return d
}

func (d *debs) doBuild() error {
	dir, err := os.MkdirTemp("", "fleetwire-debs")
	if err != nil {
		return err
	}
	d.dir = dir
	type bin struct{ cmd, goarch, goarm, name string }
	bins := []bin{
		{"fleetagent", "amd64", "", "fleetagent-linux-amd64"},
		{"fleethub", "amd64", "", "fleethub-linux-amd64"},
		{"fleetagent", "arm", "6", "fleetagent-linux-armv6"},
		{"fleetagent", "arm64", "", "fleetagent-linux-arm64"},
	}
	for _, version := range []string{"1.0.0", "1.0.1"} {
		for _, b := range bins {
			if version != "1.0.0" && b.goarch != "amd64" {
				continue
			}
			cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+version,
				"-o", filepath.Join(dir, b.name), "./cmd/"+b.cmd)
			cmd.Dir = ".."
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+b.goarch, "GOARM="+b.goarm)
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("go build %s %s: %v\n%s", b.cmd, b.goarch, err, out)
			}
		}
		targets := []string{"fleetagent:amd64", "fleethub:amd64"}
		if version == "1.0.0" {
			targets = append(targets, "fleetagent:armhf", "fleetagent:arm64")
		}
		cmd := exec.Command("./build-debs.sh", append([]string{version, dir}, targets...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build-debs.sh %s: %v\n%s", version, err, out)
		}
	}
	return nil
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// TestDebContents: files, owners and modes, conffiles, maintainer scripts.
func TestDebContents(t *testing.T) {
	d := built.build(t)
	for _, tc := range []struct {
		pkg, arch string
		want      []string // lines of dpkg-deb --contents: mode owner/group path
	}{
		{"fleetagent", "amd64", []string{
			"-rwxr-xr-x root/root ./usr/bin/fleetagent",
			"-rw-r--r-- root/root ./lib/systemd/system/fleetagent.service",
			"-rw-r--r-- root/root ./lib/systemd/system/fleetwire-reboot.path",
			"-rw-r--r-- root/root ./lib/systemd/system/fleetwire-reboot.service",
			"-rw-r----- root/fleetagent ./etc/fleetwire/fleetagent.yaml",
			"drwxr-xr-x root/root ./etc/fleetwire/",
		}},
		{"fleetagent", "armhf", []string{"-rwxr-xr-x root/root ./usr/bin/fleetagent"}},
		{"fleetagent", "arm64", []string{"-rwxr-xr-x root/root ./usr/bin/fleetagent"}},
		{"fleethub", "amd64", []string{
			"-rwxr-xr-x root/root ./usr/bin/fleethub",
			"-rw-r--r-- root/root ./lib/systemd/system/fleethub.service",
			"-rw-r----- root/fleethub ./etc/fleetwire/fleethub.yaml",
		}},
	} {
		deb := d.path(tc.pkg, "1.0.0", tc.arch)
		got := map[string]bool{}
		for _, line := range strings.Split(run(t, "", nil, "dpkg-deb", "--contents", deb), "\n") {
			f := strings.Fields(line)
			if len(f) >= 6 {
				got[f[0]+" "+f[1]+" "+f[5]] = true
			}
		}
		for _, w := range tc.want {
			if !got[w] {
				t.Errorf("%s: no %q in dpkg-deb --contents", filepath.Base(deb), w)
			}
		}
		info := run(t, "", nil, "dpkg-deb", "--info", deb)
		for _, w := range []string{"Package: " + tc.pkg, "Architecture: " + tc.arch, "Version: 1.0.0", "preinst", "postinst", "prerm", "postrm"} {
			if !strings.Contains(info, w) {
				t.Errorf("%s: dpkg-deb --info lacks %q:\n%s", filepath.Base(deb), w, info)
			}
		}
		ctl := t.TempDir()
		run(t, "", nil, "dpkg-deb", "--control", deb, ctl)
		cf, err := os.ReadFile(filepath.Join(ctl, "conffiles"))
		if err != nil || strings.TrimSpace(string(cf)) != "/etc/fleetwire/"+tc.pkg+".yaml" {
			t.Errorf("%s: conffiles %q (%v), want /etc/fleetwire/%s.yaml", filepath.Base(deb), cf, err, tc.pkg)
		}
	}
}

// TestArmBinariesRunUnderQemu: the packaged armhf (GOARM=6, for Pi Zero/1
// and armv7 boards) and arm64 agents start and print their version.
func TestArmBinariesRunUnderQemu(t *testing.T) {
	d := built.build(t)
	need(t, "qemu-arm-static", "qemu-aarch64-static")
	for arch, qemu := range map[string]string{"armhf": "qemu-arm-static", "arm64": "qemu-aarch64-static"} {
		x := t.TempDir()
		run(t, "", nil, "dpkg-deb", "-x", d.path("fleetagent", "1.0.0", arch), x)
		out := run(t, "", nil, qemu, filepath.Join(x, "usr/bin/fleetagent"), "--version")
		if !strings.Contains(out, "1.0.0") {
			t.Errorf("%s fleetagent --version: %q, want 1.0.0", arch, out)
		}
	}
}
