package api

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/fleetwire/fleetwire/hub"
)

func TestTokenRotationAPI(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	_, old, err := e.st.CreateDevice(ctx, "pi-rot", nil)
	if err != nil {
		t.Fatal(err)
	}
	// The operator asks; the live session is told.
	status, body := e.do("POST", "/api/v1/devices/pi-rot/rotate", "")
	if status != http.StatusAccepted || !decode[DeviceResponse](t, body).Device.RotateRequested {
		t.Fatalf("rotate: %d %s", status, body)
	}
	if got := e.sess.rotations.get(); len(got) != 1 || got[0] != "pi-rot" {
		t.Errorf("sessions told %v", got)
	}
	status, body = e.do("POST", "/api/v1/devices/nope/rotate", "")
	wantError(t, status, body, http.StatusNotFound, "nope")

	// An online device's session is closed by the request itself: the
	// answer still says it was online (it rotates now).
	if _, _, err := e.st.CreateDevice(ctx, "pi-online", nil); err != nil {
		t.Fatal(err)
	}
	e.sess.OnlineFn = func(id string) bool { return id == "pi-online" && !slices.Contains(e.sess.rotations.get(), id) }
	status, body = e.do("POST", "/api/v1/devices/pi-online/rotate", "")
	if d := decode[DeviceResponse](t, body).Device; status != http.StatusAccepted || !d.Online {
		t.Fatalf("rotate an online device: %d %s, want it reported online", status, body)
	}

	// The device trades its token for a new one.
	status, body = e.doWith("POST", "/api/v1/device/token", "", "Bearer "+old, "")
	if status != http.StatusOK {
		t.Fatalf("device rotation: %d %s", status, body)
	}
	newTok := decode[RotateTokenResponse](t, body).Token
	if !strings.HasPrefix(newTok, "fwd_") || newTok == old {
		t.Fatalf("new token %q", newTok)
	}
	if _, err := e.st.AuthenticateDevice(ctx, newTok); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.AuthenticateDevice(ctx, old); !errors.Is(err, hub.ErrUnauthorized) {
		t.Errorf("old token after the new one was used: %v", err)
	}
	for _, auth := range []string{"", "Bearer " + old, "Bearer fwd_junk", "Basic x"} {
		status, body := e.doWith("POST", "/api/v1/device/token", "", auth, "")
		wantError(t, status, body, http.StatusUnauthorized, "device token")
	}
	// Asking again at once, unasked, is too soon.
	status, body = e.doWith("POST", "/api/v1/device/token", "", "Bearer "+newTok, "")
	wantError(t, status, body, http.StatusTooManyRequests, "at most one per")
	// An MQTT device has no token to rotate.
	if _, _, err := e.st.CreateDevice(ctx, "esp-1", nil); err != nil {
		t.Fatal(err)
	}
	if err := e.st.SetDeviceTransport(ctx, "esp-1", "mqtt"); err != nil {
		t.Fatal(err)
	}
	status, body = e.do("POST", "/api/v1/devices/esp-1/rotate", "")
	wantError(t, status, body, http.StatusConflict, "MQTT")
	// An API token is not a device token.
	status, body = e.doWith("POST", "/api/v1/device/token", "", "Bearer "+e.token, "")
	wantError(t, status, body, http.StatusUnauthorized, "device token")
}
