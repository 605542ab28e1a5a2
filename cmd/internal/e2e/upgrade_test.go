package e2e

import (
	"net/http"
	"testing"

	"github.com/fleetwire/fleetwire/protocol"
)

// newUpgradeRequest is a raw WebSocket upgrade request to the device endpoint.
func newUpgradeRequest(t *testing.T, h *hubProc, token string) *http.Request {
	t.Helper()
	req, err := http.NewRequest("GET", h.url("/v1/device"), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	req.Header.Set("Sec-WebSocket-Protocol", protocol.Subprotocol)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req
}
