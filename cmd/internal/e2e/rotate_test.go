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

// TestTokenRotationKeepsDeviceOnline: `fleetctl device rotate` makes the
// running agent binary get a new token, keep it in its state dir and
// reconnect with it; telemetry goes on, the old token stops working, and
// the rotated token survives an agent restart.
func TestTokenRotationKeepsDeviceOnline(t *testing.T) {
	ix := influxtest.Start(t)
	h := startHub(t, ix)
	const id = "pi-rotate"
	old := h.addDevice(id, map[string]string{"site": "lab"})
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "fleetagent.yaml")
	conf := agentconf.Render(agentconf.Params{DeviceID: id, HubURL: h.deviceURL(), Token: old, CAFile: h.caFile(), SpoolDir: filepath.Join(dir, "spool")})
	if err := os.WriteFile(cfgFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	start := func() *proc {
		return startProc(t, bins.agent, []string{"--config", cfgFile}, "FLEETAGENT_INTERVAL=200ms")
	}
	agent := start()
	online := func() bool {
		var dev deviceJSON
		h.api("GET", "/api/v1/devices/"+id, nil, &dev)
		return dev.Device.Online
	}
	points := func() int {
		q := fmt.Sprintf(`from(bucket: %q) |> range(start: -1h) |> filter(fn: (r) => r.device == %q and r._measurement == "mem")`, ix.Bucket, id)
		return len(ix.Query(t, q))
	}
	eventually(t, 30*time.Second, "the agent online and streaming", func() bool { return online() && points() > 0 })

	out, err := exec.Command(bins.ctl, "--hub", h.url(""), "--token", h.token, "--ca-file", h.caFile(), "device", "rotate", id).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "rotates now") {
		t.Fatalf("fleetctl device rotate: %v\n%s", err, out)
	}
	tokenFile := filepath.Join(dir, "device.token")
	var newTok string
	eventually(t, 30*time.Second, "the new token kept in "+tokenFile, func() bool {
		b, err := os.ReadFile(tokenFile)
		newTok = strings.TrimSpace(string(b))
		return err == nil && strings.HasPrefix(newTok, "fwd_") && newTok != old
	})
	if fi, err := os.Stat(tokenFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("token file %v, %v: want mode 0600", fi, err)
	}
	// The agent used the new token (the hub retired the old one then),
	// and it is online and streaming again.
	eventually(t, 30*time.Second, "the new token used (audit: device.token_rotated)", func() bool {
		var audit struct {
			Entries []struct{ Action, Subject string } `json:"entries"`
		}
		h.api("GET", "/api/v1/audit", nil, &audit)
		for _, e := range audit.Entries {
			if e.Action == "device.token_rotated" && e.Subject == id {
				return true
			}
		}
		return false
	})
	before := points()
	eventually(t, 30*time.Second, "online and streaming after the rotation", func() bool { return online() && points() > before })
	// The old token no longer opens a session; the new one would.
	for tok, want := range map[string]int{old: 401} {
		resp, err := h.client().Do(newUpgradeRequest(t, h, tok))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("upgrade with the old token: HTTP %d, want %d", resp.StatusCode, want)
		}
	}
	if !strings.Contains(agent.log.String(), "device token rotated") {
		t.Errorf("agent log lacks the rotation:\n%s", tail(agent.log.String(), 2000))
	}

	// A restarted agent uses the kept token, not the retired one in its config.
	agent.stop()
	agent = start()
	before = points()
	eventually(t, 30*time.Second, "the restarted agent streaming with the kept token", func() bool { return online() && points() > before })
	if strings.Contains(agent.log.String(), "401") {
		t.Errorf("restarted agent was refused:\n%s", tail(agent.log.String(), 2000))
	}
}
