package api

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/hub/store"
)

// clock is a hand-moved clock shared by the store and the limiter.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Add(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

const testPassword = "correct horse battery"

// authEnv is a real API over loopback with users and an injected clock.
type authEnv struct {
	*env
	clk  *clock
	auth *Authenticator
}

func newAuthEnv(t *testing.T) *authEnv {
	t.Helper()
	ctx := context.Background()
	clk := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "hub.db"),
		store.WithClock(clk.Now), store.WithPasswordParams(store.PasswordParams{Time: 1, Memory: 64, Threads: 1}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	tok, _, err := st.EnsureAdminToken(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for name, role := range map[string]hub.Role{"root": hub.RoleAdmin, "olga": hub.RoleOperator, "vic": hub.RoleViewer} {
		if err := st.CreateUser(ctx, name, role, testPassword); err != nil {
			t.Fatal(err)
		}
	}
	svc := hub.NewCommandService(st, hub.NewRegistry(hub.NewMetrics(nil)), hub.NewCommandMetrics(nil), nil)
	auth := NewAuthenticator(st, WithAuthClock(clk.Now), WithSessionLimits(time.Hour, 4*time.Hour))
	e := &env{t: t, st: st, svc: svc, token: tok, disc: &recorder{}}
	sess := &fakeSessions{OnlineFn: func(string) bool { return false }, DisconnectFn: func(string, string) {}}
	e.srv = httptest.NewServer(New(Config{Store: st, Sessions: sess, Commands: svc, Auth: auth}))
	t.Cleanup(e.srv.Close)
	return &authEnv{env: e, clk: clk, auth: auth}
}

// session is a signed-in browser: its cookie and CSRF token.
type session struct {
	cookie *http.Cookie
	csrf   string
}

// request sends a request with the given headers and returns the response
// (body read into the returned bytes).
func (a *authEnv) request(method, path, body string, hdr map[string]string, c *http.Cookie) (*http.Response, []byte) {
	a.t.Helper()
	req, err := http.NewRequest(method, a.srv.URL+path, strings.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if c != nil {
		// By hand: a cookie jar would not send a Secure cookie over http.
		req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	resp, err := a.srv.Client().Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatal(err)
	}
	return resp, b
}

func (a *authEnv) login(user, pw string) (*http.Response, []byte) {
	a.t.Helper()
	return a.request("POST", "/api/v1/login", `{"username":"`+user+`","password":"`+pw+`"}`, nil, nil)
}

func (a *authEnv) signIn(user string) session {
	a.t.Helper()
	return a.signInWith(user, testPassword)
}

func (a *authEnv) signInWith(user, pw string) session {
	a.t.Helper()
	resp, body := a.login(user, pw)
	if resp.StatusCode != http.StatusOK {
		a.t.Fatalf("login %s: %d %s", user, resp.StatusCode, body)
	}
	lr := decode[LoginResponse](a.t, body)
	for _, c := range resp.Cookies() {
		if c.Name == SessionCookie {
			return session{cookie: c, csrf: lr.CSRFToken}
		}
	}
	a.t.Fatalf("login %s: no %s cookie", user, SessionCookie)
	return session{}
}

// as sends a cookie request; state-changing ones carry the CSRF token.
func (a *authEnv) as(s session, method, path, body string) (int, []byte) {
	a.t.Helper()
	resp, b := a.request(method, path, body, map[string]string{CSRFHeader: s.csrf}, s.cookie)
	return resp.StatusCode, b
}

func TestLoginSetsStrictCookie(t *testing.T) {
	a := newAuthEnv(t)
	resp, body := a.login("olga", testPassword)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	lr := decode[LoginResponse](t, body)
	if lr.User != (UserRef{Name: "olga", Role: hub.RoleOperator}) || len(lr.CSRFToken) < 40 {
		t.Fatalf("login response %+v", lr)
	}
	cookies := resp.Cookies()
	if len(cookies) != 1 {
		t.Fatalf("cookies %v", cookies)
	}
	c := cookies[0]
	if c.Name != "fw_session" || !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/" ||
		c.MaxAge != int((4*time.Hour)/time.Second) || !strings.HasPrefix(c.Value, store.SessionPrefix) {
		t.Fatalf("cookie %+v", c)
	}
	if strings.Contains(string(body), c.Value) {
		t.Fatal("session id in the body")
	}
	status, body := a.as(session{cookie: c}, "GET", "/api/v1/me", "")
	me := decode[MeResponse](t, body)
	if status != 200 || me != (MeResponse{Name: "olga", Role: hub.RoleOperator, Kind: KindUser, CSRFToken: lr.CSRFToken}) {
		t.Fatalf("me: %d %+v", status, me)
	}
	status, body = a.do("GET", "/api/v1/me", "")
	if me := decode[MeResponse](t, body); status != 200 || me != (MeResponse{Name: "admin", Role: hub.RoleAdmin, Kind: KindToken}) {
		t.Fatalf("me with token: %d %s", status, body)
	}
}

func TestLoginWrongCredentialsSayNothing(t *testing.T) {
	a := newAuthEnv(t)
	r1, b1 := a.login("olga", "wrong password!")
	r2, b2 := a.login("nobody", testPassword)
	if r1.StatusCode != 401 || r2.StatusCode != 401 || string(b1) != string(b2) || len(r1.Cookies()) != 0 {
		t.Fatalf("wrong password: %d %s; unknown user: %d %s", r1.StatusCode, b1, r2.StatusCode, b2)
	}
	resp, _ := a.request("GET", "/api/v1/devices", "", nil, nil)
	if resp.StatusCode != 401 {
		t.Fatalf("no credentials: %d", resp.StatusCode)
	}
}

func TestCSRF(t *testing.T) {
	a := newAuthEnv(t)
	s := a.signIn("root")
	body := `{"name":"ci","role":"viewer"}`
	for _, hdr := range []map[string]string{nil, {CSRFHeader: "wrong"}, {CSRFHeader: s.csrf + "x"}} {
		resp, b := a.request("POST", "/api/v1/tokens", body, hdr, s.cookie)
		wantError(t, resp.StatusCode, b, http.StatusForbidden, CSRFHeader)
	}
	// Reads need no token.
	if status, b := a.as(session{cookie: s.cookie}, "GET", "/api/v1/tokens", ""); status != 200 {
		t.Fatalf("GET with cookie: %d %s", status, b)
	}
	if status, b := a.as(s, "POST", "/api/v1/tokens", body); status != http.StatusCreated {
		t.Fatalf("with CSRF header: %d %s", status, b)
	}
	// Bearer callers need no CSRF token.
	if status, b := a.do("POST", "/api/v1/tokens", `{"name":"ci2","role":"viewer"}`); status != http.StatusCreated {
		t.Fatalf("bearer: %d %s", status, b)
	}
	// A broken Authorization header does not fall back to the cookie.
	resp, _ := a.request("GET", "/api/v1/me", "", map[string]string{"Authorization": "Basic x"}, s.cookie)
	if resp.StatusCode != 401 {
		t.Fatalf("broken bearer with cookie: %d", resp.StatusCode)
	}
}

func TestUserRoles(t *testing.T) {
	a := newAuthEnv(t)
	if _, _, err := a.st.CreateDevice(context.Background(), "pi-1", nil); err != nil {
		t.Fatal(err)
	}
	send := `{"device":"pi-1","name":"reboot"}`
	vic, olga := a.signIn("vic"), a.signIn("olga")
	status, b := a.as(vic, "POST", "/api/v1/commands", send)
	wantError(t, status, b, http.StatusForbidden, `user "vic" has the viewer role`)
	if status, b := a.as(vic, "GET", "/api/v1/devices", ""); status != 200 {
		t.Fatalf("viewer read: %d %s", status, b)
	}
	if status, b := a.as(olga, "POST", "/api/v1/commands", send); status == http.StatusForbidden || status == http.StatusUnauthorized {
		t.Fatalf("operator send: %d %s", status, b)
	}
	status, b = a.as(olga, "GET", "/api/v1/users", "")
	wantError(t, status, b, http.StatusForbidden, "admin")
}

func TestLoginLimiter(t *testing.T) {
	a := newAuthEnv(t)
	for i := 1; i <= 10; i++ {
		if resp, b := a.login("olga", "wrong password!"); resp.StatusCode != 401 {
			t.Fatalf("failure %d: %d %s", i, resp.StatusCode, b)
		}
	}
	a.clk.Add(59 * time.Second)
	// Past the edge even the right password waits.
	resp, b := a.login("olga", testPassword)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("11th attempt: %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), b)
	}
	a.clk.Add(time.Second)
	if resp, b := a.login("olga", testPassword); resp.StatusCode != 200 {
		t.Fatalf("after the window: %d %s", resp.StatusCode, b)
	}
}

func TestLimiterWindow(t *testing.T) {
	clk := &clock{t: time.Unix(0, 0)}
	l := newLoginLimiter(2, time.Minute)
	l.now = clk.Now
	l.fail("a")
	l.fail("a")
	if wait, blocked := l.blocked("a"); !blocked || wait != time.Minute {
		t.Fatalf("at limit: %v %v", wait, blocked)
	}
	if _, blocked := l.blocked("b"); blocked {
		t.Fatal("other address blocked")
	}
	for i := range maxLimiterAddrs - 1 {
		l.fail(strings.Repeat("x", i%7) + string(rune('a'+i%26)) + time.Duration(i).String())
	}
	if _, blocked := l.blocked("new"); !blocked {
		t.Fatal("new address admitted with the table full")
	}
	clk.Add(time.Minute)
	if _, blocked := l.blocked("new"); blocked {
		t.Fatal("table not pruned after the window")
	}
}

func TestLogoutAndExpiry(t *testing.T) {
	a := newAuthEnv(t)
	s := a.signIn("vic")
	resp, _ := a.request("POST", "/api/v1/logout", "", map[string]string{CSRFHeader: s.csrf}, s.cookie)
	if resp.StatusCode != http.StatusNoContent || len(resp.Cookies()) != 1 || resp.Cookies()[0].MaxAge != -1 {
		t.Fatalf("logout: %d %v", resp.StatusCode, resp.Cookies())
	}
	if status, _ := a.as(s, "GET", "/api/v1/me", ""); status != 401 {
		t.Fatalf("after logout: %d", status)
	}
	s = a.signIn("vic")
	a.clk.Add(time.Hour)
	resp, b := a.request("GET", "/api/v1/me", "", nil, s.cookie)
	wantError(t, resp.StatusCode, b, 401, "expired")
	if c := resp.Cookies(); len(c) != 1 || c[0].MaxAge != -1 {
		t.Fatalf("stale cookie not cleared: %v", c)
	}
}

func TestUserManagement(t *testing.T) {
	a := newAuthEnv(t)
	root := a.signIn("root")
	status, b := a.as(root, "POST", "/api/v1/users", `{"name":"newbie","role":"viewer","password":"short"}`)
	wantError(t, status, b, 400, "at least 12")
	if status, b := a.as(root, "POST", "/api/v1/users", `{"name":"newbie","role":"viewer","password":"`+testPassword+`"}`); status != 201 {
		t.Fatalf("create: %d %s", status, b)
	}
	status, b = a.as(root, "GET", "/api/v1/users", "")
	if list := decode[UserListResponse](t, b); status != 200 || len(list.Users) != 4 || list.Users[0].Name != "newbie" {
		t.Fatalf("list: %d %s", status, b)
	}
	newbie := a.signIn("newbie")
	// Users change their own password with the current one, not others'.
	status, b = a.as(newbie, "POST", "/api/v1/users/vic/password", `{"password":"stolen account!"}`)
	wantError(t, status, b, 403, "only admins")
	status, b = a.as(newbie, "POST", "/api/v1/users/newbie/password", `{"password":"brand new secret","current_password":"guess guess guess"}`)
	wantError(t, status, b, 403, "current_password")
	status, b = a.as(newbie, "POST", "/api/v1/users/newbie/password", `{"password":"brand new secret","current_password":"`+testPassword+`"}`)
	if status != 200 {
		t.Fatalf("own password: %d %s", status, b)
	}
	if status, _ := a.as(newbie, "GET", "/api/v1/me", ""); status != 401 {
		t.Fatalf("old session after password change: %d", status)
	}
	if resp, _ := a.login("newbie", "brand new secret"); resp.StatusCode != 200 {
		t.Fatalf("login with new password: %d", resp.StatusCode)
	}
	if status, b := a.as(root, "POST", "/api/v1/users/newbie/role", `{"role":"operator"}`); status != 204 {
		t.Fatalf("role: %d %s", status, b)
	}
	newbie = a.signInWith("newbie", "brand new secret")
	if status, b := a.as(newbie, "GET", "/api/v1/me", ""); status != 200 || decode[MeResponse](t, b).Role != hub.RoleOperator {
		t.Fatalf("me after role change: %d %s", status, b)
	}
	if status, b := a.as(root, "DELETE", "/api/v1/users/newbie", ""); status != 204 {
		t.Fatalf("delete: %d %s", status, b)
	}
	if status, _ := a.as(newbie, "GET", "/api/v1/me", ""); status != 401 {
		t.Fatalf("deleted user's session: %d", status)
	}
	status, b = a.as(root, "DELETE", "/api/v1/users/root", "")
	wantError(t, status, b, 409, "last admin")
	status, b = a.as(root, "POST", "/api/v1/users/root/role", `{"role":"viewer"}`)
	wantError(t, status, b, 409, "last admin")
	status, b = a.as(root, "DELETE", "/api/v1/users/ghost", "")
	wantError(t, status, b, 404, "not found")
}

func TestFromRequestForWebSocket(t *testing.T) {
	a := newAuthEnv(t)
	s := a.signIn("vic")
	r := httptest.NewRequest("GET", "/live", nil)
	r.AddCookie(&http.Cookie{Name: SessionCookie, Value: s.cookie.Value})
	p, err := a.auth.FromRequest(r)
	if err != nil || p.Name != "vic" || p.Role != hub.RoleViewer || p.Kind != KindUser {
		t.Fatalf("cookie: %+v, %v", p, err)
	}
	r = httptest.NewRequest("GET", "/live", nil)
	r.Header.Set("Authorization", "Bearer "+a.token)
	if p, err := a.auth.FromRequest(r); err != nil || p.Kind != KindToken || p.Role != hub.RoleAdmin {
		t.Fatalf("bearer: %+v, %v", p, err)
	}
	if _, err := a.auth.FromRequest(httptest.NewRequest("GET", "/live", nil)); err != ErrNoCredentials {
		t.Fatalf("none: %v", err)
	}
}
