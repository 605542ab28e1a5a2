package store

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/hub"
)

// cheap keeps argon2id fast under -race; the parameters still round-trip
// through the encoded hash.
var cheap = PasswordParams{Time: 1, Memory: 64, Threads: 1}

// fakeClock is a hand-moved clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *fakeClock) Add(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

func openUsers(t *testing.T) (*Store, *fakeClock) {
	t.Helper()
	clk := &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "hub.db"), WithClock(clk.Now), WithPasswordParams(cheap))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, clk
}

const pw = "correct horse battery"

func TestPasswordRoundTrip(t *testing.T) {
	s, _ := openUsers(t)
	ctx := context.Background()
	if err := s.CreateUser(ctx, "alice", hub.RoleOperator, pw); err != nil {
		t.Fatal(err)
	}
	u, err := s.CheckPassword(ctx, "alice", pw)
	if err != nil || u.Name != "alice" || u.Role != hub.RoleOperator {
		t.Fatalf("CheckPassword = %+v, %v", u, err)
	}
	if _, err := s.CheckPassword(ctx, "alice", pw+"x"); !errors.Is(err, hub.ErrUnauthorized) {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := s.CheckPassword(ctx, "bob", pw); !errors.Is(err, hub.ErrUnauthorized) {
		t.Fatalf("unknown user: %v", err)
	}
	// The stored hash carries its parameters, so a later default change
	// still verifies old hashes.
	_, hash, _ := s.userWithHash(ctx, "alice")
	if !strings.HasPrefix(hash, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("hash %q", hash)
	}
	if err := s.SetPassword(ctx, "alice", "another long password"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CheckPassword(ctx, "alice", pw); !errors.Is(err, hub.ErrUnauthorized) {
		t.Fatalf("old password after change: %v", err)
	}
	if _, err := s.CheckPassword(ctx, "alice", "another long password"); err != nil {
		t.Fatal(err)
	}
}

func TestDefaultParamsVerify(t *testing.T) {
	h := newHasher(DefaultPasswordParams())
	enc, err := h.hash(context.Background(), pw)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := h.verify(context.Background(), enc, pw); !ok || err != nil {
		t.Fatalf("verify = %v, %v", ok, err)
	}
	if !strings.Contains(enc, "m=32768,t=3,p=1") {
		t.Fatalf("encoded %q", enc)
	}
}

func TestCreateUserLimits(t *testing.T) {
	s, _ := openUsers(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name, pw string
		role     hub.Role
		want     error
	}{
		{"a", strings.Repeat("x", MinPasswordLen-1), hub.RoleViewer, hub.ErrInvalidInput},
		{"b", strings.Repeat("x", MinPasswordLen), hub.RoleViewer, nil},
		{"c", strings.Repeat("é", MinPasswordLen), hub.RoleViewer, nil}, // characters, not bytes
		{"d", strings.Repeat("x", MaxPasswordLen), hub.RoleViewer, nil},
		{"e", strings.Repeat("x", MaxPasswordLen+1), hub.RoleViewer, hub.ErrInvalidInput},
		{strings.Repeat("n", 64), pw, hub.RoleViewer, nil},
		{strings.Repeat("m", 65), pw, hub.RoleViewer, hub.ErrInvalidInput},
		{"bad name", pw, hub.RoleViewer, hub.ErrInvalidInput},
		{"f", pw, "root", hub.ErrInvalidInput},
		{"b", pw, hub.RoleAdmin, hub.ErrConflict},
	} {
		if err := s.CreateUser(ctx, tc.name, tc.role, tc.pw); !errors.Is(err, tc.want) && (err != nil || tc.want != nil) {
			t.Errorf("CreateUser(%.10q, %s, %d bytes) = %v, want %v", tc.name, tc.role, len(tc.pw), err, tc.want)
		}
	}
	users, err := s.ListUsers(ctx)
	if err != nil || len(users) != 4 {
		t.Fatalf("ListUsers = %d, %v", len(users), err)
	}
}

func TestLastAdminIsKept(t *testing.T) {
	s, _ := openUsers(t)
	ctx := context.Background()
	if created, err := s.EnsureAdminUser(ctx, pw); !created || err != nil {
		t.Fatalf("EnsureAdminUser = %v, %v", created, err)
	}
	if created, err := s.EnsureAdminUser(ctx, pw); created || err != nil {
		t.Fatalf("second EnsureAdminUser = %v, %v", created, err)
	}
	if err := s.DeleteUser(ctx, "admin"); !errors.Is(err, hub.ErrConflict) {
		t.Fatalf("delete last admin: %v", err)
	}
	if err := s.SetRole(ctx, "admin", hub.RoleOperator); !errors.Is(err, hub.ErrConflict) {
		t.Fatalf("demote last admin: %v", err)
	}
	if err := s.CreateUser(ctx, "root", hub.RoleAdmin, pw); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteUser(ctx, "admin"); err != nil {
		t.Fatalf("delete with another admin: %v", err)
	}
	if err := s.DeleteUser(ctx, "admin"); !errors.Is(err, hub.ErrNotFound) {
		t.Fatalf("delete again: %v", err)
	}
	if err := s.SetRole(ctx, "root", hub.RoleViewer); !errors.Is(err, hub.ErrConflict) {
		t.Fatalf("demote the new last admin: %v", err)
	}
}

func TestSessionLifetime(t *testing.T) {
	s, clk := openUsers(t)
	ctx := context.Background()
	lim := SessionLimits{Idle: time.Hour, Max: 3 * time.Hour}
	if err := s.CreateUser(ctx, "alice", hub.RoleViewer, pw); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CreateSession(ctx, "nobody", lim); !errors.Is(err, hub.ErrNotFound) {
		t.Fatalf("session for unknown user: %v", err)
	}
	id, sess, err := s.CreateSession(ctx, "alice", lim)
	if err != nil || sess.Role != hub.RoleViewer || len(sess.CSRFToken) < 40 || !strings.HasPrefix(id, SessionPrefix) {
		t.Fatalf("CreateSession = %q, %+v, %v", id, sess, err)
	}
	// Idle: a request just before the limit keeps the session alive.
	clk.Add(time.Hour - time.Nanosecond)
	got, err := s.TouchSession(ctx, id, lim)
	if err != nil || got.CSRFToken != sess.CSRFToken {
		t.Fatalf("just before idle limit: %+v, %v", got, err)
	}
	clk.Add(time.Hour - time.Nanosecond)
	if _, err := s.TouchSession(ctx, id, lim); err != nil {
		t.Fatalf("active session: %v", err)
	}
	// Absolute: 3 h after sign-in it ends however active.
	clk.Add(time.Hour - time.Nanosecond)
	if _, err := s.TouchSession(ctx, id, lim); err != nil {
		t.Fatalf("just before max: %v", err)
	}
	clk.Add(3 * time.Nanosecond) // exactly 3 h after sign-in
	if _, err := s.TouchSession(ctx, id, lim); !errors.Is(err, hub.ErrUnauthorized) {
		t.Fatalf("past max: %v", err)
	}

	id2, _, _ := s.CreateSession(ctx, "alice", lim)
	clk.Add(time.Hour)
	if _, err := s.TouchSession(ctx, id2, lim); !errors.Is(err, hub.ErrUnauthorized) {
		t.Fatalf("at idle limit: %v", err)
	}
}

func TestSessionEnds(t *testing.T) {
	s, _ := openUsers(t)
	ctx := context.Background()
	lim := SessionLimits{Idle: time.Hour, Max: 3 * time.Hour}
	s.CreateUser(ctx, "alice", hub.RoleViewer, pw)
	s.CreateUser(ctx, "root", hub.RoleAdmin, pw)
	a, _, _ := s.CreateSession(ctx, "alice", lim)
	b, _, _ := s.CreateSession(ctx, "alice", lim)
	if err := s.DeleteSession(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TouchSession(ctx, a, lim); !errors.Is(err, hub.ErrUnauthorized) {
		t.Fatalf("after logout: %v", err)
	}
	// A role change shows in the live session.
	if err := s.SetRole(ctx, "alice", hub.RoleOperator); err != nil {
		t.Fatal(err)
	}
	if got, err := s.TouchSession(ctx, b, lim); err != nil || got.Role != hub.RoleOperator {
		t.Fatalf("after role change: %+v, %v", got, err)
	}
	if err := s.SetPassword(ctx, "alice", "a new long password"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TouchSession(ctx, b, lim); !errors.Is(err, hub.ErrUnauthorized) {
		t.Fatalf("after password change: %v", err)
	}
	c, _, _ := s.CreateSession(ctx, "alice", lim)
	if err := s.DeleteUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TouchSession(ctx, c, lim); !errors.Is(err, hub.ErrUnauthorized) {
		t.Fatalf("after user deleted: %v", err)
	}
	if _, err := s.TouchSession(ctx, "fws_junk", lim); !errors.Is(err, hub.ErrUnauthorized) {
		t.Fatalf("junk id: %v", err)
	}
}

func TestDeleteExpiredSessions(t *testing.T) {
	s, clk := openUsers(t)
	ctx := context.Background()
	lim := SessionLimits{Idle: time.Hour, Max: 3 * time.Hour}
	s.CreateUser(ctx, "alice", hub.RoleViewer, pw)
	old, _, _ := s.CreateSession(ctx, "alice", lim)
	clk.Add(30 * time.Minute)
	fresh, _, _ := s.CreateSession(ctx, "alice", lim)
	clk.Add(30 * time.Minute) // old is idle for exactly the limit
	n, err := s.DeleteExpiredSessions(ctx, lim)
	if err != nil || n != 1 {
		t.Fatalf("DeleteExpiredSessions = %d, %v", n, err)
	}
	if _, err := s.TouchSession(ctx, fresh, lim); err != nil {
		t.Fatalf("fresh session: %v", err)
	}
	if _, err := s.TouchSession(ctx, old, lim); !errors.Is(err, hub.ErrUnauthorized) {
		t.Fatalf("old session: %v", err)
	}
}
