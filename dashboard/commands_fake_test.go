package dashboard_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"
)

// fakeCommands is a small in-memory stand-in for the hub's command API
// (hub/api/commands.go): send to one device or by selector, list, long
// poll with after_version, cancel, bulk status. Every command walks
// queued -> sent -> received -> final on a timer: "ping" succeeds with
// "pong", "hold" stays queued (for cancel), anything else is rejected as
// not on the allowlist.
type fakeCommands struct {
	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change
	cmds    map[string]*fakeCmd
	order   []string
	seq     int
}

type fakeCmd struct {
	ID         string            `json:"id"`
	BulkID     string            `json:"bulk_id,omitempty"`
	DeviceID   string            `json:"device_id"`
	Name       string            `json:"name"`
	Args       map[string]string `json:"args,omitempty"`
	SentBy     string            `json:"sent_by"`
	State      string            `json:"state"`
	CreatedAt  time.Time         `json:"created_at"`
	ExitCode   *int64            `json:"exit_code,omitempty"`
	Stdout     string            `json:"stdout,omitempty"`
	Stderr     string            `json:"stderr,omitempty"`
	Truncated  bool              `json:"truncated,omitempty"`
	DurationMs int64             `json:"duration_ms,omitempty"`
	Error      string            `json:"error,omitempty"`
	Version    int64             `json:"version"`
}

// fakeDeviceLabels mirrors GET /api/v1/devices of the fake hub.
var fakeDeviceLabels = map[string]map[string]string{
	"pi-01": {"site": "lab", "env": "test"},
	"pi-02": {"site": "roof", "env": "test"},
}

func newFakeCommands() *fakeCommands {
	return &fakeCommands{changed: make(chan struct{}), cmds: map[string]*fakeCmd{}}
}

func final(state string) bool {
	switch state {
	case "succeeded", "failed", "timed_out", "rejected", "expired", "canceled":
		return true
	}
	return false
}

func (f *fakeCommands) routes(mux *http.ServeMux, authed func(http.HandlerFunc) http.HandlerFunc) {
	mux.HandleFunc("POST /api/v1/commands", authed(f.send))
	mux.HandleFunc("GET /api/v1/commands", authed(f.list))
	mux.HandleFunc("GET /api/v1/commands/{id}", authed(f.get))
	mux.HandleFunc("POST /api/v1/commands/{id}/cancel", authed(f.cancel))
	mux.HandleFunc("GET /api/v1/bulk/{id}", authed(f.bulk))
}

// update changes c under the lock and wakes the long polls.
func (f *fakeCommands) update(c *fakeCmd, change func(c *fakeCmd)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if final(c.State) {
		return
	}
	change(c)
	c.Version++
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeCommands) run(c *fakeCmd) {
	if c.Name == "hold" {
		return
	}
	time.Sleep(150 * time.Millisecond)
	f.update(c, func(c *fakeCmd) { c.State = "sent" })
	time.Sleep(150 * time.Millisecond)
	f.update(c, func(c *fakeCmd) { c.State = "received" })
	time.Sleep(300 * time.Millisecond)
	f.update(c, func(c *fakeCmd) {
		if c.Name != "ping" {
			c.State, c.Error = "rejected", fmt.Sprintf("command %q is not on the device's allowlist", c.Name)
			return
		}
		zero := int64(0)
		c.State, c.Stdout, c.ExitCode, c.DurationMs = "succeeded", "pong\n", &zero, 12
	})
}

