package devicews

import (
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/protocol"
)

func TestGoingAwayReasonSpreadsHints(t *testing.T) {
	if got := goingAwayReason(5, 10, 0); got != "hub shutting down" {
		t.Fatalf("no rate: %q", got)
	}
	// 10,000 devices at 1,000/s: hints from 1 s (first) to 1 + 9.999 s
	// (last, rounded up to whole seconds: 11).
	for _, c := range []struct {
		i    int
		want time.Duration
	}{{0, time.Second}, {999, 2 * time.Second}, {1000, 2 * time.Second}, {1001, 3 * time.Second}, {9999, 11 * time.Second}} {
		d, ok := protocol.ParseRetryAfter(goingAwayReason(c.i, 10000, 1000))
		if !ok || d != c.want {
			t.Errorf("device %d of 10,000: hint %s (%v); want %s", c.i, d, ok, c.want)
		}
	}
}
