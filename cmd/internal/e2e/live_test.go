package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/fleetwire/fleetwire/agent/collect"
	"github.com/fleetwire/fleetwire/hub/influx/influxtest"
)

// login signs in as the first admin and returns the session cookie.
func (h *hubProc) login(t *testing.T) *http.Cookie {
	t.Helper()
	pw, err := os.ReadFile(filepath.Join(h.dataDir, "admin.password"))
	if err != nil {
		t.Fatalf("first admin password: %v", err)
	}
	body := strings.NewReader(`{"username":"admin","password":` + jsonString(strings.TrimSpace(string(pw))) + `}`)
	req, _ := http.NewRequest("POST", h.url("/api/v1/login"), body)
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, c := range resp.Cookies() {
		if c.Name == "fw_session" {
			return c
		}
	}
	t.Fatalf("login: HTTP %d, no session cookie", resp.StatusCode)
	return nil
}

func jsonString(s string) string { b, _ := json.Marshal(s); return string(b) }

// TestLiveStreamFromAgentToBrowser: a signed-in browser session subscribed
// to the fleet topic sees a real agent come online with its key metrics;
// a foreign Origin is refused before the upgrade.
func TestLiveStreamFromAgentToBrowser(t *testing.T) {
	ix := influxtest.Start(t)
	h := startHub(t, ix)
	tok := h.addDevice("pi-live", nil)
	cookie := h.login(t)
	dial := func(origin string) (*websocket.Conn, *http.Response, error) {
		d := websocket.Dialer{TLSClientConfig: h.client().Transport.(*http.Transport).TLSClientConfig, HandshakeTimeout: 5 * time.Second}
		hdr := http.Header{"Origin": {origin}, "Cookie": {cookie.Name + "=" + cookie.Value}}
		return d.Dial("wss://"+h.addr+"/v1/live", hdr)
	}
	if c, resp, err := dial("https://evil.example"); err == nil {
		c.Close()
		t.Fatal("foreign origin upgraded")
	} else if resp == nil || resp.StatusCode != 403 {
		t.Fatalf("foreign origin: %v", resp)
	}
	c, _, err := dial("https://" + h.addr)
	if err != nil {
		t.Fatalf("live socket: %v", err)
	}
	defer c.Close()
	if err := c.WriteJSON(map[string]string{"type": "subscribe", "topic": "fleet"}); err != nil {
		t.Fatal(err)
	}
	cols, err := collect.New(collect.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	startAgent(t, h, tok, agentOpts{interval: 200 * time.Millisecond, collectors: cols})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c.SetReadDeadline(deadline)
		var msg struct {
			Type    string `json:"type"`
			Devices []struct {
				ID      string             `json:"id"`
				Online  bool               `json:"online"`
				Metrics map[string]float64 `json:"metrics"`
			} `json:"devices"`
		}
		if err := c.ReadJSON(&msg); err != nil {
			t.Fatalf("no fleet update with the agent's metrics: %v", err)
		}
		for _, d := range msg.Devices {
			if d.ID == "pi-live" && d.Online && d.Metrics["mem.used_percent"] > 0 {
				return
			}
		}
	}
}
