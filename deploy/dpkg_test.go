package deploy

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// throwawayRoot is this machine's root file system under a private
// overlay: dpkg, its maintainer scripts, useradd and systemd-analyze run
// for real, chrooted into it, and every change lands in a temp upper layer
// that vanishes with the mount namespace. Why not `dpkg --root` on an
// empty tree: maintainer scripts run chrooted there and need a shell,
// getent, useradd, deb-systemd-helper and a dpkg database; an overlay of /
// has them all, is this machine's real Debian, and needs no copying. It
// needs root (a mount namespace and overlayfs), which CI's container has;
// elsewhere the test fails and says so, it never touches the real system.
type throwawayRoot struct {
	dir    string // the merged root
	holder *exec.Cmd
}

func newThrowawayRoot(t *testing.T) *throwawayRoot {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the dpkg test needs root (a mount namespace and an overlay of / as a throwaway root): run `make test` as root, e.g. in the CI container")
	}
	need(t, "unshare", "nsenter", "chroot", "dpkg")
	base, err := os.MkdirTemp("", "fleetwire-root")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"upper", "work", "root"} {
		if err := os.Mkdir(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The holder process keeps the namespace (and so the mounts) alive;
	// killing it tears everything down. /run is a fresh tmpfs: without
	// /run/systemd/system the maintainer scripts start nothing.
	const setup = `set -e
mount -t overlay overlay -o lowerdir=/,upperdir="$1/upper",workdir="$1/work" "$1/root"
for d in proc sys dev; do mount --rbind "/$d" "$1/root/$d"; done
mount -t tmpfs tmpfs "$1/root/run"
echo ready
exec sleep infinity`
	holder := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", setup, "sh", base)
	stdout, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	holder.Stderr = os.Stderr
	if err := holder.Start(); err != nil {
		t.Fatalf("unshare: %v", err)
	}
	r := &throwawayRoot{dir: filepath.Join(base, "root"), holder: holder}
	t.Cleanup(func() {
		_ = holder.Process.Kill()
		_ = holder.Wait()
		if err := os.RemoveAll(base); err != nil {
			t.Errorf("remove throwaway root: %v", err)
		}
	})
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("setting up the overlay root failed (%q, %v): overlayfs and mount namespaces must be available", line, err)
	}
	return r
}

// sh runs a shell script chrooted in the throwaway root.
func (r *throwawayRoot) sh(script string) (string, error) {
	cmd := exec.Command("nsenter", "--target", strconv.Itoa(r.holder.Process.Pid), "--mount", "--",
		"chroot", r.dir, "/bin/sh", "-c", script)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive"}
	cmd.Stdin = nil // dpkg must not need to ask anything (a conffile prompt would fail here)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (r *throwawayRoot) mustSh(t *testing.T, script string) string {
	t.Helper()
	out, err := r.sh(script)
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return out
}

// stat returns "mode owner:group" of each path, one line each.
func (r *throwawayRoot) stat(t *testing.T, paths ...string) map[string]string {
	t.Helper()
	got := map[string]string{}
	out := r.mustSh(t, "stat -c '%n %a %U:%G' "+strings.Join(paths, " "))
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		got[f[0]] = f[1] + " " + f[2]
	}
	return got
}

func wantStat(t *testing.T, got map[string]string, want map[string]string) {
	t.Helper()
	for p, w := range want {
		if got[p] != w {
			t.Errorf("%s: %q, want %q", p, got[p], w)
		}
	}
}

