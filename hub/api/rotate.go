package api

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/hub/store"
)

// RotateTokenResponse answers POST /api/v1/device/token.
type RotateTokenResponse struct {
	Token string `json:"token"`
}

// rotateToken gives the calling device (Authorization: Bearer fwd_...) a
// new token. The old one keeps working until the new one is first used,
// so a device that loses this answer simply asks again. Refused tokens
// count against the address like failed sign-ins.
func (s *server) rotateToken(w http.ResponseWriter, r *http.Request) {
	addr := sourceAddr(r)
	if blockedBy(w, s.devices, addr, "too many failed device credentials from your address; try again later") {
		return
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	d, err := s.cfg.Store.AuthenticateDevice(r.Context(), token)
	switch {
	case !ok || errors.Is(err, hub.ErrUnauthorized):
		s.devices.fail(addr)
		w.Header().Set("WWW-Authenticate", `Bearer realm="fleethub", error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, "invalid device token")
		return
	case errors.Is(err, hub.ErrRevoked):
		writeError(w, http.StatusForbidden, "device revoked")
		return
	case err != nil:
		s.internalError(w, r, err)
		return
	}
	newToken, err := s.cfg.Store.RotateDeviceToken(r.Context(), d.ID, "device:"+d.ID)
	if errors.Is(err, hub.ErrTooSoon) {
		w.Header().Set("Retry-After", strconv.Itoa(int(hub.MinTokenRotation/time.Second)))
		writeError(w, http.StatusTooManyRequests, err.Error())
		return
	}
	if err != nil {
		s.writeStoreError(w, r, err)
		return
	}
	s.log.Info("device token rotated (pending first use)", "device", d.ID, "addr", addr)
	writeJSON(w, http.StatusOK, RotateTokenResponse{Token: newToken})
}

// rotateDevice asks a device to rotate its token: at once if it is
// online, else when it next connects.
func (s *server) rotateDevice(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if d, err := s.cfg.Store.GetDevice(r.Context(), id); err == nil && d.Transport == store.TransportMQTT {
		writeError(w, http.StatusConflict, "device "+id+" reaches the hub over MQTT and has no device token to rotate")
		return
	}
	if err := s.cfg.Store.RequestTokenRotation(r.Context(), id, actor(r)); err != nil {
		s.writeStoreError(w, r, err)
		return
	}
	asked := s.cfg.Sessions.RequestRotation(id)
	s.log.Info("token rotation requested", "device", id, "by", actor(r))
	d, err := s.cfg.Store.GetDevice(r.Context(), id)
	if err != nil {
		s.writeStoreError(w, r, err)
		return
	}
	// Online as it was when asked: the request itself closes its session
	// (the agent reconnects with its new token at once).
	d.Online = asked || s.online(id)
	writeJSON(w, http.StatusAccepted, DeviceResponse{Device: d})
}
