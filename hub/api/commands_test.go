package api

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/hub/store"
	"github.com/fleetwire/fleetwire/protocol"
)

// waitSignal is the real command service that also reports each long poll
// reaching Wait, so a test can deliver a result while the poll waits.
type waitSignal struct {
	*hub.CommandService
	waits chan<- string
}

func (w waitSignal) Wait(ctx context.Context, id string, after int64) (hub.Command, error) {
	select {
	case w.waits <- id:
	default:
	}
	return w.CommandService.Wait(ctx, id, after)
}

// tokenFor creates an API token with role and returns its Authorization
// header value.
func (e *env) tokenFor(name string, role hub.Role) string {
	e.t.Helper()
	tok, err := e.st.CreateAPIToken(context.Background(), name, role)
	if err != nil {
		e.t.Fatal(err)
	}
	return "Bearer " + tok
}

func (e *env) as(auth, method, path, body string) (int, []byte) {
	e.t.Helper()
	return e.doWith(method, path, body, auth, "application/json")
}

func (e *env) addDevices(labels map[string]map[string]string) {
	e.t.Helper()
	for id, l := range labels {
		if _, _, err := e.st.CreateDevice(context.Background(), id, l); err != nil {
			e.t.Fatal(err)
		}
	}
}

// send creates a command to dev as the admin and returns it.
func (e *env) send(dev, name string) hub.Command {
	e.t.Helper()
	status, body := e.do("POST", "/api/v1/commands", `{"device_id":"`+dev+`","name":"`+name+`"}`)
	if status != http.StatusCreated {
		e.t.Fatalf("send: %d %s", status, body)
	}
	return decode[CommandResponse](e.t, body).Command
}

func (e *env) result(dev string, r *protocol.CommandResult) {
	e.t.Helper()
	if err := e.svc.HandleResult(context.Background(), dev, r); err != nil {
		e.t.Fatal(err)
	}
}

func TestSendCommand(t *testing.T) {
	e := newEnv(t)
	e.addDevices(map[string]map[string]string{"pi-01": nil})
	ops := e.tokenFor("ops", hub.RoleOperator)
	status, body := e.as(ops, "POST", "/api/v1/commands",
		`{"device_id":"pi-01","name":"service.restart","args":{"unit":"nginx"},"ttl":"10m","timeout":"30s"}`)
	if status != http.StatusCreated {
		t.Fatalf("send: %d %s", status, body)
	}
	c := decode[CommandResponse](t, body).Command
	if c.ID == "" || c.DeviceID != "pi-01" || c.Name != "service.restart" || c.Args["unit"] != "nginx" ||
		c.SentBy != "ops" || c.State != hub.StateQueued || c.TimeoutMs != 30000 || c.ExpiresAt.Sub(c.CreatedAt) != 10*time.Minute {
		t.Fatalf("command %+v", c)
	}
	if got, err := e.svc.Get(context.Background(), c.ID); err != nil || got.Name != "service.restart" {
		t.Fatalf("stored command %+v, %v", got, err)
	}

	bad := []struct{ body, want string }{
		{`{"name":"x"}`, "device_id or selector required"},
		{`{"device_id":"pi-01","selector":{"site":"lab"},"name":"x"}`, "not both"},
		{`{"selector":{},"name":"x"}`, "at least one label"},
		{`{"device_id":"pi-01","name":"x","ttl":"soon"}`, "ttl"},
		{`{"device_id":"pi-01","name":"x","timeout":"10"}`, "timeout"},
		{`{"device_id":"pi-01","name":"x","timeout":"25h"}`, "timeout"},
		{`{"device_id":"pi-01","name":"bad name"}`, "command name"},
		{`{"device_id":"pi-01","name":"x","argz":{}}`, "unknown field"},
	}
	for _, b := range bad {
		status, body := e.as(ops, "POST", "/api/v1/commands", b.body)
		wantError(t, status, body, http.StatusBadRequest, b.want)
	}
	status, body = e.as(ops, "POST", "/api/v1/commands", `{"device_id":"nope","name":"x"}`)
	wantError(t, status, body, http.StatusNotFound, "nope")
	if err := e.st.RevokeDevice(context.Background(), "pi-01"); err != nil {
		t.Fatal(err)
	}
	status, body = e.as(ops, "POST", "/api/v1/commands", `{"device_id":"pi-01","name":"x"}`)
	wantError(t, status, body, http.StatusConflict, "revoked")
	if list, _ := e.svc.List(context.Background(), hub.CommandFilter{}); len(list) != 1 {
		t.Fatalf("refused sends created commands: %+v", list)
	}
}

