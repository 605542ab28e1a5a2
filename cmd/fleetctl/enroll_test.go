package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/hub"
)

// enrollDevice is a device trading code for its token over the harness's
// hub API, without credentials, as fleetagent enroll does. It returns the
// HTTP status and body.
func (h *harness) enrollDevice(code, id, agentVersion string) (int, string) {
	h.t.Helper()
	b, _ := json.Marshal(map[string]string{"code": code, "device_id": id, "agent_version": agentVersion})
	resp, err := h.srv.Client().Post(h.srv.URL+"/api/v1/enroll", "application/json", bytes.NewReader(b))
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// onlyLine returns the one line of out that, trimmed, starts with prefix.
func onlyLine(t *testing.T, out, prefix string) string {
	t.Helper()
	var found []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.TrimSpace(line); strings.HasPrefix(f, prefix) {
			found = append(found, f)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one line starting with %q, found %d:\n%s", prefix, len(found), out)
	}
	return found[0]
}

// enrollRows returns enroll list's data rows by code id, fields joined by
// one space.
func enrollRows(t *testing.T, out string) map[string]string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if fields(lines[0]) != "ID STATE USES LEFT LABELS EXPIRES CREATED BY" {
		t.Fatalf("list header:\n%s", out)
	}
	rows := map[string]string{}
	for _, l := range lines[1:] {
		rows[strings.Fields(l)[0]] = fields(l)
	}
	return rows
}

func TestEnrollCreateAndUse(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()

	out := h.ok("enroll", "create", "--label", "site=home", "-l", "room=kitchen", "--ttl", "2h")
	code := onlyLine(t, out, "fwe_")
	id := strings.TrimSuffix(strings.TrimPrefix(onlyLine(t, out, "Created enrollment code "), "Created enrollment code "), ".")
	codes, err := h.st.ListEnrollmentCodes(ctx)
	if err != nil || len(codes) != 1 || codes[0].ID != id {
		t.Fatalf("stored codes %+v %v (printed id %q)", codes, err, id)
	}
	c := codes[0]
	if c.Uses != 1 || c.Labels["site"] != "home" || c.Labels["room"] != "kitchen" || c.CreatedBy != "token:admin" ||
		c.ExpiresAt.Sub(c.CreatedAt) != 2*time.Hour {
		t.Fatalf("stored code %+v", c)
	}
	wantCmd := "sudo fleetagent enroll --hub https://hub.example:8443 --code " + code + " --ca-fingerprint " + strings.Repeat("0f", 32)
	for _, want := range []string{
		"shown only this once",
		"Uses:     1 device\n",
		"Expires:  " + c.ExpiresAt.Local().Format(time.RFC3339) + " (in 2h)\n",
		"Labels:   room=kitchen,site=home\n",
		"On the device, run",
		"\n    " + wantCmd + "\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("create output lacks %q:\n%s", want, out)
		}
	}

	// The printed code enrolls a device, once.
	if status, body := h.enrollDevice(code, "pi-kitchen", "0.4.0"); status != http.StatusCreated {
		t.Fatalf("enroll with the printed code: %d %s", status, body)
	}
	if d, err := h.st.GetDevice(ctx, "pi-kitchen"); err != nil || d.Labels["site"] != "home" || d.Labels["room"] != "kitchen" {
		t.Fatalf("enrolled device %+v %v", d, err)
	}
	if status, body := h.enrollDevice(code, "pi-other", "0.4.0"); status != http.StatusForbidden || !strings.Contains(body, "used up") {
		t.Fatalf("second use of a 1-use code: %d %s", status, body)
	}

	out = h.ok("enroll", "create", "--uses", "5")
	id5 := strings.TrimSuffix(strings.TrimPrefix(onlyLine(t, out, "Created enrollment code "), "Created enrollment code "), ".")
	if !strings.Contains(out, "Uses:     5 devices\n") || !strings.Contains(out, "(in 1h)") || !strings.Contains(out, "Labels:   -\n") {
		t.Fatalf("create --uses 5 output:\n%s", out)
	}

	rows := enrollRows(t, h.ok("enroll", "list"))
	if len(rows) != 2 || rows[id] != id+" used_up 0/1 room=kitchen,site=home in 2h token:admin" ||
		rows[id5] != id5+" active 5/5 - in 1h token:admin" {
		t.Fatalf("list rows: %q", rows)
	}
}

