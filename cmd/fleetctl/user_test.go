package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
)

func TestUserCommands(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()

	out := h.ok("user", "add", "alice", "--role", "operator")
	fields := strings.Fields(out)
	pw := fields[len(fields)-1]
	if !strings.Contains(out, "Added user alice with role operator") || !strings.Contains(out, "shown only this once") {
		t.Fatalf("add output:\n%s", out)
	}
	if u, err := h.st.CheckPassword(ctx, "alice", pw); err != nil || u.Role != "operator" {
		t.Fatalf("printed password does not sign in: %v", err)
	}

	code, out, _ := h.runIn("a chosen password\n", "user", "add", "bob", "--role", "viewer", "--password-stdin")
	if code != 0 || strings.Contains(out, "a chosen password") || strings.Contains(out, "Password") {
		t.Fatalf("add --password-stdin: %d\n%s", code, out)
	}
	if _, err := h.st.CheckPassword(ctx, "bob", "a chosen password"); err != nil {
		t.Fatal(err)
	}
	code, _, errs := h.runIn("short\n", "user", "add", "carol", "--role", "viewer", "--password-stdin")
	if code != 1 || !strings.Contains(errs, "at least 12") {
		t.Fatalf("short password: %d %s", code, errs)
	}

	out = h.ok("user", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || strings.Fields(lines[1])[0] != "alice" || strings.Fields(lines[2])[1] != "viewer" {
		t.Fatalf("list:\n%s", out)
	}
	var listed struct {
		Users []userInfo `json:"users"`
	}
	if err := json.Unmarshal([]byte(h.ok("user", "list", "-o", "json")), &listed); err != nil || len(listed.Users) != 2 {
		t.Fatalf("list json: %v %+v", err, listed)
	}

	h.ok("user", "role", "bob", "admin")
	if u, _ := h.st.GetUser(ctx, "bob"); u.Role != "admin" {
		t.Fatalf("role: %+v", u)
	}
	if code, _, _ := h.run("user", "passwd", "bob"); code != exitUsage {
		t.Fatalf("passwd without --password-stdin: %d", code)
	}
	if code, _, errs := h.runIn("the new password\n", "user", "passwd", "bob", "--password-stdin"); code != 0 {
		t.Fatalf("passwd: %d %s", code, errs)
	}
	if _, err := h.st.CheckPassword(ctx, "bob", "the new password"); err != nil {
		t.Fatal(err)
	}

	if code, _, errs := h.run("user", "delete", "bob"); code != 1 || !strings.Contains(errs, "not deleted") {
		t.Fatalf("delete unconfirmed: %d %s", code, errs)
	}
	h.ok("user", "delete", "alice", "--yes")
	code, _, errs = h.run("user", "delete", "bob", "--yes")
	if code != 1 || !strings.Contains(errs, "last admin") {
		t.Fatalf("delete last admin: %d %s", code, errs)
	}
	if code, _, errs := h.run("user", "role", "bob", "root"); code != 1 || !strings.Contains(errs, "role") {
		t.Fatalf("bad role: %d %s", code, errs)
	}
}