func (f *fakeCommands) send(w http.ResponseWriter, r *http.Request) {
	name, role := sessionUser(r)
	if role == "viewer" {
		writeStatus(w, http.StatusForbidden, map[string]string{"error": "role viewer cannot send commands"})
		return
	}
	var body struct {
		DeviceID string            `json:"device_id"`
		Selector map[string]string `json:"selector"`
		Name     string            `json:"name"`
		Args     map[string]string `json:"args"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Name == "" || (body.DeviceID == "") == (len(body.Selector) == 0) {
		writeStatus(w, http.StatusBadRequest, map[string]string{"error": "need name and exactly one of device_id, selector"})
		return
	}
	var devices []string
	if body.DeviceID != "" {
		devices = []string{body.DeviceID}
	} else {
		for id, labels := range fakeDeviceLabels {
			match := true
			for k, v := range body.Selector {
				match = match && labels[k] == v
			}
			if match {
				devices = append(devices, id)
			}
		}
		sort.Strings(devices)
	}
	f.mu.Lock()
	bulkID := ""
	if body.DeviceID == "" {
		f.seq++
		bulkID = "bulk-" + strconv.Itoa(f.seq)
	}
	var made []*fakeCmd
	for _, d := range devices {
		f.seq++
		c := &fakeCmd{ID: "cmd-" + strconv.Itoa(f.seq), BulkID: bulkID, DeviceID: d, Name: body.Name, Args: body.Args,
			SentBy: name, State: "queued", CreatedAt: time.Now().UTC(), Version: 1}
		f.cmds[c.ID] = c
		f.order = append(f.order, c.ID)
		made = append(made, c)
	}
	f.mu.Unlock()
	for _, c := range made {
		go f.run(c)
	}
	if bulkID == "" {
		f.mu.Lock()
		cp := *made[0]
		f.mu.Unlock()
		writeStatus(w, http.StatusCreated, map[string]any{"command": cp})
		return
	}
	writeStatus(w, http.StatusCreated, map[string]any{"bulk": f.bulkStatus(bulkID)})
}

func (f *fakeCommands) list(w http.ResponseWriter, r *http.Request) {
	dev := r.URL.Query().Get("device")
	limit, err := strconv.Atoi(r.URL.Query().Get("limit"))
	if err != nil || limit < 1 {
		limit = 100
	}
	f.mu.Lock()
	out := []fakeCmd{}
	for i := len(f.order) - 1; i >= 0 && len(out) < limit; i-- {
		if c := f.cmds[f.order[i]]; dev == "" || c.DeviceID == dev {
			out = append(out, *c)
		}
	}
	f.mu.Unlock()
	writeJSON(w, map[string]any{"commands": out})
}

// get answers at once or, with wait=, when the version passes
// after_version, the command is final, or the wait runs out.
func (f *fakeCommands) get(w http.ResponseWriter, r *http.Request) {
	wait, _ := time.ParseDuration(r.URL.Query().Get("wait"))
	after, _ := strconv.ParseInt(r.URL.Query().Get("after_version"), 10, 64)
	deadline := time.After(wait)
	for {
		f.mu.Lock()
		c, ok := f.cmds[r.PathValue("id")]
		var cp fakeCmd
		if ok {
			cp = *c
		}
		changed := f.changed
		f.mu.Unlock()
		if !ok {
			writeStatus(w, http.StatusNotFound, map[string]string{"error": "no such command"})
			return
		}
		if wait == 0 || cp.Version > after || final(cp.State) {
			writeJSON(w, map[string]any{"command": cp})
			return
		}
		select {
		case <-changed:
		case <-deadline:
			wait = 0
		case <-r.Context().Done():
			return
		}
	}
}

func (f *fakeCommands) cancel(w http.ResponseWriter, r *http.Request) {
	if _, role := sessionUser(r); role == "viewer" {
		writeStatus(w, http.StatusForbidden, map[string]string{"error": "role viewer cannot cancel commands"})
		return
	}
	f.mu.Lock()
	c, ok := f.cmds[r.PathValue("id")]
	f.mu.Unlock()
	if !ok {
		writeStatus(w, http.StatusNotFound, map[string]string{"error": "no such command"})
		return
	}
	f.update(c, func(c *fakeCmd) {
		if c.State == "queued" {
			c.State, c.Error = "canceled", "canceled by "+fakeUser
		}
	})
	f.mu.Lock()
	cp := *c
	f.mu.Unlock()
	writeJSON(w, map[string]any{"command": cp})
}

func (f *fakeCommands) bulkStatus(id string) map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	byState := map[string]int{}
	cmds := []fakeCmd{}
	done := true
	for _, cid := range f.order {
		if c := f.cmds[cid]; c.BulkID == id {
			byState[c.State]++
			cmds = append(cmds, *c)
			done = done && final(c.State)
		}
	}
	return map[string]any{"bulk_id": id, "total": len(cmds), "by_state": byState, "done": done, "commands": cmds}
}

func (f *fakeCommands) bulk(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, map[string]any{"bulk": f.bulkStatus(r.PathValue("id"))})
}

func writeStatus(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
