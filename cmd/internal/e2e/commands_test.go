package e2e

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/agent/command"
	"github.com/fleetwire/fleetwire/hub/influx/influxtest"
)

// cmdJSON is the API's view of a command.
type cmdJSON struct {
	ID        string `json:"id"`
	State     string `json:"state"`
	Stdout    string `json:"stdout"`
	Stderr    string `json:"stderr"`
	ExitCode  *int64 `json:"exit_code"`
	Truncated bool   `json:"truncated"`
	Error     string `json:"error"`
	Version   int64  `json:"version"`
}

type cmdResp struct {
	Command cmdJSON `json:"command"`
}

// script writes an executable shell script into dir.
func script(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// commandConfig declares the test's allowed programs. Every run of a
// script appends a line to runs, so tests can count executions.
func commandConfig(t *testing.T) (*command.Config, string) {
	t.Helper()
	dir := t.TempDir()
	runs := filepath.Join(dir, "runs")
	cfg := &command.Config{
		Enabled:  true,
		StateDir: filepath.Join(dir, "state"),
		Allow: []command.Allowed{
			{Name: "greet", Exec: script(t, dir, "greet.sh", "echo run >> "+runs+"\necho \"hello $1\"\n"),
				Args: []string{"{who}"}, Params: map[string]command.Param{"who": {Enum: []string{"world", "pi"}, Required: true}}},
			{Name: "slow", Exec: script(t, dir, "slow.sh", "echo run >> "+runs+"\necho started\nsleep 3\necho done\n")},
			{Name: "hang", Exec: script(t, dir, "hang.sh", "echo run >> "+runs+"\nsleep 60\n"), Timeout: 500 * time.Millisecond},
			{Name: "loud", Exec: script(t, dir, "loud.sh", "yes x | head -c 5000\n"), MaxOutput: 1000},
		},
	}
	return cfg, runs
}

func runCount(t *testing.T, runs string) int {
	t.Helper()
	b, err := os.ReadFile(runs)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "run\n")
}

func (h *hubProc) sendCommand(body map[string]any) cmdJSON {
	h.t.Helper()
	var out cmdResp
	if code := h.api("POST", "/api/v1/commands", body, &out); code != 201 {
		h.t.Fatalf("send command %v: HTTP %d", body, code)
	}
	return out.Command
}

// waitCommand long-polls until the command is in a final state.
func (h *hubProc) waitCommand(id string, timeout time.Duration) cmdJSON {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	var c cmdJSON
	for time.Now().Before(deadline) {
		var out cmdResp
		h.api("GET", fmt.Sprintf("/api/v1/commands/%s?wait=5s&after_version=%d", url.PathEscape(id), c.Version), nil, &out)
		c = out.Command
		switch c.State {
		case "succeeded", "failed", "timed_out", "rejected", "expired", "canceled":
			return c
		}
	}
	h.t.Fatalf("command %s still %s after %s", id, c.State, timeout)
	return c
}

func TestCommandRoundTripAndRejections(t *testing.T) {
	ix := influxtest.Start(t)
	h := startHub(t, ix)
	tok := h.addDevice("pi-cmd", nil)
	cfg, runs := commandConfig(t)
	startAgent(t, h, tok, agentOpts{interval: time.Hour, commands: cfg})

	c := h.waitCommand(h.sendCommand(map[string]any{"device_id": "pi-cmd", "name": "greet", "args": map[string]string{"who": "pi"}}).ID, 20*time.Second)
	if c.State != "succeeded" || c.Stdout != "hello pi\n" || c.ExitCode == nil || *c.ExitCode != 0 {
		t.Fatalf("greet: %+v", c)
	}
	c = h.waitCommand(h.sendCommand(map[string]any{"device_id": "pi-cmd", "name": "ping"}).ID, 20*time.Second)
	if c.State != "succeeded" || c.Stdout != "pong\n" {
		t.Fatalf("ping: %+v", c)
	}
	// Refused on the device, nothing executed.
	for _, body := range []map[string]any{
		{"device_id": "pi-cmd", "name": "rm.everything"},
		{"device_id": "pi-cmd", "name": "greet", "args": map[string]string{"who": "; reboot"}},
		{"device_id": "pi-cmd", "name": "greet", "args": map[string]string{"who": "pi", "extra": "x"}},
	} {
		c := h.waitCommand(h.sendCommand(body).ID, 20*time.Second)
		if c.State != "rejected" || c.Error == "" {
			t.Errorf("%v: %+v, want rejected with a reason", body, c)
		}
	}
	if n := runCount(t, runs); n != 1 {
		t.Errorf("scripts ran %d times, want 1 (only the accepted greet)", n)
	}
	c = h.waitCommand(h.sendCommand(map[string]any{"device_id": "pi-cmd", "name": "loud"}).ID, 20*time.Second)
	if c.State != "succeeded" || len(c.Stdout) != 1000 || !c.Truncated {
		t.Errorf("loud: %d bytes, truncated %v, state %s; want 1000, true, succeeded", len(c.Stdout), c.Truncated, c.State)
	}
	c = h.waitCommand(h.sendCommand(map[string]any{"device_id": "pi-cmd", "name": "hang"}).ID, 20*time.Second)
	if c.State != "timed_out" {
		t.Errorf("hang: %+v, want timed_out", c)
	}
}

