package store

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/hub"
)

func openTest(t testing.TB) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fleethub.db")
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func mustCreate(t testing.TB, s *Store, id string, labels map[string]string) (hub.Device, string) {
	t.Helper()
	d, tok, err := s.CreateDevice(context.Background(), id, labels)
	if err != nil {
		t.Fatalf("CreateDevice(%q): %v", id, err)
	}
	return d, tok
}

func TestDeviceCRUD(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	d, tok := mustCreate(t, s, "pi-01", map[string]string{"site": "lab"})
	if d.ID != "pi-01" || d.Labels["site"] != "lab" || d.Revoked || d.CreatedAt.IsZero() || d.Transport != "ws" {
		t.Fatalf("created device = %+v", d)
	}
	if !strings.HasPrefix(tok, DeviceTokenPrefix) {
		t.Fatalf("token %q lacks prefix", tok)
	}
	mustCreate(t, s, "a0", nil)

	got, err := s.GetDevice(ctx, "pi-01")
	if err != nil {
		t.Fatalf("GetDevice: %v", err)
	}
	if !got.CreatedAt.Equal(d.CreatedAt) || got.Labels["site"] != "lab" || got.LastSeen != nil {
		t.Fatalf("GetDevice = %+v, want %+v", got, d)
	}
	list, err := s.ListDevices(ctx)
	if err != nil {
		t.Fatalf("ListDevices: %v", err)
	}
	if len(list) != 2 || list[0].ID != "a0" || list[1].ID != "pi-01" {
		t.Fatalf("ListDevices = %+v, want a0, pi-01", list)
	}
	if list[0].Labels == nil {
		t.Fatal("nil labels for a device created without labels")
	}
	if err := s.DeleteDevice(ctx, "pi-01"); err != nil {
		t.Fatalf("DeleteDevice: %v", err)
	}
	if _, err := s.GetDevice(ctx, "pi-01"); !errors.Is(err, hub.ErrNotFound) {
		t.Fatalf("GetDevice after delete: %v, want ErrNotFound", err)
	}
	if _, err := s.AuthenticateDevice(ctx, tok); !errors.Is(err, hub.ErrUnauthorized) {
		t.Fatalf("token of deleted device: %v, want ErrUnauthorized", err)
	}
}

func TestCreateConflict(t *testing.T) {
	s, _ := openTest(t)
	mustCreate(t, s, "pi-01", nil)
	_, _, err := s.CreateDevice(context.Background(), "pi-01", map[string]string{"a": "b"})
	if !errors.Is(err, hub.ErrConflict) {
		t.Fatalf("second CreateDevice: %v, want ErrConflict", err)
	}
}

func TestNotFound(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	checks := map[string]error{
		"GetDevice":    func() error { _, err := s.GetDevice(ctx, "nope"); return err }(),
		"RevokeDevice": s.RevokeDevice(ctx, "nope"),
		"DeleteDevice": s.DeleteDevice(ctx, "nope"),
		"TouchDevice":  s.TouchDevice(ctx, "nope", time.Now(), "1.0"),
	}
	for name, err := range checks {
		if !errors.Is(err, hub.ErrNotFound) {
			t.Errorf("%s: %v, want ErrNotFound", name, err)
		}
	}
	if msg := checks["GetDevice"].Error(); msg != "device nope not found" {
		t.Errorf("message %q", msg)
	}
}