// TestDebInstallUpgradePurge installs the amd64 agent and hub, checks
// users, modes and enablement, verifies the installed units, edits both
// configs, upgrades (the edits survive, without a prompt), removes (config,
// state and users stay) and purges (all gone).
func TestDebInstallUpgradePurge(t *testing.T) {
	d := built.build(t)
	r := newThrowawayRoot(t)
	v1 := d.path("fleetagent", "1.0.0", "amd64") + " " + d.path("fleethub", "1.0.0", "amd64")
	v2 := d.path("fleetagent", "1.0.1", "amd64") + " " + d.path("fleethub", "1.0.1", "amd64")

	out := r.mustSh(t, "dpkg -i "+v1)
	if !strings.Contains(out, "fleetagent is installed but not configured yet") || !strings.Contains(out, "fleetagent enroll") {
		t.Errorf("agent postinst did not say how to enroll:\n%s", out)
	}
	wantStat(t, r.stat(t, "/usr/bin/fleetagent", "/usr/bin/fleethub", "/etc/fleetwire", "/etc/fleetwire/fleetagent.yaml",
		"/etc/fleetwire/fleethub.yaml", "/var/lib/fleetagent", "/var/lib/fleethub"), map[string]string{
		"/usr/bin/fleetagent":            "755 root:root",
		"/usr/bin/fleethub":              "755 root:root",
		"/etc/fleetwire":                 "755 root:root",
		"/etc/fleetwire/fleetagent.yaml": "640 root:fleetagent",
		"/etc/fleetwire/fleethub.yaml":   "640 root:fleethub",
		"/var/lib/fleetagent":            "750 fleetagent:fleetagent",
		"/var/lib/fleethub":              "750 fleethub:fleethub",
	})
	for _, u := range []string{"fleetagent", "fleethub"} {
		pw := r.mustSh(t, "getent passwd "+u)
		if !strings.HasSuffix(strings.TrimSpace(pw), ":/var/lib/"+u+":/usr/sbin/nologin") {
			t.Errorf("user %s: %q, want home /var/lib/%s and no login shell", u, pw, u)
		}
		r.mustSh(t, "test -L /etc/systemd/system/multi-user.target.wants/"+u+".service")
	}
	if out := r.mustSh(t, "test ! -e /etc/systemd/system/paths.target.wants/fleetwire-reboot.path && echo opt-in"); !strings.Contains(out, "opt-in") {
		t.Error("fleetwire-reboot.path is enabled by default; it must be opt-in")
	}
	// The packaged agent config is complete but for the enrollment keys;
	// the hub's is valid as shipped.
	out, err := r.sh("fleetagent --config /etc/fleetwire/fleetagent.yaml --print-config")
	_, refused, _ := strings.Cut(out, "config invalid:")
	if lines := strings.Split(strings.TrimSpace(refused), "\n"); err == nil || len(lines) != 2 ||
		!strings.HasPrefix(lines[0], "hub.url:") || !strings.HasPrefix(lines[1], "hub.token:") {
		t.Errorf("packaged agent config: want only hub.url and hub.token refused, got %v:\n%s", err, out)
	}
	r.mustSh(t, "fleethub --config /etc/fleetwire/fleethub.yaml --print-config >/dev/null")

	t.Run("SystemdAnalyzeVerify", func(t *testing.T) {
		units := "/lib/systemd/system/fleetagent.service /lib/systemd/system/fleethub.service " +
			"/lib/systemd/system/fleetwire-reboot.path /lib/systemd/system/fleetwire-reboot.service"
		need(t, "systemd-analyze")
		out, err := r.sh("systemd-analyze verify " + units + " 2>&1")
		if err != nil || strings.TrimSpace(out) != "" {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	})

	// Enroll by hand, and change a default in each config.
	r.mustSh(t, `sed -i -e 's#^  url: ""#  url: wss://hub.test:8443/v1/device#' -e 's#^  token: ""#  token: fwd_test#' \
		-e 's#^interval: 10s#interval: 30s#' /etc/fleetwire/fleetagent.yaml
sed -i 's#^listen: ":8443"#listen: ":9443"#' /etc/fleetwire/fleethub.yaml`)
	r.mustSh(t, "fleetagent --config /etc/fleetwire/fleetagent.yaml --print-config >/dev/null")

	out = r.mustSh(t, "dpkg -i "+v2)
	if strings.Contains(out, "not configured") {
		t.Errorf("upgrade of a configured agent says it is not configured:\n%s", out)
	}
	if got := r.mustSh(t, "dpkg-query -W -f '${Version} ${Version}\n' fleetagent fleethub"); got != "1.0.1 1.0.1\n1.0.1 1.0.1\n" {
		t.Errorf("installed versions after upgrade: %q", got)
	}
	if got := r.mustSh(t, "fleetagent --version"); !strings.Contains(got, "1.0.1") {
		t.Errorf("fleetagent --version after upgrade: %q", got)
	}
	r.mustSh(t, `grep -q '^interval: 30s' /etc/fleetwire/fleetagent.yaml
grep -q '^  token: fwd_test' /etc/fleetwire/fleetagent.yaml
grep -q '^listen: ":9443"' /etc/fleetwire/fleethub.yaml
! ls /etc/fleetwire/*.dpkg-* 2>/dev/null`)
	wantStat(t, r.stat(t, "/etc/fleetwire/fleetagent.yaml", "/etc/fleetwire/fleethub.yaml"), map[string]string{
		"/etc/fleetwire/fleetagent.yaml": "640 root:fleetagent",
		"/etc/fleetwire/fleethub.yaml":   "640 root:fleethub",
	})

	// remove: binaries and units go; config, state and users stay.
	r.mustSh(t, "dpkg -r fleetagent fleethub")
	r.mustSh(t, `test ! -e /usr/bin/fleetagent && test ! -e /lib/systemd/system/fleetagent.service
test ! -e /usr/bin/fleethub
grep -q '^interval: 30s' /etc/fleetwire/fleetagent.yaml
test -d /var/lib/fleetagent && test -d /var/lib/fleethub
getent passwd fleetagent >/dev/null && getent passwd fleethub >/dev/null`)
	if got := r.mustSh(t, "dpkg-query -W -f '${db:Status-Abbrev}\n' fleetagent fleethub"); got != "rc \nrc \n" {
		t.Errorf("status after remove: %q, want rc (config files kept)", got)
	}

	// purge: everything goes.
	r.mustSh(t, "dpkg -P fleetagent fleethub")
	r.mustSh(t, `test ! -e /etc/fleetwire
test ! -e /var/lib/fleetagent && test ! -e /var/lib/fleethub
! getent passwd fleetagent && ! getent group fleetagent
! getent passwd fleethub && ! getent group fleethub
test ! -e /etc/systemd/system/multi-user.target.wants/fleetagent.service
test ! -e /etc/systemd/system/multi-user.target.wants/fleethub.service`)
	if out, err := r.sh("dpkg-query -W fleetagent fleethub"); err == nil {
		t.Errorf("dpkg still knows the packages after purge:\n%s", out)
	}
}
