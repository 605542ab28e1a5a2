package api

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/fleetwire/fleetwire/hub"
)

// Commands is what the API needs of the hub's command service
// (*hub.CommandService implements it).
type Commands interface {
	Send(ctx context.Context, req hub.SendRequest) (hub.Command, error)
	SendBulk(ctx context.Context, req hub.SendRequest) (hub.BulkStatus, error)
	Get(ctx context.Context, id string) (hub.Command, error)
	List(ctx context.Context, f hub.CommandFilter) ([]hub.Command, error)
	Bulk(ctx context.Context, id string) (hub.BulkStatus, error)
	Cancel(ctx context.Context, id, by string) (hub.Command, error)
	Wait(ctx context.Context, id string, afterVersion int64) (hub.Command, error)
}

// SendCommandRequest is the body of POST /api/v1/commands: exactly one of
// DeviceID and Selector. TTL and Timeout are Go duration strings ("10m");
// empty means the hub's default.
type SendCommandRequest struct {
	DeviceID string            `json:"device_id,omitempty"`
	Selector map[string]string `json:"selector,omitempty"`
	Name     string            `json:"name"`
	Args     map[string]string `json:"args,omitempty"`
	TTL      string            `json:"ttl,omitempty"`
	Timeout  string            `json:"timeout,omitempty"`
}

// CommandResponse answers the routes about one command.
type CommandResponse struct {
	Command hub.Command `json:"command"`
}

// BulkResponse answers a bulk send and GET /api/v1/bulk/{id}.
type BulkResponse struct {
	Bulk hub.BulkStatus `json:"bulk"`
}

// CommandListResponse answers GET /api/v1/commands.
type CommandListResponse struct {
	Commands []hub.Command `json:"commands"`
}

// Command list and long-poll bounds.
const (
	maxCommandList = 1000
	// MaxWait caps the wait= of a long poll: long enough to save round
	// trips, short enough for proxies that cut idle requests.
	MaxWait = 60 * time.Second
)

func (s *server) sendCommand(w http.ResponseWriter, r *http.Request) {
	var body SendCommandRequest
	if !decodeBody(w, r, &body) {
		return
	}
	req, msg := sendRequest(body, caller(r).Name)
	if msg != "" {
		writeError(w, http.StatusBadRequest, msg)
		return
	}
	if req.DeviceID == "" {
		st, err := s.cfg.Commands.SendBulk(r.Context(), req)
		if err != nil {
			s.writeStoreError(w, r, err)
			return
		}
		s.log.Info("bulk command sent", "bulk", st.BulkID, "name", req.Name, "devices", st.Total, "by", req.SentBy)
		writeJSON(w, http.StatusCreated, BulkResponse{Bulk: st})
		return
	}
	// The service would queue a command for any id; an unknown device
	// would only see it expire, so refuse it now.
	d, err := s.cfg.Store.GetDevice(r.Context(), req.DeviceID)
	if err != nil {
		s.writeStoreError(w, r, err)
		return
	}
	if d.Revoked {
		writeError(w, http.StatusConflict, "device "+d.ID+" is revoked: it cannot connect to receive commands")
		return
	}
	c, err := s.cfg.Commands.Send(r.Context(), req)
	if err != nil {
		s.writeStoreError(w, r, err)
		return
	}
	s.log.Info("command sent", "command", c.ID, "device", c.DeviceID, "name", c.Name, "by", req.SentBy)
	writeJSON(w, http.StatusCreated, CommandResponse{Command: c})
}

// sendRequest checks the body's shape and converts it; the service checks
// the name, args and duration ranges. A non-empty msg is a 400.
func sendRequest(b SendCommandRequest, by string) (hub.SendRequest, string) {
	req := hub.SendRequest{DeviceID: b.DeviceID, Selector: b.Selector, Name: b.Name, Args: b.Args, SentBy: by}
	switch {
	case b.DeviceID != "" && b.Selector != nil:
		return req, "give device_id or selector, not both"
	case b.DeviceID == "" && b.Selector == nil:
		return req, "device_id or selector required"
	case b.Selector != nil && len(b.Selector) == 0:
		// An empty selector matches every device; a whole-fleet command
		// must not be one typo away.
		return req, "selector needs at least one label"
	}
	var err error
	if req.TTL, err = parseDuration(b.TTL); err != nil {
		return req, "ttl: " + err.Error()
	}
	if req.Timeout, err = parseDuration(b.Timeout); err != nil {
		return req, "timeout: " + err.Error()
	}
	return req, ""
}