func TestRoles(t *testing.T) {
	e := newEnv(t)
	e.addDevices(map[string]map[string]string{"pi-01": {"site": "lab"}})
	c := e.send("pi-01", "x")
	viewer, ops := e.tokenFor("ro", hub.RoleViewer), e.tokenFor("ops", hub.RoleOperator)
	refused := []struct {
		auth, method, path, body, need string
	}{
		{viewer, "POST", "/api/v1/commands", `{"device_id":"pi-01","name":"x"}`, "operator"},
		{viewer, "POST", "/api/v1/commands", `{"selector":{"site":"lab"},"name":"x"}`, "operator"},
		{viewer, "POST", "/api/v1/commands/" + c.ID + "/cancel", "", "operator"},
		{viewer, "POST", "/api/v1/devices", `{"id":"pi-02"}`, "admin"},
		{viewer, "GET", "/api/v1/tokens", "", "admin"},
		{ops, "POST", "/api/v1/devices", `{"id":"pi-02"}`, "admin"},
		{ops, "POST", "/api/v1/devices/pi-01/revoke", "", "admin"},
		{ops, "DELETE", "/api/v1/devices/pi-01", "", "admin"},
		{ops, "POST", "/api/v1/tokens", `{"name":"x","role":"admin"}`, "admin"},
		{ops, "GET", "/api/v1/tokens", "", "admin"},
		{ops, "DELETE", "/api/v1/tokens/ro", "", "admin"},
	}
	for _, r := range refused {
		status, body := e.as(r.auth, r.method, r.path, r.body)
		wantError(t, status, body, http.StatusForbidden, "needs the "+r.need+" role")
	}
	if got, _ := e.svc.Get(context.Background(), c.ID); got.State != hub.StateQueued {
		t.Fatalf("refused cancel changed the command: %s", got.State)
	}
	if d, err := e.st.GetDevice(context.Background(), "pi-01"); err != nil || d.Revoked {
		t.Fatalf("refused revoke/delete changed the device: %+v %v", d, err)
	}
	if _, err := e.st.GetDevice(context.Background(), "pi-02"); err == nil {
		t.Fatal("refused add created the device")
	}
	for _, path := range []string{"/api/v1/devices", "/api/v1/devices/pi-01", "/api/v1/deadletters",
		"/api/v1/commands", "/api/v1/commands/" + c.ID, "/api/v1/bulk/none"} {
		status, body := e.as(viewer, "GET", path, "")
		if status == http.StatusForbidden || status == http.StatusUnauthorized {
			t.Errorf("viewer GET %s: %d %s", path, status, body)
		}
	}
	if status, body := e.as(ops, "POST", "/api/v1/commands/"+c.ID+"/cancel", ""); status != http.StatusOK {
		t.Fatalf("operator cancel: %d %s", status, body)
	}
}