func TestEnrollRevoke(t *testing.T) {
	h := newHarness(t)
	id, enrollCode := h.createCode("--uses", "3")

	code, _, errs := h.runIn("n\n", "enroll", "revoke", id)
	if code != 1 || !strings.Contains(errs, "Revoke enrollment code "+id+"?") || !strings.Contains(errs, "not revoked (confirm with y, or pass --yes)") {
		t.Fatalf("declined revoke: exit %d, stderr %q", code, errs)
	}
	if rows := enrollRows(t, h.ok("enroll", "list")); !strings.HasPrefix(rows[id], id+" active 3/3 ") {
		t.Fatalf("code after a declined revoke: %q", rows[id])
	}
	if code, out, errs := h.runIn("y\n", "enroll", "revoke", id); code != 0 || !strings.Contains(out, "Revoked enrollment code "+id+".") {
		t.Fatalf("confirmed revoke: exit %d\nstdout %s\nstderr %s", code, out, errs)
	}
	if rows := enrollRows(t, h.ok("enroll", "list")); !strings.HasPrefix(rows[id], id+" revoked 3/3 ") {
		t.Fatalf("code after revoke: %q", rows[id])
	}
	if status, body := h.enrollDevice(enrollCode, "pi-late", ""); status != http.StatusForbidden || !strings.Contains(body, "revoked") {
		t.Fatalf("enroll with a revoked code: %d %s", status, body)
	}
	// Revoking twice is fine; --yes skips the question.
	if out := h.ok("enroll", "revoke", id, "--yes"); !strings.Contains(out, "Revoked enrollment code "+id) {
		t.Fatalf("revoke --yes: %s", out)
	}
	if code, _, errs := h.run("enroll", "revoke", "e_0000000000", "--yes"); code != 1 || !strings.Contains(errs, "not found (404)") {
		t.Fatalf("revoke unknown: exit %d %q", code, errs)
	}
}

func TestAuditCommand(t *testing.T) {
	h := newHarness(t)
	id, enrollCode := h.createCode("-l", "site=lab")
	// Audit details come partly from devices: control characters in them
	// must not reach the operator's terminal raw (the hub refuses them in
	// agent versions; the store below is written directly to get one in).
	if _, _, err := h.st.Enroll(context.Background(), enrollCode, "pi-lab",
		map[string]string{"agent_version": "1.0\x1b[2J\nfake row", "remote": "127.0.0.1"}); err != nil {
		t.Fatalf("enroll: %v", err)
	}
	h.ok("enroll", "revoke", id, "--yes")

	h.now = time.Now().Add(90 * time.Second)
	out := h.ok("audit")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || fields(lines[0]) != "AT ACTOR ACTION SUBJECT DETAIL" {
		t.Fatalf("audit table:\n%s", out)
	}
	if strings.Contains(out, "\x1b") || !strings.Contains(out, `agent_version=1.0\x1b[2J\nfake row`) {
		t.Fatalf("device-supplied detail not escaped:\n%q", out)
	}
	// Newest first: revoke, enroll, create.
	want := []struct{ actor, action, subject, detail string }{
		{"token:admin", "enrollment.revoke", id, "-"},
		{"enrollment:" + id, "device.enroll", "pi-lab", `agent_version=1.0\x1b[2J\nfake row,remote=127.0.0.1`},
		{"token:admin", "enrollment.create", id, `expires_at=`},
	}
	for i, w := range want {
		f := strings.Fields(lines[i+1])
		// f[0] is the time, then "(1m ago)".
		at, err := time.Parse(time.RFC3339, f[0])
		if err != nil || at.After(time.Now()) || time.Since(at) > time.Minute || f[1]+" "+f[2] != "(1m ago)" {
			t.Errorf("row %d time %q %q: %v", i, f[0], f[1]+" "+f[2], err)
		}
		row := strings.Join(f[3:], " ")
		if !strings.HasPrefix(row, w.actor+" "+w.action+" "+w.subject+" "+w.detail) {
			t.Errorf("row %d: %q\nwant prefix %q", i, row, w.actor+" "+w.action+" "+w.subject+" "+w.detail)
		}
	}
	if !strings.Contains(lines[3], `labels={"site":"lab"},uses=1`) {
		t.Errorf("create row detail: %q", lines[3])
	}

	var resp struct {
		Entries []struct {
			ID     int64             `json:"id"`
			Action string            `json:"action"`
			Detail map[string]string `json:"detail"`
		} `json:"entries"`
	}
	decodeJSON(t, h.ok("audit", "-o", "json"), &resp)
	if len(resp.Entries) != 3 || resp.Entries[1].Action != "device.enroll" || resp.Entries[1].Detail["agent_version"] != "1.0\x1b[2J\nfake row" {
		t.Fatalf("audit json %+v", resp)
	}

	// Paging: a full page says how to see older entries.
	code, out, errs := h.run("audit", "--limit", "1")
	if code != 0 || len(strings.Split(strings.TrimSpace(out), "\n")) != 2 || !strings.Contains(out, "enrollment.revoke") {
		t.Fatalf("--limit 1: exit %d\n%s", code, out)
	}
	next := "fleetctl audit --before " + strconv.FormatInt(resp.Entries[0].ID, 10)
	if !strings.Contains(errs, next) {
		t.Fatalf("--limit 1 stderr %q, want %q", errs, next)
	}
	code, out, errs = h.run("audit", "--before", strconv.FormatInt(resp.Entries[0].ID, 10))
	if code != 0 || strings.Contains(out, "enrollment.revoke") || !strings.Contains(out, "device.enroll") || errs != "" {
		t.Fatalf("--before: exit %d\n%s\nstderr %q", code, out, errs)
	}
	decodeJSON(t, h.ok("audit", "--before", strconv.FormatInt(resp.Entries[1].ID, 10), "--limit", "5", "-o", "json"), &resp)
	if len(resp.Entries) != 1 || resp.Entries[0].Action != "enrollment.create" {
		t.Fatalf("--before --limit json %+v", resp)
	}
}