// parseDuration parses a Go duration string; "" is zero (the default).
func parseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("want a duration such as 30s or 10m, got %q", s)
	}
	return d, nil
}

func (s *server) listCommands(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := hub.CommandFilter{DeviceID: q.Get("device"), BulkID: q.Get("bulk"), State: hub.CommandState(q.Get("state")), BeforeID: q.Get("before")}
	if f.State != "" && !f.State.Valid() {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("state %q: want queued, sent, received, succeeded, failed, timed_out, rejected, expired or canceled", f.State))
		return
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxCommandList {
			writeError(w, http.StatusBadRequest, "limit must be an integer in 1.."+strconv.Itoa(maxCommandList))
			return
		}
		f.Limit = n
	}
	list, err := s.cfg.Commands.List(r.Context(), f)
	if err != nil {
		s.writeStoreError(w, r, err)
		return
	}
	if list == nil {
		list = []hub.Command{} // scripts expect an array, never null
	}
	writeJSON(w, http.StatusOK, CommandListResponse{Commands: list})
}

// getCommand answers at once, or with wait= long-polls: it returns as soon
// as the command's version passes after_version or it finishes. Without
// after_version it waits for the command to finish. When the wait runs out
// it answers 200 with the command as it is: no news is not an error.
func (s *server) getCommand(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	wait, after, msg := waitParams(r)
	if msg != "" {
		writeError(w, http.StatusBadRequest, msg)
		return
	}
	var (
		c   hub.Command
		err error
	)
	if wait == 0 {
		c, err = s.cfg.Commands.Get(r.Context(), id)
	} else {
		ctx, cancel := context.WithTimeout(r.Context(), wait)
		c, err = s.cfg.Commands.Wait(ctx, id, after)
		cancel()
		if (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, hub.ErrShuttingDown)) && r.Context().Err() == nil {
			// Re-read with the request's context: the one Wait had may have
			// ended inside a store read, leaving c empty.
			c, err = s.cfg.Commands.Get(r.Context(), id)
		}
	}
	if err != nil {
		if r.Context().Err() != nil {
			return // the client left; nobody reads an answer
		}
		s.writeStoreError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, CommandResponse{Command: c})
}

// waitParams reads wait= and after_version=; a non-empty msg is a 400.
func waitParams(r *http.Request) (wait time.Duration, after int64, msg string) {
	q := r.URL.Query()
	after = math.MaxInt64 // no version is above it: wait for the end
	if v := q.Get("after_version"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return 0, 0, "after_version must be a non-negative integer"
		}
		after = n
	}
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > MaxWait {
			return 0, 0, fmt.Sprintf("wait must be a duration in (0, %s], e.g. 30s", MaxWait)
		}
		wait = d
	}
	return wait, after, ""
}

// cancelCommand cancels a queued command; once sent it is the device's.
func (s *server) cancelCommand(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	by := caller(r).Name
	c, err := s.cfg.Commands.Cancel(r.Context(), id, by)
	if errors.Is(err, hub.ErrConflict) {
		// The service's conflict reads "already exists: ..."; say what
		// actually blocks the cancel.
		if cur, gerr := s.cfg.Commands.Get(r.Context(), id); gerr == nil {
			writeError(w, http.StatusConflict, fmt.Sprintf("command %s is %s: only queued commands can be canceled", id, cur.State))
			return
		}
	}
	if err != nil {
		s.writeStoreError(w, r, err)
		return
	}
	s.log.Info("command canceled", "command", id, "by", by)
	writeJSON(w, http.StatusOK, CommandResponse{Command: c})
}

func (s *server) getBulk(w http.ResponseWriter, r *http.Request) {
	st, err := s.cfg.Commands.Bulk(r.Context(), r.PathValue("id"))
	if err != nil {
		s.writeStoreError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, BulkResponse{Bulk: st})
}
