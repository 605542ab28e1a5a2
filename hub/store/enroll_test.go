package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/hub"
)

func TestEnrollment(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	s, _ := openTest(t)
	s.now = func() time.Time { return now }
	labels := map[string]string{"site": "lab"}
	c, code, err := s.CreateEnrollmentCode(ctx, labels, 2, time.Hour, "token:admin")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(code, EnrollCodePrefix) || c.UsesLeft != 2 || !c.ExpiresAt.Equal(now.Add(time.Hour)) || c.State(now) != "active" {
		t.Fatalf("created %+v, code %q", c, code)
	}
	// Typed loosely: lower case, spaces around.
	d, tok, err := s.Enroll(ctx, "  "+strings.ToLower(code)+"\n", "pi-01", map[string]string{"remote": "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if d.Labels["site"] != "lab" || !strings.HasPrefix(tok, DeviceTokenPrefix) {
		t.Fatalf("enrolled %+v, token %q", d, tok)
	}
	if got, err := s.AuthenticateDevice(ctx, tok); err != nil || got.ID != "pi-01" {
		t.Fatalf("the enrolled token does not authenticate: %+v, %v", got, err)
	}
	// A taken id costs no use.
	if _, _, err := s.Enroll(ctx, code, "pi-01", nil); !errors.Is(err, hub.ErrConflict) {
		t.Errorf("taken id: %v, want ErrConflict", err)
	}
	if _, _, err := s.Enroll(ctx, code, "pi-02", nil); err != nil {
		t.Fatalf("second use: %v", err)
	}
	if _, _, err := s.Enroll(ctx, code, "pi-03", nil); !errors.Is(err, hub.ErrCodeUsedUp) {
		t.Errorf("third use of a 2-use code: %v, want ErrCodeUsedUp", err)
	}

	expiring, code2, _ := s.CreateEnrollmentCode(ctx, nil, 5, time.Minute, "token:admin")
	now = now.Add(time.Minute)
	if _, _, err := s.Enroll(ctx, code2, "pi-04", nil); !errors.Is(err, hub.ErrCodeExpired) {
		t.Errorf("expired code: %v, want ErrCodeExpired", err)
	}
	c3, code3, _ := s.CreateEnrollmentCode(ctx, nil, 5, time.Hour, "token:admin")
	id3 := c3.ID
	list, _ := s.ListEnrollmentCodes(ctx)
	states := map[string]string{}
	for _, x := range list {
		states[x.ID] = x.State(now)
	}
	if states[c.ID] != "used_up" || states[expiring.ID] != "expired" || states[id3] != "active" {
		t.Errorf("listed states %v", states)
	}
	if err := s.RevokeEnrollmentCode(ctx, id3, "user:admin"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Enroll(ctx, code3, "pi-05", nil); !errors.Is(err, hub.ErrCodeRevoked) {
		t.Errorf("revoked code: %v, want ErrCodeRevoked", err)
	}
	if err := s.RevokeEnrollmentCode(ctx, "e_nope", "user:admin"); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("revoke unknown: %v, want ErrNotFound", err)
	}
	for _, bad := range []string{"", "fwe_", "fwd_" + code[4:], code[:len(code)-1], code + "A", "fwe_!!!!"} {
		if _, _, err := s.Enroll(ctx, bad, "pi-06", nil); !errors.Is(err, hub.ErrCodeUnknown) {
			t.Errorf("code %q: %v, want ErrCodeUnknown", bad, err)
		}
	}
	// Never issued, well formed.
	fresh, _ := newEnrollCode()
	if _, _, err := s.Enroll(ctx, fresh, "pi-06", nil); !errors.Is(err, hub.ErrCodeUnknown) {
		t.Errorf("never-issued code: %v, want ErrCodeUnknown", err)
	}
	if _, err := s.GetDevice(ctx, "pi-06"); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("a refused enrollment created a device")
	}

	// The audit log has every step, newest first.
	entries, err := s.ListAudit(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range entries {
		actions = append(actions, e.Action+" "+e.Subject)
	}
	want := []string{"enrollment.revoke " + id3, "enrollment.create " + id3, "enrollment.create " + expiring.ID,
		"device.enroll pi-02", "device.enroll pi-01", "enrollment.create " + c.ID}
	if strings.Join(actions, ",") != strings.Join(want, ",") {
		t.Errorf("audit log:\n%v\nwant\n%v", actions, want)
	}
	if entries[4].Actor != "enrollment:"+c.ID || entries[4].Detail["remote"] != "127.0.0.1" {
		t.Errorf("enroll entry %+v", entries[4])
	}
	if page, _ := s.ListAudit(ctx, 2, entries[1].ID); len(page) != 2 || page[0].ID != entries[2].ID {
		t.Errorf("paging: %+v", page)
	}
}

func TestEnrollmentCodeLimits(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	for _, tc := range []struct {
		uses int
		ttl  time.Duration
		ok   bool
	}{
		{1, time.Minute, true}, {hub.MaxEnrollUses, hub.MaxEnrollTTL, true},
		{0, time.Hour, false}, {hub.MaxEnrollUses + 1, time.Hour, false},
		{1, time.Minute - time.Second, false}, {1, hub.MaxEnrollTTL + time.Second, false},
	} {
		_, _, err := s.CreateEnrollmentCode(ctx, nil, tc.uses, tc.ttl, "t")
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, hub.ErrInvalidInput)) {
			t.Errorf("uses %d ttl %s: err %v, want ok=%v", tc.uses, tc.ttl, err, tc.ok)
		}
	}
	if _, _, err := s.CreateEnrollmentCode(ctx, map[string]string{"bad key!": "x"}, 1, time.Hour, "t"); !errors.Is(err, hub.ErrInvalidInput) {
		t.Errorf("bad label: %v", err)
	}
}
