package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/agent/agentconf"
	"github.com/fleetwire/fleetwire/hub/influx/influxtest"
)

// TestAgentSurvivesFullDisk runs the real agent with its spool on a
// 64 KiB tmpfs (in a private mount namespace) while the hub is
// unreachable: the spool fills the disk, the agent logs the failed
// writes and keeps running; once the hub is back it drains the spool and
// stores new readings again.
func TestAgentSurvivesFullDisk(t *testing.T) {
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatalf("unshare (Debian package util-linux; `make tools`): %v", err)
	}
	if os.Geteuid() != 0 {
		t.Fatalf("mounting a small tmpfs for the spool needs root (CI runs as root)")
	}
	ix := influxtest.Start(t)
	h := startHub(t, ix)
	const id = "pi-fulldisk"
	tok := h.addDevice(id, nil)
	proxy := newFaultProxy(t, h.addr)
	proxy.setBlackhole(true) // the hub unreachable: everything stays in the spool
	dir := t.TempDir()
	spoolDir := filepath.Join(dir, "spool")
	if err := os.Mkdir(spoolDir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "fleetagent.yaml")
	conf := agentconf.Render(agentconf.Params{DeviceID: id, HubURL: "wss://" + proxy.addr() + "/v1/device", Token: tok, CAFile: h.caFile(), SpoolDir: spoolDir})
	if err := os.WriteFile(cfgFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf("mount -t tmpfs -o size=64k tmpfs %s && exec %s --config %s", spoolDir, bins.agent, cfgFile)
	agent := startProc(t, "unshare", []string{"-m", "--propagation", "private", "sh", "-c", script}, "FLEETAGENT_INTERVAL=100ms")
	eventually(t, 60*time.Second, "the spool's disk full (ENOSPC logged)", func() bool {
		agent.mustRun(t, "the agent")
		return strings.Count(agent.log.String(), "no space left on device") >= 3
	})
	// Still running and still failing politely a while later.
	full := strings.Count(agent.log.String(), "no space left on device")
	eventually(t, 30*time.Second, "the agent still running on a full disk", func() bool {
		agent.mustRun(t, "the agent")
		return strings.Count(agent.log.String(), "no space left on device") > full+10
	})
	proxy.setBlackhole(false)
	q := fmt.Sprintf(`from(bucket: %q) |> range(start: -1h) |> filter(fn: (r) => r.device == %q and r._measurement == "mem" and r._field == "used_bytes")`, ix.Bucket, id)
	var before int
	eventually(t, 60*time.Second, "the spooled readings stored once the hub is back", func() bool {
		agent.mustRun(t, "the agent")
		before = len(ix.Query(t, q))
		return before > 10
	})
	eventually(t, 60*time.Second, "new readings stored after the disk had room again", func() bool {
		agent.mustRun(t, "the agent")
		return len(ix.Query(t, q)) > before+20
	})
}