func TestAuthenticateAndRevoke(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	_, tok := mustCreate(t, s, "pi-01", map[string]string{"site": "lab"})
	_, other := mustCreate(t, s, "pi-02", nil)
	d, err := s.AuthenticateDevice(ctx, tok)
	if err != nil || d.ID != "pi-01" || d.Labels["site"] != "lab" {
		t.Fatalf("AuthenticateDevice = %+v, %v", d, err)
	}
	if err := s.RevokeDevice(ctx, "pi-01"); err != nil {
		t.Fatalf("RevokeDevice: %v", err)
	}
	d, err = s.AuthenticateDevice(ctx, tok)
	if !errors.Is(err, hub.ErrRevoked) || d.ID != "pi-01" || !d.Revoked || d.RevokedAt == nil {
		t.Fatalf("after revoke: %+v, %v; want ErrRevoked", d, err)
	}
	first := *d.RevokedAt
	if err := s.RevokeDevice(ctx, "pi-01"); err != nil {
		t.Fatalf("second RevokeDevice: %v", err)
	}
	g, _ := s.GetDevice(ctx, "pi-01")
	if !g.RevokedAt.Equal(first) {
		t.Fatalf("second revoke moved revoked_at from %v to %v", first, g.RevokedAt)
	}
	if d, err := s.AuthenticateDevice(ctx, other); err != nil || d.ID != "pi-02" {
		t.Fatalf("other device after revoke: %+v, %v", d, err)
	}
}

func TestAuthenticateBadTokens(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	_, tok := mustCreate(t, s, "pi-01", nil)
	apiTok, err := s.CreateAPIToken(ctx, "ops", hub.RoleOperator)
	if err != nil {
		t.Fatal(err)
	}
	body := strings.TrimPrefix(tok, DeviceTokenPrefix)
	flipped := []byte(tok)
	flipped[len(flipped)-2] ^= 'A' ^ 'B'
	bad := map[string]string{
		"empty":           "",
		"no prefix":       body,
		"api prefix":      APITokenPrefix + body,
		"api token":       apiTok,
		"short":           tok[:len(tok)-1],
		"long":            tok + "A",
		"padding":         DeviceTokenPrefix + base64.URLEncoding.EncodeToString(make([]byte, 32)),
		"std alphabet":    DeviceTokenPrefix + strings.Repeat("+", encodedLen),
		"unknown":         DeviceTokenPrefix + base64.RawURLEncoding.EncodeToString(make([]byte, 32)),
		"one char off":    string(flipped),
		"prefix case":     "FWD_" + body,
		"trailing space":  tok + " ",
		"nul in the body": tok[:10] + "\x00" + tok[11:],
	}
	for name, tk := range bad {
		if _, err := s.AuthenticateDevice(ctx, tk); !errors.Is(err, hub.ErrUnauthorized) {
			t.Errorf("%s: %v, want ErrUnauthorized", name, err)
		}
	}
}

func TestTokenFormat(t *testing.T) {
	s, _ := openTest(t)
	seen := map[string]bool{}
	for i := range 20 {
		_, tok := mustCreate(t, s, fmt.Sprintf("d%d", i), nil)
		body, ok := strings.CutPrefix(tok, DeviceTokenPrefix)
		if !ok || len(body) != 43 {
			t.Fatalf("token %q: want fwd_ + 43 chars", tok)
		}
		raw, err := base64.RawURLEncoding.DecodeString(body)
		if err != nil || len(raw) != 32 {
			t.Fatalf("token %q: body is not 32 bytes of base64url: %v", tok, err)
		}
		if seen[tok] {
			t.Fatalf("token repeated: %q", tok)
		}
		seen[tok] = true
	}
	api, err := s.CreateAPIToken(context.Background(), "ci", hub.RoleViewer)
	if err != nil || !strings.HasPrefix(api, APITokenPrefix) || len(api) != 4+43 {
		t.Fatalf("api token %q, %v", api, err)
	}
}

func TestTokensStoredOnlyAsHash(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	_, tok := mustCreate(t, s, "pi-01", nil)
	var n int
	err := s.db.QueryRowContext(ctx,
		`SELECT count(*) FROM devices WHERE instr(CAST(token_hash AS TEXT), ?) > 0 OR instr(labels, ?) > 0`,
		tok, tok).Scan(&n)
	if err != nil || n != 0 {
		t.Fatalf("plaintext token found in %d rows (%v)", n, err)
	}
	var hash []byte
	if err := s.db.QueryRowContext(ctx, `SELECT token_hash FROM devices`).Scan(&hash); err != nil {
		t.Fatal(err)
	}
	if len(hash) != 32 || string(hash) != string(hashToken(tok)) {
		t.Fatalf("stored hash %x is not sha256 of the token", hash)
	}
}

