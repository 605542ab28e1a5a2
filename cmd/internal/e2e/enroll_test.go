package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/hub/influx/influxtest"
)

// enrollment is the API's answer to POST /api/v1/enrollments.
type enrollment struct {
	Enrollment struct {
		ID string `json:"id"`
	} `json:"enrollment"`
	Code    string `json:"code"`
	Command string `json:"command"`
}

// TestEnrollArmv6UnderQemu: an operator creates a code; the armv6 (Pi
// Zero) agent under qemu runs the printed `fleetagent enroll` command,
// gets its own token, writes its config 0600 and streams with the code's
// labels. Used-up, revoked and unknown codes are refused with the hub's
// reason; the audit log has the enrollment.
func TestEnrollArmv6UnderQemu(t *testing.T) {
	ix := influxtest.Start(t)
	h := startHub(t, ix)
	qemu, bin := crossAgent(t, "armv6", "arm", "6", "qemu-arm-static")
	var code enrollment
	if st := h.api("POST", "/api/v1/enrollments", map[string]any{"labels": map[string]string{"site": "lab"}, "uses": 1, "ttl": "1h"}, &code); st != 201 {
		t.Fatalf("create enrollment: HTTP %d", st)
	}
	// Run what the hub printed, at this test's address, under qemu.
	args := strings.Fields(strings.TrimPrefix(code.Command, "sudo fleetagent "))
	if args[0] != "enroll" || !strings.Contains(code.Command, "--ca-fingerprint") {
		t.Fatalf("printed command %q", code.Command)
	}
	for i := range args {
		if args[i] == "--hub" {
			args[i+1] = h.url("")
		}
	}
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "etc", "fleetagent.yaml")
	args = append(args, "--id", "pi-zero-enrolled", "--config", cfgFile, "--spool-dir", filepath.Join(dir, "spool"), "--start", "no", "--run")
	agent := startProc(t, qemu, append([]string{bin}, args...), "FLEETAGENT_INTERVAL=300ms")
	q := fmt.Sprintf(`from(bucket: %q) |> range(start: -1h) |> filter(fn: (r) => r.device == "pi-zero-enrolled" and r._measurement == "mem" and r.site == "lab")`, ix.Bucket)
	eventually(t, 90*time.Second, "telemetry from the enrolled armv6 agent", func() bool {
		agent.mustRun(t, "the enrolled agent")
		return len(ix.Query(t, q)) >= 3
	})
	fi, err := os.Stat(cfgFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config %v, %v: want mode 0600", fi, err)
	}
	cfg, _ := os.ReadFile(cfgFile)
	if !strings.Contains(string(cfg), `token: "fwd_`) || !strings.Contains(string(cfg), "ca_fingerprint") || strings.Contains(string(cfg), code.Code) {
		t.Errorf("written config:\n%s", cfg)
	}
	var dev deviceJSON
	h.api("GET", "/api/v1/devices/pi-zero-enrolled", nil, &dev)
	if !dev.Device.Online || dev.Device.AgentVersion != "e2e-armv6" {
		t.Errorf("enrolled device %+v", dev.Device)
	}

	// Refusals, through the amd64 agent: each names its reason.
	enroll := func(code, id string) string {
		t.Helper()
		out, err := exec.Command(bins.agent, "enroll", "--hub", h.url(""), "--ca-file", h.caFile(), "--code", code,
			"--id", id, "--config", filepath.Join(t.TempDir(), "a.yaml"), "--start", "no").CombinedOutput()
		if err == nil {
			t.Fatalf("enrollment of %s with a bad code succeeded:\n%s", id, out)
		}
		return string(out)
	}
	if out := enroll(code.Code, "pi-second"); !strings.Contains(out, "used up") {
		t.Errorf("used-up code: %s", out)
	}
	var other enrollment
	h.api("POST", "/api/v1/enrollments", map[string]any{}, &other)
	h.api("POST", "/api/v1/enrollments/"+other.Enrollment.ID+"/revoke", nil, nil)
	if out := enroll(other.Code, "pi-third"); !strings.Contains(out, "revoked") {
		t.Errorf("revoked code: %s", out)
	}
	if out := enroll("fwe_"+strings.Repeat("A", 26), "pi-fourth"); !strings.Contains(out, "not recognised") {
		t.Errorf("unknown code: %s", out)
	}
	// Enrolling over an enrolled config needs --force.
	out, err := exec.Command(bins.agent, "enroll", "--hub", h.url(""), "--code", other.Code, "--config", cfgFile, "--start", "no").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--force") {
		t.Errorf("enroll over an enrolled config: %v\n%s", err, out)
	}

	var audit struct {
		Entries []struct {
			Action, Subject, Actor string
			Detail                 map[string]string
		} `json:"entries"`
	}
	h.api("GET", "/api/v1/audit", nil, &audit)
	found := false
	for _, e := range audit.Entries {
		if e.Action == "device.enroll" && e.Subject == "pi-zero-enrolled" && e.Actor == "enrollment:"+code.Enrollment.ID &&
			strings.HasPrefix(e.Detail["agent_version"], "e2e-armv6 linux/arm") {
			found = true
		}
	}
	if !found {
		t.Errorf("no device.enroll audit entry for pi-zero-enrolled: %+v", audit.Entries)
	}
}
