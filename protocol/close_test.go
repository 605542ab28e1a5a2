package protocol

import (
	"strings"
	"testing"
	"time"
)

func TestCloseCodes(t *testing.T) {
	cases := []struct {
		code  CloseCode
		num   uint16
		name  string
		retry RetryPolicy
	}{
		{CloseNormal, 1000, "normal", RetryBackoff},
		{CloseGoingAway, 1001, "going_away", RetryAfterHint},
		{CloseProtocolError, 4000, "protocol_error", RetryBackoff},
		{CloseUnsupportedVersion, 4001, "unsupported_version", RetryNever},
		{CloseTooBig, 4002, "too_big", RetryNow},
		{CloseInvalidData, 4003, "invalid_data", RetryNow},
		{CloseReplaced, 4004, "replaced", RetryNever},
		{CloseRevoked, 4005, "revoked", RetryNever},
		{ClosePolicy, 4006, "policy", RetryAfterHint},
		{CloseOverloaded, 4007, "overloaded", RetryBackoff},
		{CloseIdle, 4008, "idle", RetryNow},
		{CloseRotateToken, 4009, "rotate_token", RetryNow},
		{CloseCode(1006), 1006, "other", RetryBackoff}, // abnormal closure, never sent on the wire
		{CloseCode(4999), 4999, "other", RetryBackoff},
	}
	for _, c := range cases {
		if uint16(c.code) != c.num {
			t.Errorf("%s = %d, want %d (wire value)", c.name, c.code, c.num)
		}
		if got := c.code.String(); got != c.name {
			t.Errorf("%d.String() = %q, want %q", c.num, got, c.name)
		}
		if got := c.code.Retry(); got != c.retry {
			t.Errorf("%d.Retry() = %s, want %s", c.num, got, c.retry)
		}
	}
}

func TestRetryPolicyString(t *testing.T) {
	want := map[RetryPolicy]string{RetryBackoff: "backoff", RetryNever: "never", RetryNow: "now", RetryAfterHint: "after_hint", 99: "unknown"}
	for p, s := range want {
		if p.String() != s {
			t.Errorf("%d.String() = %q, want %q", p, p.String(), s)
		}
	}
	// Code outside this package compares against the original two values.
	if RetryBackoff != 0 || RetryNever != 1 {
		t.Error("RetryBackoff/RetryNever renumbered")
	}
}

func TestRetryAfterHint(t *testing.T) {
	cases := []struct {
		reason string
		d      time.Duration
		want   string
	}{
		{"rate limit", 30 * time.Second, "rate limit; retry-after=30"},
		{"", 1500 * time.Millisecond, "retry-after=2"}, // rounded up
		{"x", 0, "x; retry-after=1"},                   // never zero
		{"day", 24 * time.Hour, "day; retry-after=86400"},
	}
	for _, c := range cases {
		got := FormatRetryAfter(c.reason, c.d)
		if got != c.want {
			t.Errorf("FormatRetryAfter(%q, %v) = %q, want %q", c.reason, c.d, got, c.want)
		}
		d, ok := ParseRetryAfter(got)
		if !ok || d != max((c.d+time.Second-1).Truncate(time.Second), time.Second) {
			t.Errorf("ParseRetryAfter(%q) = %v, %v", got, d, ok)
		}
	}
	long := FormatRetryAfter(strings.Repeat("r", 300), time.Minute)
	if len(long) != MaxCloseReason || !strings.HasSuffix(long, "; retry-after=60") {
		t.Errorf("long reason: %d bytes %q, want %d bytes ending in the hint", len(long), long, MaxCloseReason)
	}
	if d, ok := ParseRetryAfter(long); !ok || d != time.Minute {
		t.Errorf("ParseRetryAfter(long) = %v, %v", d, ok)
	}
	for _, bad := range []string{"", "rate limit", "retry-after=", "retry-after=0", "retry-after=-5", "retry-after=1.5", "retry-after=86401", "retry-after=99999999999"} {
		if d, ok := ParseRetryAfter(bad); ok {
			t.Errorf("ParseRetryAfter(%q) = %v, want no hint", bad, d)
		}
	}
	if d, ok := ParseRetryAfter("retry-after=86400; more"); !ok || d != 24*time.Hour {
		t.Errorf("hint at the 1-day edge: %v, %v", d, ok)
	}
}