func TestListCommands(t *testing.T) {
	e := newEnv(t)
	_, body := e.do("GET", "/api/v1/commands", "")
	if !bytes.Contains(body, []byte(`"commands": []`)) {
		t.Fatalf("empty list body %s", body)
	}
	e.addDevices(map[string]map[string]string{"pi-01": nil, "pi-02": nil})
	a, b, c := e.send("pi-01", "one"), e.send("pi-02", "two"), e.send("pi-01", "three")
	e.result("pi-01", &protocol.CommandResult{ID: a.ID, State: "succeeded"})
	ids := func(q string) []string {
		t.Helper()
		status, body := e.do("GET", "/api/v1/commands"+q, "")
		if status != http.StatusOK {
			t.Fatalf("list %s: %d %s", q, status, body)
		}
		var out []string
		for _, c := range decode[CommandListResponse](t, body).Commands {
			out = append(out, c.ID)
		}
		return out
	}
	cases := map[string][]string{
		"":                           {c.ID, b.ID, a.ID},
		"?device=pi-01":              {c.ID, a.ID},
		"?state=succeeded":           {a.ID},
		"?state=queued&device=pi-01": {c.ID},
		"?limit=2":                   {c.ID, b.ID},
		"?before=" + c.ID:            {b.ID, a.ID},
	}
	for q, want := range cases {
		if got := ids(q); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("list%s = %v, want %v", q, got, want)
		}
	}
	for _, q := range []string{"?state=done", "?limit=0", "?limit=1001", "?limit=x"} {
		status, body := e.do("GET", "/api/v1/commands"+q, "")
		wantError(t, status, body, http.StatusBadRequest, strings.Split(q[1:], "=")[0])
	}
}

func TestGetCommand(t *testing.T) {
	e := newEnv(t)
	e.addDevices(map[string]map[string]string{"pi-01": nil})
	c := e.send("pi-01", "x")
	status, body := e.do("GET", "/api/v1/commands/"+c.ID, "")
	if got := decode[CommandResponse](t, body).Command; status != http.StatusOK || got.ID != c.ID || got.Version != c.Version {
		t.Fatalf("get: %d %s", status, body)
	}
	status, body = e.do("GET", "/api/v1/commands/nope", "")
	wantError(t, status, body, http.StatusNotFound, "not found")
	status, body = e.do("GET", "/api/v1/commands/nope?wait=1s", "")
	wantError(t, status, body, http.StatusNotFound, "not found")
	for q, want := range map[string]string{"wait=61s": "wait", "wait=0s": "wait", "wait=-1s": "wait", "wait=x": "wait",
		"wait=1s&after_version=-1": "after_version", "after_version=x": "after_version"} {
		status, body = e.do("GET", "/api/v1/commands/"+c.ID+"?"+q, "")
		wantError(t, status, body, http.StatusBadRequest, want)
	}
}

// A long poll that runs out answers 200 with the command unchanged.
func TestWaitTimeout(t *testing.T) {
	e := newEnv(t)
	e.addDevices(map[string]map[string]string{"pi-01": nil})
	c := e.send("pi-01", "x")
	for _, q := range []string{"?wait=50ms&after_version=1", "?wait=50ms"} {
		status, body := e.do("GET", "/api/v1/commands/"+c.ID+q, "")
		got := decode[CommandResponse](t, body).Command
		if status != http.StatusOK || got.ID != c.ID || got.Version != c.Version || got.State != hub.StateQueued {
			t.Fatalf("%s: %d %s", q, status, body)
		}
	}
}

