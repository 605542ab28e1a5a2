package api

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/fleetwire/fleetwire/hub"
)

// CreateEnrollmentRequest is the body of POST /api/v1/enrollments.
type CreateEnrollmentRequest struct {
	Labels map[string]string `json:"labels,omitempty"`
	Uses   int               `json:"uses,omitempty"` // default 1
	TTL    string            `json:"ttl,omitempty"`  // Go duration, default "1h"
}

// EnrollmentView is a code with its state ("active", "expired",
// "used_up", "revoked").
type EnrollmentView struct {
	hub.EnrollmentCode
	State string `json:"state"`
}

// CreateEnrollmentResponse answers POST /api/v1/enrollments. Code is
// shown only here: the hub keeps just its hash.
type CreateEnrollmentResponse struct {
	Enrollment EnrollmentView `json:"enrollment"`
	Code       string         `json:"code"`
	// Command is what to run on the device.
	Command string `json:"command"`
}

// EnrollmentListResponse answers GET /api/v1/enrollments.
type EnrollmentListResponse struct {
	Enrollments []EnrollmentView `json:"enrollments"`
}

// EnrollRequest is the body of POST /api/v1/enroll, sent by a device.
type EnrollRequest struct {
	Code         string `json:"code"`
	DeviceID     string `json:"device_id"`
	AgentVersion string `json:"agent_version,omitempty"`
}

// EnrollResponse answers a successful enrollment: what the agent writes
// into its config.
type EnrollResponse struct {
	DeviceID      string            `json:"device_id"`
	Token         string            `json:"token"`
	HubURL        string            `json:"hub_url"` // wss://.../v1/device
	CAFingerprint string            `json:"ca_fingerprint,omitempty"`
	Labels        map[string]string `json:"labels"`
}

// AuditListResponse answers GET /api/v1/audit.
type AuditListResponse struct {
	Entries []hub.AuditEntry `json:"entries"`
}

// maxAgentVersion bounds the agent version an enrolling device reports
// (it goes into the audit log).
const maxAgentVersion = 128

// actor names the caller in the audit log: "token:NAME" or "user:NAME".
func actor(r *http.Request) string {
	p := caller(r)
	return p.Kind + ":" + p.Name
}

func (s *server) createEnrollment(w http.ResponseWriter, r *http.Request) {
	var req CreateEnrollmentRequest
	if !decodeBody(w, r, &req) {
		return
	}
	uses, ttl := max(req.Uses, 1), hub.DefaultEnrollTTL
	if req.Uses < 0 {
		writeError(w, http.StatusBadRequest, "uses must be at least 1")
		return
	}
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("ttl %q: want a duration such as 30m or 24h", req.TTL))
			return
		}
		ttl = d
	}
	c, code, err := s.cfg.Store.CreateEnrollmentCode(r.Context(), req.Labels, uses, ttl, actor(r))
	if err != nil {
		s.writeStoreError(w, r, err)
		return
	}
	s.log.Info("enrollment code created", "id", c.ID, "uses", uses, "expires_at", c.ExpiresAt, "by", actor(r))
	writeJSON(w, http.StatusCreated, CreateEnrollmentResponse{
		Enrollment: EnrollmentView{c, c.State(time.Now())}, Code: code, Command: s.enrollCommand(code),
	})
}

// enrollCommand is the line to run on a device.
func (s *server) enrollCommand(code string) string {
	cmd := "sudo fleetagent enroll --hub " + hubBaseURL(s.cfg.HubURL) + " --code " + code
	if s.cfg.CAFingerprint != "" {
		cmd += " --ca-fingerprint " + s.cfg.CAFingerprint
	}
	return cmd
}

// hubBaseURL turns the device endpoint (wss://host:port/v1/device) into
// the base URL the agent enrolls at (https://host:port).
func hubBaseURL(deviceURL string) string {
	if deviceURL == "" {
		return "https://HOST:8443"
	}
	u := strings.TrimSuffix(deviceURL, "/v1/device")
	if rest, ok := strings.CutPrefix(u, "wss://"); ok {
		return "https://" + rest
	}
	if rest, ok := strings.CutPrefix(u, "ws://"); ok {
		return "http://" + rest
	}
	return u
}

func (s *server) listEnrollments(w http.ResponseWriter, r *http.Request) {
	codes, err := s.cfg.Store.ListEnrollmentCodes(r.Context())
	if err != nil {
		s.writeStoreError(w, r, err)
		return
	}
	now := time.Now()
	out := EnrollmentListResponse{Enrollments: make([]EnrollmentView, len(codes))}
	for i, c := range codes {
		out.Enrollments[i] = EnrollmentView{c, c.State(now)}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *server) revokeEnrollment(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.cfg.Store.RevokeEnrollmentCode(r.Context(), id, actor(r)); err != nil {
		s.writeStoreError(w, r, err)
		return
	}
	s.log.Info("enrollment code revoked", "id", id, "by", actor(r))
	w.WriteHeader(http.StatusNoContent)
}

// enroll trades a code for a device token. It needs no credentials (the
// code is one); failed attempts count against the source address like
// failed sign-ins.
func (s *server) enroll(w http.ResponseWriter, r *http.Request) {
	addr := sourceAddr(r)
	if blockedBy(w, s.devices, addr, "too many failed device credentials from your address; try again later") {
		return
	}
	var req EnrollRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if len(req.AgentVersion) > maxAgentVersion || strings.ContainsFunc(req.AgentVersion, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("agent_version: at most %d printable characters", maxAgentVersion))
		return
	}
	detail := map[string]string{"remote": addr}
	if req.AgentVersion != "" {
		detail["agent_version"] = req.AgentVersion
	}
	d, token, err := s.cfg.Store.Enroll(r.Context(), req.Code, req.DeviceID, detail)
	switch {
	case errors.Is(err, hub.ErrCodeUnknown):
		s.devices.fail(addr)
		s.log.Warn("enrollment refused: unknown code", "addr", addr, "device", req.DeviceID)
		writeError(w, http.StatusUnauthorized, err.Error())
		return
	case errors.Is(err, hub.ErrCodeExpired), errors.Is(err, hub.ErrCodeUsedUp), errors.Is(err, hub.ErrCodeRevoked):
		s.devices.fail(addr)
		s.log.Warn("enrollment refused", "addr", addr, "device", req.DeviceID, "err", err)
		writeError(w, http.StatusForbidden, err.Error())
		return
	case errors.Is(err, hub.ErrConflict):
		writeError(w, http.StatusConflict, fmt.Sprintf("device id %q is taken: enroll with another (fleetagent enroll --id NAME)", req.DeviceID))
		return
	case err != nil:
		s.writeStoreError(w, r, err)
		return
	}
	s.log.Info("device enrolled", "device", d.ID, "addr", addr, "agent_version", req.AgentVersion)
	writeJSON(w, http.StatusCreated, EnrollResponse{
		DeviceID: d.ID, Token: token, HubURL: s.cfg.HubURL, CAFingerprint: s.cfg.CAFingerprint, Labels: d.Labels,
	})
}

func (s *server) listAudit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, _ := strconv.Atoi(q.Get("limit"))
	before, _ := strconv.ParseInt(q.Get("before"), 10, 64)
	entries, err := s.cfg.Store.ListAudit(r.Context(), limit, before)
	if err != nil {
		s.writeStoreError(w, r, err)
		return
	}
	if entries == nil {
		entries = []hub.AuditEntry{}
	}
	writeJSON(w, http.StatusOK, AuditListResponse{Entries: entries})
}
