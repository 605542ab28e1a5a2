package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestEnrollmentAPI(t *testing.T) {
	e := newEnv(t)
	status, body := e.do("POST", "/api/v1/enrollments", `{"labels":{"site":"lab"},"uses":2,"ttl":"30m"}`)
	if status != http.StatusCreated {
		t.Fatalf("create: %d %s", status, body)
	}
	cr := decode[CreateEnrollmentResponse](t, body)
	want := "sudo fleetagent enroll --hub https://hub.example:8443 --code " + cr.Code + " --ca-fingerprint " + strings.Repeat("ab", 32)
	if cr.Command != want || cr.Enrollment.State != "active" || cr.Enrollment.UsesLeft != 2 || cr.Enrollment.CreatedBy != "token:admin" {
		t.Fatalf("created %+v", cr)
	}

	// The device side needs no credentials.
	enroll := func(code, id string) (int, []byte) {
		return e.doWith("POST", "/api/v1/enroll", fmt.Sprintf(`{"code":%q,"device_id":%q,"agent_version":"1.2.3"}`, code, id), "", "application/json")
	}
	status, body = enroll(cr.Code, "pi-enrolled")
	if status != http.StatusCreated {
		t.Fatalf("enroll: %d %s", status, body)
	}
	er := decode[EnrollResponse](t, body)
	if er.DeviceID != "pi-enrolled" || !strings.HasPrefix(er.Token, "fwd_") || er.HubURL != "wss://hub.example:8443/v1/device" || er.Labels["site"] != "lab" {
		t.Fatalf("enrolled %+v", er)
	}
	if d, err := e.st.AuthenticateDevice(context.Background(), er.Token); err != nil || d.ID != "pi-enrolled" {
		t.Fatalf("token does not authenticate: %v", err)
	}
	status, body = enroll(cr.Code, "pi-enrolled")
	wantError(t, status, body, http.StatusConflict, "--id")
	if status, body = enroll(cr.Code, "pi-second"); status != http.StatusCreated {
		t.Fatalf("second use: %d %s", status, body)
	}
	status, body = enroll(cr.Code, "pi-third")
	wantError(t, status, body, http.StatusForbidden, "used up")
	status, body = enroll("fwe_AAAAAAAAAAAAAAAAAAAAAAAAAA", "pi-x")
	wantError(t, status, body, http.StatusUnauthorized, "not recognised")

	// Revoked codes are refused with their own message.
	_, body = e.do("POST", "/api/v1/enrollments", `{}`)
	c2 := decode[CreateEnrollmentResponse](t, body)
	if c2.Enrollment.Uses != 1 {
		t.Errorf("default uses %d, want 1", c2.Enrollment.Uses)
	}
	if status, body := e.do("POST", "/api/v1/enrollments/"+c2.Enrollment.ID+"/revoke", ""); status != http.StatusNoContent {
		t.Fatalf("revoke: %d %s", status, body)
	}
	status, body = enroll(c2.Code, "pi-y")
	wantError(t, status, body, http.StatusForbidden, "revoked")
	status, body = e.do("POST", "/api/v1/enrollments/e_nope/revoke", "")
	wantError(t, status, body, http.StatusNotFound, "")

	// Listing shows states, never codes.
	status, body = e.do("GET", "/api/v1/enrollments", "")
	if status != http.StatusOK || strings.Contains(string(body), cr.Code) || strings.Contains(string(body), "fwe_") {
		t.Fatalf("list: %d %s", status, body)
	}
	states := map[string]string{}
	for _, v := range decode[EnrollmentListResponse](t, body).Enrollments {
		states[v.ID] = v.State
	}
	if states[cr.Enrollment.ID] != "used_up" || states[c2.Enrollment.ID] != "revoked" {
		t.Errorf("states %v", states)
	}

	// Every step is in the audit log.
	status, body = e.do("GET", "/api/v1/audit?limit=50", "")
	if status != http.StatusOK {
		t.Fatalf("audit: %d %s", status, body)
	}
	var got []string
	for _, a := range decode[AuditListResponse](t, body).Entries {
		got = append(got, a.Action+":"+a.Subject)
	}
	for _, w := range []string{"enrollment.create:" + cr.Enrollment.ID, "device.enroll:pi-enrolled", "device.enroll:pi-second", "enrollment.revoke:" + c2.Enrollment.ID} {
		if !strings.Contains(strings.Join(got, " "), w) {
			t.Errorf("audit log %v lacks %s", got, w)
		}
	}

	// Bad requests name what is wrong; operators may not create codes.
	for _, tc := range []struct{ body, want string }{
		{`{"uses":-1}`, "uses"}, {`{"uses":10001}`, "uses"}, {`{"ttl":"soon"}`, "ttl"}, {`{"ttl":"1s"}`, "ttl"}, {`{"ttl":"800h"}`, "ttl"},
	} {
		status, body := e.do("POST", "/api/v1/enrollments", tc.body)
		wantError(t, status, body, http.StatusBadRequest, tc.want)
	}
}

