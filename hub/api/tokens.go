package api

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/hub/store"
)

// CreateTokenRequest is the body of POST /api/v1/tokens.
type CreateTokenRequest struct {
	Name string   `json:"name"`
	Role hub.Role `json:"role"`
}

// CreateTokenResponse answers POST /api/v1/tokens. Token is shown only
// here: the hub keeps just its hash.
type CreateTokenResponse struct {
	Name  string   `json:"name"`
	Role  hub.Role `json:"role"`
	Token string   `json:"token"`
}

// TokenListResponse answers GET /api/v1/tokens.
type TokenListResponse struct {
	Tokens []store.APIToken `json:"tokens"`
}

func (s *server) createToken(w http.ResponseWriter, r *http.Request) {
	var req CreateTokenRequest
	if !decodeBody(w, r, &req) {
		return
	}
	// Allows(viewer) holds exactly for the known roles.
	if !req.Role.Allows(hub.RoleViewer) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("role %q: want viewer, operator or admin", req.Role))
		return
	}
	token, err := s.cfg.Store.CreateAPIToken(r.Context(), req.Name, req.Role)
	if err != nil {
		s.writeStoreError(w, r, err)
		return
	}
	s.log.Info("api token created", "token", req.Name, "role", req.Role, "by", caller(r).Name)
	writeJSON(w, http.StatusCreated, CreateTokenResponse{Name: req.Name, Role: req.Role, Token: token})
}

func (s *server) listTokens(w http.ResponseWriter, r *http.Request) {
	list, err := s.cfg.Store.ListAPITokens(r.Context())
	if err != nil {
		s.writeStoreError(w, r, err)
		return
	}
	if list == nil {
		list = []store.APIToken{}
	}
	writeJSON(w, http.StatusOK, TokenListResponse{Tokens: list})
}

func (s *server) deleteToken(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	err := s.cfg.Store.DeleteAPIToken(r.Context(), name)
	if errors.Is(err, hub.ErrNotFound) {
		writeError(w, http.StatusNotFound, "api token "+name+" not found")
		return
	}
	if errors.Is(err, hub.ErrConflict) {
		// The only conflict: the hub would be left without an admin.
		writeError(w, http.StatusConflict, "api token "+name+" is the last admin token: create another admin token first")
		return
	}
	if err != nil {
		s.writeStoreError(w, r, err)
		return
	}
	s.log.Info("api token deleted", "token", name, "by", caller(r).Name)
	w.WriteHeader(http.StatusNoContent)
}
