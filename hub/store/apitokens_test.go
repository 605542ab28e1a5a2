package store

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"

	"github.com/fleetwire/fleetwire/hub"
)

func TestAPITokenRoles(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	for _, role := range []hub.Role{hub.RoleViewer, hub.RoleOperator, hub.RoleAdmin} {
		tok, err := s.CreateAPIToken(ctx, "t-"+string(role), role)
		if err != nil {
			t.Fatalf("CreateAPIToken(%s): %v", role, err)
		}
		info, err := s.AuthenticateAPIToken(ctx, tok)
		if err != nil || info != (hub.APITokenInfo{Name: "t-" + string(role), Role: role}) {
			t.Fatalf("AuthenticateAPIToken = %+v, %v", info, err)
		}
	}
	for _, bad := range []hub.Role{"", "root", "Admin"} {
		if _, err := s.CreateAPIToken(ctx, "bad", bad); !errors.Is(err, hub.ErrInvalidInput) {
			t.Errorf("role %q: %v, want ErrInvalidInput", bad, err)
		}
	}
	list, err := s.ListAPITokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 || list[0].Name != "t-admin" || list[0].Role != hub.RoleAdmin ||
		list[2].Name != "t-viewer" || list[2].Role != hub.RoleViewer || list[1].CreatedAt.IsZero() {
		t.Fatalf("ListAPITokens = %+v", list)
	}
}

func TestDeleteAPIToken(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	admin, _, err := s.EnsureAdminToken(ctx)
	if err != nil {
		t.Fatal(err)
	}
	viewer, err := s.CreateAPIToken(ctx, "ro", hub.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAPIToken(ctx, "nope"); !errors.Is(err, hub.ErrNotFound) {
		t.Fatalf("delete unknown: %v, want ErrNotFound", err)
	}
	// A viewer does not count as an admin: "admin" is still the last one.
	if err := s.DeleteAPIToken(ctx, AdminTokenName); !errors.Is(err, hub.ErrConflict) {
		t.Fatalf("delete last admin: %v, want ErrConflict", err)
	}
	if _, err := s.AuthenticateAPIToken(ctx, admin); err != nil {
		t.Fatalf("refused delete still removed the token: %v", err)
	}
	if err := s.DeleteAPIToken(ctx, "ro"); err != nil {
		t.Fatalf("delete viewer: %v", err)
	}
	if _, err := s.AuthenticateAPIToken(ctx, viewer); !errors.Is(err, hub.ErrUnauthorized) {
		t.Fatalf("deleted token authenticates: %v", err)
	}
	if _, err := s.CreateAPIToken(ctx, "admin2", hub.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAPIToken(ctx, AdminTokenName); err != nil {
		t.Fatalf("delete one of two admins: %v", err)
	}
	if err := s.DeleteAPIToken(ctx, "admin2"); !errors.Is(err, hub.ErrConflict) {
		t.Fatalf("delete the remaining admin: %v, want ErrConflict", err)
	}
	if list, err := s.ListAPITokens(ctx); err != nil || len(list) != 1 || list[0].Name != "admin2" {
		t.Fatalf("ListAPITokens = %+v, %v", list, err)
	}
}

// TestMigrateTokensToAdmin opens a database written before roles existed:
// its tokens could do everything, so they must come back as admin.
func TestMigrateTokensToAdmin(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "v1.db")
	db, err := sql.Open("sqlite", dsn(path))
	if err != nil {
		t.Fatal(err)
	}
	tok, hash := newToken(APITokenPrefix)
	for _, q := range []string{
		`CREATE TABLE schema_version (version INTEGER NOT NULL)`,
		`INSERT INTO schema_version (version) VALUES (1)`,
		migrations[0],
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO api_tokens (name, token_hash, created_at) VALUES ('old', ?, 1)`, hash); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open v1 database: %v", err)
	}
	defer s.Close()
	info, err := s.AuthenticateAPIToken(ctx, tok)
	if err != nil || info.Name != "old" || info.Role != hub.RoleAdmin {
		t.Fatalf("old token after migration = %+v, %v", info, err)
	}
	if _, err := s.db.ExecContext(ctx, `UPDATE api_tokens SET role = 'root'`); err == nil {
		t.Fatal("role column accepted an unknown role")
	}
}