func TestEnrollJSONOutput(t *testing.T) {
	h := newHarness(t)
	var created struct {
		Enrollment struct {
			ID       string            `json:"id"`
			State    string            `json:"state"`
			Uses     int               `json:"uses"`
			UsesLeft int               `json:"uses_left"`
			Labels   map[string]string `json:"labels"`
		} `json:"enrollment"`
		Code    string `json:"code"`
		Command string `json:"command"`
	}
	decodeJSON(t, h.ok("enroll", "create", "-l", "site=lab", "--uses", "2", "--ttl", "30m", "-o", "json"), &created)
	e := created.Enrollment
	if e.State != "active" || e.Uses != 2 || e.UsesLeft != 2 || e.Labels["site"] != "lab" || !strings.HasPrefix(created.Code, "fwe_") ||
		!strings.Contains(created.Command, "--code "+created.Code) {
		t.Fatalf("create json %+v", created)
	}
	var list struct {
		Enrollments []struct {
			ID    string `json:"id"`
			State string `json:"state"`
		} `json:"enrollments"`
	}
	decodeJSON(t, h.ok("enroll", "list", "-o", "json"), &list)
	if len(list.Enrollments) != 1 || list.Enrollments[0].ID != e.ID || list.Enrollments[0].State != "active" {
		t.Fatalf("list json %+v", list)
	}
	var revoked map[string]string
	decodeJSON(t, h.ok("enroll", "revoke", e.ID, "--yes", "-o", "json"), &revoked)
	if revoked["revoked"] != e.ID {
		t.Fatalf("revoke json %v", revoked)
	}
	decodeJSON(t, h.ok("enroll", "list", "-o", "json"), &list)
	if list.Enrollments[0].State != "revoked" {
		t.Fatalf("list json after revoke %+v", list)
	}
}