func TestTouchDevice(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	mustCreate(t, s, "pi-01", nil)
	seen := time.Date(2025, 3, 4, 5, 6, 7, 890, time.UTC)
	if err := s.TouchDevice(ctx, "pi-01", seen, "0.3.1"); err != nil {
		t.Fatalf("TouchDevice: %v", err)
	}
	d, err := s.GetDevice(ctx, "pi-01")
	if err != nil {
		t.Fatal(err)
	}
	if d.LastSeen == nil || !d.LastSeen.Equal(seen) || d.AgentVersion != "0.3.1" {
		t.Fatalf("after touch: last_seen %v agent %q", d.LastSeen, d.AgentVersion)
	}
}

func TestReopenKeepsData(t *testing.T) {
	ctx := context.Background()
	s, path := openTest(t)
	_, tok := mustCreate(t, s, "pi-01", map[string]string{"site": "lab"})
	admin, _, err := s.EnsureAdminToken(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddDeadLetters(ctx, []hub.DeadLetter{{DeviceID: "pi-01", Line: "m v=1 1", Error: "type"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s2, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s2.Close()
	if d, err := s2.AuthenticateDevice(ctx, tok); err != nil || d.Labels["site"] != "lab" {
		t.Fatalf("device after reopen: %+v, %v", d, err)
	}
	if info, err := s2.AuthenticateAPIToken(ctx, admin); err != nil || info.Name != "admin" || info.Role != hub.RoleAdmin {
		t.Fatalf("admin token after reopen: %+v, %v", info, err)
	}
	if n, err := s2.CountDeadLetters(ctx); err != nil || n != 1 {
		t.Fatalf("dead letters after reopen: %d, %v", n, err)
	}
	var v int
	if err := s2.db.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v); err != nil || v != len(migrations) {
		t.Fatalf("schema_version = %d, %v; want %d", v, err, len(migrations))
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	ctx := context.Background()
	s, path := openTest(t)
	if _, err := s.db.ExecContext(ctx, `UPDATE schema_version SET version = 99`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s2, err := Open(ctx, path); err == nil {
		s2.Close()
		t.Fatal("Open accepted a database from a newer fleethub")
	}
}

func TestPragmas(t *testing.T) {
	s, _ := openTest(t)
	var mode string
	var fk int
	if err := s.db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v", mode, err)
	}
	if err := s.db.QueryRow(`PRAGMA foreign_keys`).Scan(&fk); err != nil || fk != 1 {
		t.Fatalf("foreign_keys = %d, %v", fk, err)
	}
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func TestEnsureAdminToken(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	tok, created, err := s.EnsureAdminToken(ctx)
	if err != nil || !created || !strings.HasPrefix(tok, APITokenPrefix) {
		t.Fatalf("first EnsureAdminToken = %q, %v, %v", tok, created, err)
	}
	tok2, created2, err := s.EnsureAdminToken(ctx)
	if err != nil || created2 || tok2 != "" {
		t.Fatalf("second EnsureAdminToken = %q, %v, %v; want \"\", false, nil", tok2, created2, err)
	}
	if info, err := s.AuthenticateAPIToken(ctx, tok); err != nil || info.Name != AdminTokenName || info.Role != hub.RoleAdmin {
		t.Fatalf("AuthenticateAPIToken = %+v, %v", info, err)
	}
}

func TestEnsureAdminTokenSkipsWhenAnyTokenExists(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	if _, err := s.CreateAPIToken(ctx, "ci", hub.RoleViewer); err != nil {
		t.Fatal(err)
	}
	if tok, created, err := s.EnsureAdminToken(ctx); err != nil || created || tok != "" {
		t.Fatalf("EnsureAdminToken = %q, %v, %v", tok, created, err)
	}
}

func TestAPITokens(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	tok, err := s.CreateAPIToken(ctx, "ci", hub.RoleOperator)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateAPIToken(ctx, "ci", hub.RoleOperator); !errors.Is(err, hub.ErrConflict) {
		t.Fatalf("duplicate name: %v, want ErrConflict", err)
	}
	for _, name := range []string{"", "has space", strings.Repeat("a", 65)} {
		if _, err := s.CreateAPIToken(ctx, name, hub.RoleOperator); !errors.Is(err, hub.ErrInvalidInput) {
			t.Errorf("name %q: %v, want ErrInvalidInput", name, err)
		}
	}
	_, devTok := mustCreate(t, s, "pi-01", nil)
	for _, bad := range []string{"", devTok, tok + "x", APITokenPrefix + base64.RawURLEncoding.EncodeToString(make([]byte, 32))} {
		if _, err := s.AuthenticateAPIToken(ctx, bad); !errors.Is(err, hub.ErrUnauthorized) {
			t.Errorf("token %q: %v, want ErrUnauthorized", bad, err)
		}
	}
}

func TestDeviceIDLimits(t *testing.T) {
	s, _ := openTest(t)
	good := []string{"a", "0", strings.Repeat("a", 64), "pi-01", "a.b_c-d", "9lives"}
	bad := []string{"", strings.Repeat("a", 65), "Pi", "-a", ".a", "_a", "a b", "a/b", "é", "a\x00"}
	for _, id := range good {
		if _, _, err := s.CreateDevice(context.Background(), id, nil); err != nil {
			t.Errorf("id %q: %v", id, err)
		}
	}
	for _, id := range bad {
		if _, _, err := s.CreateDevice(context.Background(), id, nil); !errors.Is(err, hub.ErrInvalidInput) {
			t.Errorf("id %q: %v, want ErrInvalidInput", id, err)
		}
	}
}

func TestLabelLimits(t *testing.T) {
	many := func(n int) map[string]string {
		m := map[string]string{}
		for i := range n {
			m[fmt.Sprintf("k%d", i)] = "v"
		}
		return m
	}
	good := map[string]map[string]string{
		"32 labels":    many(32),
		"64-byte key":  {strings.Repeat("k", 64): "v"},
		"256-byte val": {"k": strings.Repeat("v", 256)},
		"utf8 value":   {"room": "küche"},
		"spaces, =,":   {"k": "a b=c,d \"q\""},
	}
	bad := map[string]map[string]string{
		"33 labels":    many(33),
		"65-byte key":  {strings.Repeat("k", 65): "v"},
		"257-byte val": {"k": strings.Repeat("v", 257)},
		"empty value":  {"k": ""},
		"empty key":    {"": "v"},
		"digit first":  {"1k": "v"},
		"bad key byte": {"a b": "v"},
		"reserved":     {"device": "x"},
		"bad utf8":     {"k": "\xff"},
		"newline":      {"k": "a\nb"},
		"tab":          {"k": "a\tb"},
		"DEL":          {"k": "a\x7fb"},
		"backslash":    {"k": `C:\x`},
	}
	s, _ := openTest(t)
	i := 0
	for name, l := range good {
		i++
		if _, _, err := s.CreateDevice(context.Background(), fmt.Sprintf("g%d", i), l); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	for name, l := range bad {
		i++
		if _, _, err := s.CreateDevice(context.Background(), fmt.Sprintf("b%d", i), l); !errors.Is(err, hub.ErrInvalidInput) {
			t.Errorf("%s: %v, want ErrInvalidInput", name, err)
		}
	}
	d, err := s.GetDevice(context.Background(), "g1")
	if err != nil || len(d.Labels) == 0 {
		t.Fatalf("labels not stored: %+v, %v", d, err)
	}
}

func TestDeadLetters(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	if list, err := s.ListDeadLetters(ctx, 10); err != nil || len(list) != 0 || list == nil {
		t.Fatalf("empty list = %v, %v", list, err)
	}
	at := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	var batch []hub.DeadLetter
	for i := range 5 {
		batch = append(batch, hub.DeadLetter{DeviceID: "pi-01", Line: fmt.Sprintf("m v=%d", i), Error: "field type conflict", At: at})
	}
	batch[4].At = time.Time{}
	if err := s.AddDeadLetters(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if err := s.AddDeadLetters(ctx, nil); err != nil {
		t.Fatal(err)
	}
	n, err := s.CountDeadLetters(ctx)
	if err != nil || n != 5 {
		t.Fatalf("CountDeadLetters = %d, %v", n, err)
	}
	list, err := s.ListDeadLetters(ctx, 3)
	if err != nil || len(list) != 3 {
		t.Fatalf("ListDeadLetters(3) = %d items, %v", len(list), err)
	}
	if list[0].Line != "m v=4" || list[2].Line != "m v=2" || list[0].ID <= list[1].ID {
		t.Fatalf("not newest first: %+v", list)
	}
	if list[0].At.IsZero() || !list[1].At.Equal(at) || list[1].Error != "field type conflict" {
		t.Fatalf("fields: %+v", list[:2])
	}
	for _, lim := range []int{0, -1, MaxDeadLetterList + 1} {
		if _, err := s.ListDeadLetters(ctx, lim); !errors.Is(err, hub.ErrInvalidInput) {
			t.Errorf("limit %d: %v, want ErrInvalidInput", lim, err)
		}
	}
}

// TestConcurrentTouchAndAuthenticate runs the two calls every device
// session makes, from many goroutines, on one file (run with -race).
func TestConcurrentTouchAndAuthenticate(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	const devices = 8
	tokens := make([]string, devices)
	for i := range devices {
		_, tokens[i] = mustCreate(t, s, fmt.Sprintf("pi-%02d", i), nil)
	}
	var wg sync.WaitGroup
	errs := make(chan error, devices*2)
	for i := range devices {
		id := fmt.Sprintf("pi-%02d", i)
		wg.Go(func() {
			for j := range 25 {
				if err := s.TouchDevice(ctx, id, time.Unix(int64(j), 0), "1.0"); err != nil {
					errs <- err
					return
				}
			}
		})
		wg.Go(func() {
			for range 25 {
				d, err := s.AuthenticateDevice(ctx, tokens[i])
				if err == nil && d.ID != id {
					err = fmt.Errorf("token %d authenticated as %s", i, d.ID)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	d, err := s.GetDevice(ctx, "pi-03")
	if err != nil || d.LastSeen == nil || d.LastSeen.Unix() != 24 {
		t.Fatalf("final last_seen %v, %v; want unix 24", d.LastSeen, err)
	}
}

func BenchmarkAuthenticateDevice(b *testing.B) {
	ctx := context.Background()
	s, _ := openTest(b)
	var tok string
	for i := range 1000 {
		_, t := mustCreate(b, s, fmt.Sprintf("pi-%04d", i), map[string]string{"site": "lab", "rack": "r1"})
		if i == 500 {
			tok = t
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.AuthenticateDevice(ctx, tok); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestSetDeviceTransport(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	mustCreate(t, s, "esp-1", nil)
	if err := s.SetDeviceTransport(ctx, "esp-1", TransportMQTT); err != nil {
		t.Fatal(err)
	}
	if d, err := s.GetDevice(ctx, "esp-1"); err != nil || d.Transport != TransportMQTT {
		t.Fatalf("after SetDeviceTransport(mqtt): %+v, %v", d, err)
	}
	if err := s.SetDeviceTransport(ctx, "nope", TransportMQTT); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("unknown device: err %v, want ErrNotFound", err)
	}
	if err := s.SetDeviceTransport(ctx, "esp-1", "carrier-pigeon"); !errors.Is(err, hub.ErrInvalidInput) {
		t.Errorf("unknown transport: err %v, want ErrInvalidInput", err)
	}
	if d, _ := s.GetDevice(ctx, "esp-1"); d.Transport != TransportMQTT {
		t.Errorf("a refused change changed the transport to %q", d.Transport)
	}
}
