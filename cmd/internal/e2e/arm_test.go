package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/hub/influx/influxtest"
)

// TestArmAgentsUnderQemu: the armv6 (Pi Zero) and arm64 agent builds run
// under qemu user emulation with the config `fleetctl device add` printed,
// and their telemetry lands in InfluxDB.
func TestArmAgentsUnderQemu(t *testing.T) {
	ix := influxtest.Start(t)
	h := startHub(t, ix)
	for _, tc := range []struct{ name, goarch, goarm, qemu string }{
		{"armv6", "arm", "6", "qemu-arm-static"},
		{"arm64", "arm64", "", "qemu-aarch64-static"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			qemu, bin := crossAgent(t, tc.name, tc.goarch, tc.goarm, tc.qemu)
			dir := t.TempDir()
			device := "pi-" + tc.name
			cfgFile := filepath.Join(dir, "fleetagent.yaml")
			ctl := exec.Command(bins.ctl, "--hub", h.url(""), "--token", h.token, "--ca-file", h.caFile(),
				"device", "add", device, "--label", "arch="+tc.name, "--config-out", cfgFile)
			if out, err := ctl.CombinedOutput(); err != nil {
				t.Fatalf("fleetctl device add: %v\n%s", err, out)
			}
			if fi, err := os.Stat(cfgFile); err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("agent config not written 0600: %v %v", fi, err)
			}
			agent := startProc(t, qemu, []string{bin, "--config", cfgFile}, "FLEETAGENT_SPOOL_DIR="+filepath.Join(dir, "spool"), "FLEETAGENT_INTERVAL=300ms")
			q := fmt.Sprintf(`from(bucket: %q) |> range(start: -1h) |> filter(fn: (r) => r.device == %q and r._measurement == "mem" and r.arch == %q)`, ix.Bucket, device, tc.name)
			eventually(t, 90*time.Second, "telemetry from the "+tc.name+" agent", func() bool {
				agent.mustRun(t, "the "+tc.name+" agent")
				return len(ix.Query(t, q)) >= 3
			})
			var dev deviceJSON
			h.api("GET", "/api/v1/devices/"+device, nil, &dev)
			if dev.Device.AgentVersion != "e2e-"+tc.name {
				t.Errorf("agent version %q", dev.Device.AgentVersion)
			}
		})
	}
}

// crossAgent builds the agent for an arm target (version "e2e-"+name) and
// returns the qemu user emulator that runs it and the binary.
func crossAgent(t *testing.T, name, goarch, goarm, qemuName string) (qemu, bin string) {
	t.Helper()
	qemu, err := exec.LookPath(qemuName)
	if err != nil {
		t.Fatalf("%s not installed (Debian package qemu-user-static; `make tools` installs it): %v", qemuName, err)
	}
	bin = filepath.Join(bins.dir, "fleetagent-"+name)
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=e2e-"+name, "-o", bin, "./cmd/fleetagent")
	build.Dir = repoRoot()
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch, "GOARM="+goarm)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("cross build: %v\n%s", err, out)
	}
	return qemu, bin
}

// proc is a program a test started (an agent binary, perhaps under qemu),
// its output collected.
type proc struct {
	cmd    *exec.Cmd
	log    syncBuffer
	exited chan struct{}
}

// startProc runs name with args and env added to this process's; it is
// killed when the test ends, if it has not been stopped before.
func startProc(t testing.TB, name string, args []string, env ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(name, args...), exited: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.log, &p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(p.stop)
	return p
}

// stop kills the process and waits for it. Idempotent.
func (p *proc) stop() {
	p.cmd.Process.Kill()
	<-p.exited
}

// mustRun fails the test, with the output, if the process has exited.
func (p *proc) mustRun(t testing.TB, what string) {
	t.Helper()
	select {
	case <-p.exited:
		t.Fatalf("%s exited; its output:\n%s", what, p.log.String())
	default:
	}
}

// syncBuffer is a bytes.Buffer safe to read while a process writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b = append(s.b, p...)
	return len(p), nil
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.b)
}
