package api

import (
	"net/http"
	"strconv"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/hub/store"
)

// CreateDeviceRequest is the body of POST /api/v1/devices.
type CreateDeviceRequest struct {
	ID     string            `json:"id"`
	Labels map[string]string `json:"labels,omitempty"`
}

// CreateDeviceResponse answers POST /api/v1/devices. Token is shown only
// here: the hub keeps just its hash.
type CreateDeviceResponse struct {
	Device      hub.Device `json:"device"`
	Token       string     `json:"token"`
	AgentConfig string     `json:"agent_config"`
}

// DeviceResponse answers the routes about one device.
type DeviceResponse struct {
	Device hub.Device `json:"device"`
}

// DeviceListResponse answers GET /api/v1/devices.
type DeviceListResponse struct {
	Devices []hub.Device `json:"devices"`
	// NewestAgentVersion is the newest agent version any device runs;
	// devices with an older one have agent_behind set.
	NewestAgentVersion string `json:"newest_agent_version,omitempty"`
}

// DeadLetterListResponse answers GET /api/v1/deadletters.
type DeadLetterListResponse struct {
	DeadLetters []hub.DeadLetter `json:"dead_letters"`
	// Total counts every stored dead letter, not just this page.
	Total int64 `json:"total"`
}

// Dead letter page sizes.
const (
	defaultDeadLetterLimit = 100
)

func (s *server) createDevice(w http.ResponseWriter, r *http.Request) {
	var req CreateDeviceRequest
	if !decodeBody(w, r, &req) {
		return
	}
	d, token, err := s.cfg.Store.CreateDevice(r.Context(), req.ID, req.Labels)
	if err != nil {
		s.writeStoreError(w, r, err)
		return
	}
	s.log.Info("device added", "device", d.ID, "by", tokenName(r))
	writeJSON(w, http.StatusCreated, CreateDeviceResponse{
		Device:      d,
		Token:       token,
		AgentConfig: agentConfig(d.ID, token, s.cfg.HubURL, s.cfg.CAFingerprint),
	})
}

func (s *server) listDevices(w http.ResponseWriter, r *http.Request) {
	devices, err := s.cfg.Store.ListDevices(r.Context())
	if err != nil {
		s.writeStoreError(w, r, err)
		return
	}
	for i := range devices {
		devices[i].Online = s.online(devices[i].ID)
	}
	newest := hub.MarkAgentVersions(devices)
	writeJSON(w, http.StatusOK, DeviceListResponse{Devices: devices, NewestAgentVersion: newest})
}

func (s *server) getDevice(w http.ResponseWriter, r *http.Request) {
	d, err := s.cfg.Store.GetDevice(r.Context(), r.PathValue("id"))
	if err != nil {
		s.writeStoreError(w, r, err)
		return
	}
	d.Online = s.online(d.ID)
	// Behind the newest version the fleet runs?
	if versions, err := s.cfg.Store.AgentVersions(r.Context()); err == nil {
		d.AgentBehind = hub.AgentVersionBehind(d.AgentVersion, hub.NewestAgentVersion(versions))
	}
	writeJSON(w, http.StatusOK, DeviceResponse{Device: d})
}

// revokeDevice revokes in the store first, then closes the live session:
// the other order would let the agent reconnect with a still-valid token.
func (s *server) revokeDevice(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.cfg.Store.RevokeDevice(r.Context(), id); err != nil {
		s.writeStoreError(w, r, err)
		return
	}
	s.disconnect(id, "revoked")
	s.log.Info("device revoked", "device", id, "by", tokenName(r))
	d, err := s.cfg.Store.GetDevice(r.Context(), id)
	if err != nil {
		s.writeStoreError(w, r, err)
		return
	}
	d.Online = s.online(id)
	writeJSON(w, http.StatusOK, DeviceResponse{Device: d})
}

func (s *server) deleteDevice(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.cfg.Store.DeleteDevice(r.Context(), id); err != nil {
		s.writeStoreError(w, r, err)
		return
	}
	s.disconnect(id, "deleted")
	s.log.Info("device deleted", "device", id, "by", tokenName(r))
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) listDeadLetters(w http.ResponseWriter, r *http.Request) {
	limit := defaultDeadLetterLimit
	if q := r.URL.Query().Get("limit"); q != "" {
		n, err := strconv.Atoi(q)
		if err != nil || n < 1 || n > store.MaxDeadLetterList {
			writeError(w, http.StatusBadRequest, "limit must be an integer in 1.."+strconv.Itoa(store.MaxDeadLetterList))
			return
		}
		limit = n
	}
	list, err := s.cfg.Store.ListDeadLetters(r.Context(), limit)
	if err != nil {
		s.writeStoreError(w, r, err)
		return
	}
	total, err := s.cfg.Store.CountDeadLetters(r.Context())
	if err != nil {
		s.writeStoreError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, DeadLetterListResponse{DeadLetters: list, Total: total})
}

// online and disconnect tolerate a nil Sessions (a hub without a device
// endpoint, e.g. in tools): nothing is ever online then.
func (s *server) online(id string) bool {
	return s.cfg.Sessions != nil && s.cfg.Sessions.Online(id)
}

func (s *server) disconnect(id, reason string) {
	if s.cfg.Sessions != nil {
		s.cfg.Sessions.Disconnect(id, reason)
	}
}