// TestEnrollAttemptsLimited: wrong codes count against the address like
// failed sign-ins; past the limit even a good code waits.
func TestEnrollAttemptsLimited(t *testing.T) {
	e := newEnv(t)
	_, body := e.do("POST", "/api/v1/enrollments", `{"uses":5}`)
	good := decode[CreateEnrollmentResponse](t, body).Code
	for i := range 20 {
		status, body := e.doWith("POST", "/api/v1/enroll", fmt.Sprintf(`{"code":"fwe_%026d","device_id":"x%d"}`, i, i), "", "application/json")
		if status != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d %s", i, status, body)
		}
	}
	status, body := e.doWith("POST", "/api/v1/enroll", fmt.Sprintf(`{"code":%q,"device_id":"pi-late"}`, good), "", "application/json")
	wantError(t, status, body, http.StatusTooManyRequests, "device credentials")
	// Sign-in has its own budget: the operators are not locked out.
	if status, body := e.doWith("POST", "/api/v1/login", `{"username":"nobody","password":"wrong-password-x"}`, "", "application/json"); status != http.StatusUnauthorized {
		t.Errorf("sign-in after device failures: %d %s, want 401 (not 429)", status, body)
	}
}

// TestAgentBehind: the device list names the newest agent version and
// marks older agents; one device's page says whether it is behind.
func TestAgentBehind(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for id, v := range map[string]string{"pi-old": "v0.9.0", "pi-new": "v1.0.0", "pi-dev": "dev"} {
		if _, _, err := e.st.CreateDevice(ctx, id, nil); err != nil {
			t.Fatal(err)
		}
		if err := e.st.TouchDevice(ctx, id, time.Now(), v); err != nil {
			t.Fatal(err)
		}
	}
	_, body := e.do("GET", "/api/v1/devices", "")
	list := decode[DeviceListResponse](t, body)
	if list.NewestAgentVersion != "v1.0.0" {
		t.Errorf("newest %q", list.NewestAgentVersion)
	}
	behind := map[string]bool{}
	for _, d := range list.Devices {
		behind[d.ID] = d.AgentBehind
	}
	if !behind["pi-old"] || behind["pi-new"] || behind["pi-dev"] {
		t.Errorf("behind %v", behind)
	}
	_, body = e.do("GET", "/api/v1/devices/pi-old", "")
	if d := decode[DeviceResponse](t, body); !d.Device.AgentBehind {
		t.Errorf("pi-old's page: %+v", d.Device)
	}
	_, body = e.do("GET", "/api/v1/devices/pi-new", "")
	if d := decode[DeviceResponse](t, body); d.Device.AgentBehind {
		t.Errorf("pi-new's page: %+v", d.Device)
	}
}

// TestEnrollRefusesBadAgentVersion: what a device says about itself goes
// into the audit log, so it must be short and printable.
func TestEnrollRefusesBadAgentVersion(t *testing.T) {
	e := newEnv(t)
	_, body := e.do("POST", "/api/v1/enrollments", `{"uses":5}`)
	code := decode[CreateEnrollmentResponse](t, body).Code
	for _, v := range []string{"1.0\x1b[2J", "1.0\nfake", strings.Repeat("v", 129)} {
		b, _ := json.Marshal(map[string]string{"code": code, "device_id": "pi-v", "agent_version": v})
		status, body := e.doWith("POST", "/api/v1/enroll", string(b), "", "application/json")
		wantError(t, status, body, http.StatusBadRequest, "agent_version")
	}
	b, _ := json.Marshal(map[string]string{"code": code, "device_id": "pi-v", "agent_version": strings.Repeat("v", 128)})
	if status, body := e.doWith("POST", "/api/v1/enroll", string(b), "", "application/json"); status != http.StatusCreated {
		t.Errorf("128-character version: %d %s", status, body)
	}
}