// A long poll answers as soon as a result arrives, and after_version below
// the current version answers at once.
func TestWaitWakes(t *testing.T) {
	e := newEnv(t)
	e.addDevices(map[string]map[string]string{"pi-01": nil})
	c := e.send("pi-01", "x")
	type answer struct {
		status int
		body   []byte
	}
	done := make(chan answer, 1)
	go func() {
		// Without after_version the poll waits for the end, past the
		// "output" update below.
		status, body := e.do("GET", "/api/v1/commands/"+c.ID+"?wait=60s", "")
		done <- answer{status, body}
	}()
	<-e.waits
	e.result("pi-01", &protocol.CommandResult{ID: c.ID, State: "output", Stdout: []byte("par")})
	e.result("pi-01", &protocol.CommandResult{ID: c.ID, State: "succeeded", ExitCode: 0, Stdout: []byte("partial\n"), DurationMs: 12})
	a := <-done
	got := decode[CommandResponse](t, a.body).Command
	if a.status != http.StatusOK || got.State != hub.StateSucceeded || got.Stdout != "partial\n" || got.ExitCode == nil || *got.ExitCode != 0 || got.DurationMs != 12 {
		t.Fatalf("woken poll: %d %s", a.status, a.body)
	}
	status, body := e.do("GET", "/api/v1/commands/"+c.ID+"?wait=60s&after_version=1", "")
	if got := decode[CommandResponse](t, body).Command; status != http.StatusOK || got.Version <= 1 {
		t.Fatalf("stale after_version: %d %s", status, body)
	}

	c2 := e.send("pi-01", "y")
	go func() {
		status, body := e.do("GET", "/api/v1/commands/"+c2.ID+"?wait=60s&after_version="+strconv.FormatInt(c2.Version, 10), "")
		done <- answer{status, body}
	}()
	<-e.waits
	e.result("pi-01", &protocol.CommandResult{ID: c2.ID, State: "received"})
	a = <-done
	if got := decode[CommandResponse](t, a.body).Command; a.status != http.StatusOK || got.State != hub.StateReceived || got.Version != c2.Version+1 {
		t.Fatalf("after_version poll: %d %s", a.status, a.body)
	}
}

func TestCancel(t *testing.T) {
	e := newEnv(t)
	e.addDevices(map[string]map[string]string{"pi-01": nil})
	c := e.send("pi-01", "x")
	ops := e.tokenFor("ops", hub.RoleOperator)
	status, body := e.as(ops, "POST", "/api/v1/commands/"+c.ID+"/cancel", "")
	got := decode[CommandResponse](t, body).Command
	if status != http.StatusOK || got.State != hub.StateCanceled || !strings.Contains(got.Error, "ops") || got.FinishedAt == nil {
		t.Fatalf("cancel: %d %s", status, body)
	}
	status, body = e.as(ops, "POST", "/api/v1/commands/"+c.ID+"/cancel", "")
	wantError(t, status, body, http.StatusConflict, "is canceled: only queued commands can be canceled")
	status, body = e.as(ops, "POST", "/api/v1/commands/nope/cancel", "")
	wantError(t, status, body, http.StatusNotFound, "not found")
}

func TestBulk(t *testing.T) {
	e := newEnv(t)
	e.addDevices(map[string]map[string]string{"pi-a": {"site": "lab"}, "pi-b": {"site": "lab", "rack": "r1"}, "pi-c": {"site": "home"}})
	status, body := e.do("POST", "/api/v1/commands", `{"selector":{"site":"lab"},"name":"uptime","timeout":"5s"}`)
	if status != http.StatusCreated {
		t.Fatalf("bulk send: %d %s", status, body)
	}
	st := decode[BulkResponse](t, body).Bulk
	if st.BulkID == "" || st.Total != 2 || st.ByState[hub.StateQueued] != 2 || st.Done || len(st.Commands) != 2 {
		t.Fatalf("bulk %+v", st)
	}
	devs := map[string]string{}
	for _, c := range st.Commands {
		devs[c.DeviceID] = c.ID
		if c.BulkID != st.BulkID || c.SentBy != "admin" || c.TimeoutMs != 5000 {
			t.Fatalf("bulk command %+v", c)
		}
	}
	if devs["pi-a"] == "" || devs["pi-b"] == "" {
		t.Fatalf("bulk devices %v", devs)
	}
	e.result("pi-a", &protocol.CommandResult{ID: devs["pi-a"], State: "succeeded"})
	status, body = e.do("GET", "/api/v1/bulk/"+st.BulkID, "")
	if got := decode[BulkResponse](t, body).Bulk; status != http.StatusOK || got.Done || got.ByState[hub.StateSucceeded] != 1 || got.ByState[hub.StateQueued] != 1 {
		t.Fatalf("bulk in flight: %d %s", status, body)
	}
	e.result("pi-b", &protocol.CommandResult{ID: devs["pi-b"], State: "failed", ExitCode: 3})
	status, body = e.do("GET", "/api/v1/bulk/"+st.BulkID, "")
	if got := decode[BulkResponse](t, body).Bulk; status != http.StatusOK || !got.Done || got.Total != 2 ||
		got.ByState[hub.StateSucceeded] != 1 || got.ByState[hub.StateFailed] != 1 {
		t.Fatalf("bulk done: %d %s", status, body)
	}
	status, body = e.do("GET", "/api/v1/commands?bulk="+st.BulkID, "")
	if list := decode[CommandListResponse](t, body).Commands; status != http.StatusOK || len(list) != 2 {
		t.Fatalf("list by bulk: %d %s", status, body)
	}
	status, body = e.do("POST", "/api/v1/commands", `{"selector":{"site":"mars"},"name":"uptime"}`)
	wantError(t, status, body, http.StatusNotFound, "no device matches")
	status, body = e.do("GET", "/api/v1/bulk/nope", "")
	wantError(t, status, body, http.StatusNotFound, "not found")
}