func TestCommandOfflineDeliveryExpiryCancelAndRoles(t *testing.T) {
	ix := influxtest.Start(t)
	h := startHub(t, ix)
	tok := h.addDevice("pi-late", nil)
	h.addDevice("pi-never", nil)
	queued := h.sendCommand(map[string]any{"device_id": "pi-late", "name": "ping", "ttl": "1h"})
	expiring := h.sendCommand(map[string]any{"device_id": "pi-never", "name": "ping", "ttl": "2s"})
	canceled := h.sendCommand(map[string]any{"device_id": "pi-never", "name": "ping"})
	if queued.State != "queued" {
		t.Fatalf("offline command state %s", queued.State)
	}
	var out cmdResp
	if code := h.api("POST", "/api/v1/commands/"+canceled.ID+"/cancel", nil, &out); code != 200 || out.Command.State != "canceled" {
		t.Fatalf("cancel: HTTP %d %+v", code, out.Command)
	}
	cfg, _ := commandConfig(t)
	startAgent(t, h, tok, agentOpts{interval: time.Hour, commands: cfg})
	if c := h.waitCommand(queued.ID, 20*time.Second); c.State != "succeeded" {
		t.Errorf("delivered on connect: %+v", c)
	}
	if c := h.waitCommand(expiring.ID, 20*time.Second); c.State != "expired" {
		t.Errorf("TTL while offline: %+v", c)
	}
	// A viewer may read but not send or cancel.
	var tk struct {
		Token string `json:"token"`
	}
	if code := h.api("POST", "/api/v1/tokens", map[string]any{"name": "wallboard", "role": "viewer"}, &tk); code != 201 {
		t.Fatalf("create viewer token: HTTP %d", code)
	}
	admin := h.token
	h.token = tk.Token
	defer func() { h.token = admin }()
	if code := h.api("POST", "/api/v1/commands", map[string]any{"device_id": "pi-late", "name": "ping"}, nil); code != 403 {
		t.Errorf("viewer send: HTTP %d, want 403", code)
	}
	if code := h.api("GET", "/api/v1/commands/"+queued.ID, nil, nil); code != 200 {
		t.Errorf("viewer read: HTTP %d, want 200", code)
	}
}

// TestCommandSurvivesHubKill: the hub is SIGKILLed after the device received
// a command and before its result; after the restart the command
// completes, and it ran exactly once on the device.
func TestCommandSurvivesHubKill(t *testing.T) {
	ix := influxtest.Start(t)
	h := startHub(t, ix)
	tok := h.addDevice("pi-cmdkill", nil)
	cfg, runs := commandConfig(t)
	a := startAgent(t, h, tok, agentOpts{interval: time.Hour, commands: cfg})
	c := h.sendCommand(map[string]any{"device_id": "pi-cmdkill", "name": "slow"})
	eventually(t, 20*time.Second, "the slow command started", func() bool { return runCount(t, runs) == 1 })
	sessions := a.link.Stats().Sessions
	h.kill()
	h.start()
	eventually(t, 30*time.Second, "agent reconnected", func() bool { return a.link.Stats().Sessions > sessions })
	got := h.waitCommand(c.ID, 30*time.Second)
	if got.State != "succeeded" || !strings.Contains(got.Stdout, "done") {
		t.Errorf("after hub restart: %+v", got)
	}
	if n := runCount(t, runs); n != 1 {
		t.Errorf("ran %d times, want exactly once", n)
	}
}

// TestBulkCommandToHundredDevices: 100 devices match the selector, 80 are
// online; every device's outcome is accounted for.
func TestBulkCommandToHundredDevices(t *testing.T) {
	ix := influxtest.Start(t)
	h := startHub(t, ix)
	const total, online = 100, 80
	tokens := make([]string, total)
	for i := range tokens {
		tokens[i] = h.addDevice(fmt.Sprintf("sim-%03d", i), map[string]string{"site": "lab"})
	}
	h.addDevice("elsewhere", map[string]string{"site": "home"})
	var wg sync.WaitGroup
	agents := make([]*testAgent, online)
	for i := 0; i < online; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			cfg, _ := commandConfig(t)
			agents[i] = startAgent(t, h, tokens[i], agentOpts{interval: time.Hour, commands: cfg})
		}(i)
	}
	wg.Wait()
	eventually(t, 30*time.Second, "agents connected", func() bool {
		for _, a := range agents {
			if !a.link.Stats().Connected {
				return false
			}
		}
		return true
	})
	var out struct {
		Bulk struct {
			BulkID string `json:"bulk_id"`
			Total  int    `json:"total"`
		} `json:"bulk"`
	}
	if code := h.api("POST", "/api/v1/commands", map[string]any{"selector": map[string]string{"site": "lab"}, "name": "ping", "ttl": "3s"}, &out); code != 201 {
		t.Fatalf("bulk send: HTTP %d", code)
	}
	if out.Bulk.Total != total {
		t.Fatalf("bulk targets %d devices, want %d", out.Bulk.Total, total)
	}
	var st struct {
		Bulk struct {
			Done    bool           `json:"done"`
			ByState map[string]int `json:"by_state"`
		} `json:"bulk"`
	}
	eventually(t, 60*time.Second, "every device's outcome", func() bool {
		h.api("GET", "/api/v1/bulk/"+out.Bulk.BulkID, nil, &st)
		return st.Bulk.Done
	})
	if st.Bulk.ByState["succeeded"] != online || st.Bulk.ByState["expired"] != total-online {
		t.Fatalf("outcomes %v, want %d succeeded and %d expired", st.Bulk.ByState, online, total-online)
	}
}