func TestEnrollErrors(t *testing.T) {
	h := newHarness(t)
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"enroll", "create", "--uses", "0"}, 2, "--uses 0: want at least 1"},
		{[]string{"enroll", "create", "--uses", "-3"}, 2, "want at least 1"},
		{[]string{"enroll", "create", "--uses", "many"}, 2, "invalid argument"},
		{[]string{"enroll", "create", "--label", "novalue"}, 2, `--label "novalue": want key=value`},
		{[]string{"enroll", "create", "-l", "a=1", "-l", "a=2"}, 2, "--label a given twice"},
		{[]string{"enroll", "create", "--ttl", "soon"}, 2, "invalid argument"},
		{[]string{"enroll", "create", "--ttl", "0s"}, 2, "want a positive duration"},
		{[]string{"enroll", "create", "--ttl", "-1h"}, 2, "want a positive duration"},
		{[]string{"enroll", "create", "site=lab"}, 2, "want no arguments"},
		{[]string{"enroll", "list", "extra"}, 2, "want no arguments"},
		{[]string{"enroll", "revoke"}, 2, "want an enrollment code ID"},
		{[]string{"enroll", "frobnicate"}, 2, "unknown command"},
		{[]string{"audit", "--limit", "0"}, 2, "--limit 0: want 1..1000"},
		{[]string{"audit", "--limit", "1001"}, 2, "want 1..1000"},
		{[]string{"audit", "--before", "0"}, 2, "--before 0"},
		{[]string{"audit", "--before", "x"}, 2, "invalid argument"},
		{[]string{"audit", "everything"}, 2, "want no arguments"},
		// The hub has the last word on ranges and labels.
		{[]string{"enroll", "create", "--ttl", "10s"}, 1, "(400)"},
		{[]string{"enroll", "create", "--uses", "100000"}, 1, "(400)"},
		{[]string{"enroll", "create", "-l", "device=x"}, 1, "reserved (400)"},
	}
	for _, c := range cases {
		code, out, errs := h.run(c.args...)
		if code != c.code || !strings.Contains(errs, c.want) || !strings.HasPrefix(errs, "fleetctl: ") {
			t.Errorf("%v: exit %d (want %d)\nstdout %s\nstderr %q (want %q)", c.args, code, c.code, out, errs, c.want)
		}
	}
	if codes, _ := h.st.ListEnrollmentCodes(context.Background()); len(codes) != 0 {
		t.Fatalf("failed commands created codes: %+v", codes)
	}
}

func TestEnrollViewerRefused(t *testing.T) {
	h := newHarness(t)
	id, _ := h.createCode()
	for _, role := range []hub.Role{hub.RoleViewer, hub.RoleOperator} {
		h.env["FLEETCTL_TOKEN"] = h.tokenFor("t-"+string(role), role)
		for _, args := range [][]string{
			{"enroll", "create"}, {"enroll", "list"}, {"enroll", "revoke", id, "--yes"}, {"audit"},
		} {
			code, out, errs := h.run(args...)
			if code != 1 || !strings.Contains(errs, `needs the admin role; API token "t-`+string(role)+`" has the `+string(role)+` role (403)`) || out != "" {
				t.Errorf("%v as %s: exit %d\nstdout %s\nstderr %q", args, role, code, out, errs)
			}
		}
	}
	codes, err := h.st.ListEnrollmentCodes(context.Background())
	if err != nil || len(codes) != 1 || codes[0].RevokedAt != nil {
		t.Fatalf("refused commands changed the codes: %+v %v", codes, err)
	}
}

func TestEnrollHelp(t *testing.T) {
	h := newHarness(t)
	checks := []struct {
		args []string
		want []string
	}{
		{[]string{"--help"}, []string{"enroll ", "audit "}},
		{[]string{"enroll"}, []string{"create ", "list ", "revoke "}},
		{[]string{"enroll", "create", "--help"}, []string{"--label", "--uses", "--ttl", "Examples:"}},
		{[]string{"audit", "--help"}, []string{"--limit", "--before"}},
	}
	for _, c := range checks {
		out := h.ok(c.args...)
		for _, want := range c.want {
			if !strings.Contains(out, want) {
				t.Errorf("fleetctl %v lacks %q:\n%s", c.args, want, out)
			}
		}
	}
}

func TestRelTimeEither(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		d    time.Duration
		want string
	}{
		{-5 * time.Minute, "5m ago"},
		{0, "0s ago"},
		{30 * time.Second, "in 30s"},
		{59 * time.Minute, "in 59m"},
		{2 * time.Hour, "in 2h"},
		{72 * time.Hour, "in 3d"},
	}
	for _, c := range cases {
		if got := relTimeEither(now.Add(c.d), now); got != c.want {
			t.Errorf("relTimeEither(now%+v) = %q, want %q", c.d, got, c.want)
		}
	}
	if got := relTimeEither(time.Time{}, now); got != "never" {
		t.Errorf("zero time: %q", got)
	}
}

// createCode runs `fleetctl enroll create ARGS -o json` and returns the
// new code's id and the code.
func (h *harness) createCode(args ...string) (id, code string) {
	h.t.Helper()
	var created struct {
		Enrollment struct {
			ID string `json:"id"`
		} `json:"enrollment"`
		Code string `json:"code"`
	}
	decodeJSON(h.t, h.ok(append(append([]string{"enroll", "create"}, args...), "-o", "json")...), &created)
	return created.Enrollment.ID, created.Code
}
