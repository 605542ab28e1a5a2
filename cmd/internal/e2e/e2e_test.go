package e2e

import (
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/agent/collect"
	"github.com/fleetwire/fleetwire/hub/influx/influxtest"
)

var labels = map[string]string{"site": "lab"}

// waitStored waits until the agent has produced at least n batches and the
// hub acked them all (spool empty).
func waitStored(t *testing.T, a *testAgent, n int, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, "batches produced and acked", func() bool {
		return len(a.batches()) >= n && a.drained()
	})
}

// TestSystemMetricsEndToEnd: real collectors on this machine -> agent ->
// hub -> InfluxDB; what comes back equals what the agent produced.
func TestSystemMetricsEndToEnd(t *testing.T) {
	ix := influxtest.Start(t)
	h := startHub(t, ix)
	tok := h.addDevice("pi-e2e", labels)
	cols, err := collect.New(collect.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, h, tok, agentOpts{interval: 200 * time.Millisecond, collectors: cols})
	waitStored(t, a, 5, 30*time.Second)
	a.finish(t)
	checkExactlyOnce(t, ix, "pi-e2e", labels, a.batches())
	// The device page's history comes back from InfluxDB through the hub.
	var hist struct {
		Series []struct {
			Name string    `json:"name"`
			V    []float64 `json:"v"`
		} `json:"series"`
	}
	if code := h.api("GET", "/api/v1/devices/pi-e2e/history?metric=mem.used_percent&range=1h", nil, &hist); code != 200 ||
		len(hist.Series) != 1 || len(hist.Series[0].V) == 0 || hist.Series[0].V[0] <= 0 {
		t.Errorf("history: HTTP %d %+v", code, hist)
	}
	var dev deviceJSON
	h.api("GET", "/api/v1/devices/pi-e2e", nil, &dev)
	if dev.Device.AgentVersion != "e2e" {
		t.Errorf("agent version %q not recorded", dev.Device.AgentVersion)
	}
}

// TestInfluxDownThirtySeconds: InfluxDB stopped for 30 s while a device
// streams, then restarted: every produced point is stored exactly once.
func TestInfluxDownThirtySeconds(t *testing.T) {
	ix := influxtest.Start(t)
	h := startHub(t, ix)
	tok := h.addDevice("pi-outage", labels)
	a := startAgent(t, h, tok, agentOpts{interval: 50 * time.Millisecond, collectors: []collect.Collector{&counter{}}})
	waitStored(t, a, 5, 30*time.Second)
	ix.Stop(t)
	outage := time.Now()
	// The outage lasts 30 s of streaming; acks must stop meanwhile.
	eventually(t, 40*time.Second, "30 s of outage", func() bool { return time.Since(outage) >= 30*time.Second })
	if a.drained() {
		t.Fatal("spool empty during the outage: the hub acked unstored data")
	}
	ix.Restart(t)
	n := len(a.batches())
	waitStored(t, a, n+5, 60*time.Second)
	a.finish(t)
	checkExactlyOnce(t, ix, "pi-outage", labels, a.batches())
}

// TestHubKilledMidStream: SIGKILL the hub while a device streams; after a
// restart the agent reconnects and resends; no loss, no duplicates.
func TestHubKilledMidStream(t *testing.T) {
	ix := influxtest.Start(t)
	h := startHub(t, ix)
	tok := h.addDevice("pi-hubkill", labels)
	a := startAgent(t, h, tok, agentOpts{interval: 20 * time.Millisecond, collectors: []collect.Collector{&counter{}}})
	waitStored(t, a, 10, 30*time.Second)
	sessions := a.link.Stats().Sessions
	h.kill()
	eventually(t, 10*time.Second, "agent notices the dead hub", func() bool { return !a.link.Stats().Connected })
	h.start()
	eventually(t, 30*time.Second, "agent reconnects", func() bool { return a.link.Stats().Sessions > sessions })
	n := len(a.batches())
	waitStored(t, a, n+10, 30*time.Second)
	a.finish(t)
	checkExactlyOnce(t, ix, "pi-hubkill", labels, a.batches())
}

// TestRevokeClosesSession: revoking a connected device closes its session
// within a second, and its token no longer connects.
func TestRevokeClosesSession(t *testing.T) {
	ix := influxtest.Start(t)
	h := startHub(t, ix)
	tok := h.addDevice("pi-revoke", nil)
	a := startAgent(t, h, tok, agentOpts{interval: 100 * time.Millisecond, collectors: []collect.Collector{&counter{}}})
	eventually(t, 10*time.Second, "agent connected", func() bool { return a.link.Stats().Connected })
	start := time.Now()
	if code := h.api("POST", "/api/v1/devices/pi-revoke/revoke", nil, nil); code/100 != 2 {
		t.Fatalf("revoke: HTTP %d", code)
	}
	eventually(t, 2*time.Second, "session closed", func() bool { return !a.link.Stats().Connected })
	if d := time.Since(start); d > time.Second {
		t.Errorf("revocation closed the session after %s, want < 1s", d)
	}
	sessions := a.link.Stats().Sessions
	var dev deviceJSON
	h.api("GET", "/api/v1/devices/pi-revoke", nil, &dev)
	if dev.Device.Online || !dev.Device.Revoked {
		t.Errorf("device after revoke: %+v", dev)
	}
	if a.link.Stats().Sessions != sessions {
		t.Error("revoked device reconnected")
	}
}

// TestBadTokensRefused: missing and wrong tokens never get a session.
func TestBadTokensRefused(t *testing.T) {
	ix := influxtest.Start(t)
	h := startHub(t, ix)
	for _, tok := range []string{"", "fwd_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "garbage"} {
		req := newUpgradeRequest(t, h, tok)
		resp, err := h.client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Errorf("token %q: HTTP %d, want 401", tok, resp.StatusCode)
		}
	}
}
