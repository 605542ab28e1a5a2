package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/hub"
)

// TestTokenRotation: the old token works until the new one is first used,
// then only the new one does; asking again replaces the pending token; a
// revoked device gets none.
func TestTokenRotation(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	_, old := mustCreate(t, s, "pi-rot", nil)
	if err := s.RequestTokenRotation(ctx, "pi-rot", "token:admin"); err != nil {
		t.Fatal(err)
	}
	if d, err := s.AuthenticateDevice(ctx, old); err != nil || !d.RotateRequested {
		t.Fatalf("after the request: %+v, %v (want rotate_requested)", d, err)
	}
	first, err := s.RotateDeviceToken(ctx, "pi-rot", "device:pi-rot")
	if err != nil {
		t.Fatal(err)
	}
	second, err := s.RotateDeviceToken(ctx, "pi-rot", "device:pi-rot") // the answer was lost: ask again
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AuthenticateDevice(ctx, first); !errors.Is(err, hub.ErrUnauthorized) {
		t.Errorf("a replaced pending token: %v, want ErrUnauthorized", err)
	}
	if _, err := s.AuthenticateDevice(ctx, old); err != nil {
		t.Fatalf("old token before the new one is used: %v", err)
	}
	d, err := s.AuthenticateDevice(ctx, second)
	if err != nil || d.ID != "pi-rot" || d.RotateRequested {
		t.Fatalf("new token: %+v, %v", d, err)
	}
	if _, err := s.AuthenticateDevice(ctx, old); !errors.Is(err, hub.ErrUnauthorized) {
		t.Errorf("old token after the new one was used: %v, want ErrUnauthorized", err)
	}
	if got, _ := s.GetDevice(ctx, "pi-rot"); got.RotateRequested {
		t.Errorf("rotate_requested still set after the rotation")
	}
	if _, err := s.AuthenticateDevice(ctx, second); err != nil {
		t.Errorf("new token, second use: %v", err)
	}

	if _, err := s.RotateDeviceToken(ctx, "nope", "x"); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("unknown device: %v", err)
	}
	if err := s.RequestTokenRotation(ctx, "nope", "x"); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("request for unknown device: %v", err)
	}
	if err := s.RevokeDevice(ctx, "pi-rot"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RotateDeviceToken(ctx, "pi-rot", "x"); !errors.Is(err, hub.ErrRevoked) {
		t.Errorf("revoked device: %v, want ErrRevoked", err)
	}
	entries, _ := s.ListAudit(ctx, 0, 0)
	var actions []string
	for _, e := range entries {
		actions = append(actions, e.Action)
	}
	want := []string{"device.token_rotated", "device.rotate_token", "device.rotate_token", "device.rotate_requested"}
	if len(actions) != len(want) {
		t.Fatalf("audit %v, want %v", actions, want)
	}
	for i := range want {
		if actions[i] != want[i] {
			t.Errorf("audit %v, want %v", actions, want)
			break
		}
	}
}

// TestTokenRotationLimits: unasked rotations are rate-limited per device;
// an operator's request lifts the limit; revocation kills a pending token.
func TestTokenRotationLimits(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	now := s.now()
	s.now = func() time.Time { return now }
	_, old := mustCreate(t, s, "pi-lim", nil)
	tok, err := s.RotateDeviceToken(ctx, "pi-lim", "device:pi-lim")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RotateDeviceToken(ctx, "pi-lim", "device:pi-lim"); !errors.Is(err, hub.ErrTooSoon) {
		t.Errorf("second unasked rotation at once: %v, want ErrTooSoon", err)
	}
	now = now.Add(hub.MinTokenRotation)
	tok, err = s.RotateDeviceToken(ctx, "pi-lim", "device:pi-lim")
	if err != nil {
		t.Fatalf("after the interval: %v", err)
	}
	if err := s.RequestTokenRotation(ctx, "pi-lim", "token:admin"); err != nil {
		t.Fatal(err)
	}
	if tok, err = s.RotateDeviceToken(ctx, "pi-lim", "device:pi-lim"); err != nil {
		t.Fatalf("asked for by an operator: %v", err)
	}
	// Revoked with a token pending: neither works, nothing is promoted.
	if err := s.RevokeDevice(ctx, "pi-lim"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AuthenticateDevice(ctx, tok); !errors.Is(err, hub.ErrUnauthorized) {
		t.Errorf("pending token of a revoked device: %v, want ErrUnauthorized", err)
	}
	if _, err := s.AuthenticateDevice(ctx, old); !errors.Is(err, hub.ErrRevoked) {
		t.Errorf("old token of a revoked device: %v, want ErrRevoked", err)
	}
	entries, _ := s.ListAudit(ctx, 0, 0)
	for _, e := range entries {
		if e.Action == "device.token_rotated" {
			t.Errorf("a token was promoted: %+v", e)
		}
	}
}

// TestConcurrentFirstUse: two first uses of a new token at once both
// succeed; it is promoted once.
func TestConcurrentFirstUse(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	mustCreate(t, s, "pi-cc", nil)
	tok, err := s.RotateDeviceToken(ctx, "pi-cc", "device:pi-cc")
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 8)
	for range 8 {
		go func() { _, err := s.AuthenticateDevice(ctx, tok); errs <- err }()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Errorf("a concurrent first use failed: %v", err)
		}
	}
	entries, _ := s.ListAudit(ctx, 0, 0)
	n := 0
	for _, e := range entries {
		if e.Action == "device.token_rotated" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("promoted %d times, want 1", n)
	}
}