func TestTokens(t *testing.T) {
	e := newEnv(t)
	status, body := e.do("POST", "/api/v1/tokens", `{"name":"ci","role":"viewer"}`)
	if status != http.StatusCreated {
		t.Fatalf("create: %d %s", status, body)
	}
	created := decode[CreateTokenResponse](t, body)
	if created.Name != "ci" || created.Role != hub.RoleViewer || !strings.HasPrefix(created.Token, "fwa_") {
		t.Fatalf("created %+v", created)
	}
	if info, err := e.st.AuthenticateAPIToken(context.Background(), created.Token); err != nil || info.Role != hub.RoleViewer {
		t.Fatalf("new token: %+v %v", info, err)
	}
	status, body = e.do("POST", "/api/v1/tokens", `{"name":"ci","role":"admin"}`)
	wantError(t, status, body, http.StatusConflict, "ci")
	for _, b := range []string{`{"name":"x","role":"root"}`, `{"name":"x"}`, `{"name":"bad name","role":"viewer"}`} {
		status, body = e.do("POST", "/api/v1/tokens", b)
		wantError(t, status, body, http.StatusBadRequest, "")
	}

	status, body = e.do("GET", "/api/v1/tokens", "")
	list := decode[TokenListResponse](t, body).Tokens
	roles := map[string]hub.Role{}
	for _, tk := range list {
		roles[tk.Name] = tk.Role
		if tk.CreatedAt.IsZero() {
			t.Errorf("token %s without created_at", tk.Name)
		}
	}
	if status != http.StatusOK || len(list) != 2 || roles["admin"] != hub.RoleAdmin || roles["ci"] != hub.RoleViewer {
		t.Fatalf("list: %d %s", status, body)
	}
	if bytes.Contains(body, []byte("fwa_")) {
		t.Fatalf("token list leaks a token: %s", body)
	}

	status, body = e.do("DELETE", "/api/v1/tokens/ci", "")
	if status != http.StatusNoContent || len(body) != 0 {
		t.Fatalf("delete: %d %s", status, body)
	}
	status, body = e.doWith("GET", "/api/v1/devices", "", "Bearer "+created.Token, "")
	wantError(t, status, body, http.StatusUnauthorized, "invalid API token")
	status, body = e.do("DELETE", "/api/v1/tokens/ci", "")
	wantError(t, status, body, http.StatusNotFound, "not found")
	status, body = e.do("DELETE", "/api/v1/tokens/admin", "")
	wantError(t, status, body, http.StatusConflict, "last admin")
}

func TestCommandsDisabled(t *testing.T) {
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tok, _, err := st.EnsureAdminToken(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(New(Config{Store: st}))
	defer srv.Close()
	e := &env{t: t, srv: srv, st: st, token: tok}
	status, body := e.do("GET", "/api/v1/commands", "")
	wantError(t, status, body, http.StatusServiceUnavailable, "not enabled")
}
