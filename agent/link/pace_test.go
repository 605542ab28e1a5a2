package link

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/protocol"
)

// TestPacerChargesAsTheHub: one message token per message, one point
// token per point with a batch at most the burst, nothing for a hub that
// advertises no budget.
func TestPacerChargesAsTheHub(t *testing.T) {
	ctx := context.Background()
	if p := newPacer(protocol.Settings{}); p.msgs != nil || p.points != nil {
		t.Fatal("no budget advertised, yet a pacer")
	}
	p := newPacer(protocol.Settings{MsgsPerSec: 1e-3, MsgsBurst: 3, PointsPerSec: 1e-3, PointsBurst: 50})
	batch := func(n int) []byte {
		data, err := protocol.Encode(protocol.SampleBatch(1, n))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	if err := p.wait(ctx, batch(20)); err != nil {
		t.Fatal(err)
	}
	if got := p.points.Tokens(); math.Abs(got-30) > 0.1 {
		t.Fatalf("points left %v after a 20-point batch, want 30", got)
	}
	result, _ := protocol.Encode(&protocol.CommandResult{ID: "c1"})
	if err := p.wait(ctx, result); err != nil {
		t.Fatal(err)
	}
	if got := p.points.Tokens(); math.Abs(got-30) > 0.1 {
		t.Fatalf("a command result cost points: %v left", got)
	}
	if got := p.msgs.Tokens(); math.Abs(got-1) > 0.1 {
		t.Fatalf("messages left %v after two, want 1", got)
	}
	// A batch over the burst costs the burst: it must not error (WaitN
	// refuses n > burst) and must empty the bucket, so that the next
	// point waits (about 1,000 s at 1e-3/s: more than the deadline).
	p = newPacer(protocol.Settings{PointsPerSec: 1e-3, PointsBurst: 50})
	if err := p.wait(ctx, batch(500)); err != nil {
		t.Fatalf("batch over the burst: %v", err)
	}
	if got := p.points.Tokens(); math.Abs(got) > 0.1 {
		t.Fatalf("points left %v after a batch over the burst, want 0", got)
	}
	short, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := p.wait(short, batch(1)); err == nil {
		t.Fatal("an empty bucket let a batch through")
	}
}

func TestBurstOf(t *testing.T) {
	for _, c := range []struct {
		b    uint
		rate float64
		want int
	}{
		{0, 50, 50}, {0, 0.2, 1}, {200, 50, 200}, {^uint(0), 1, math.MaxInt32}, {0, 1e12, math.MaxInt32},
	} {
		if got := burstOf(c.b, c.rate); got != c.want {
			t.Errorf("burstOf(%d, %v) = %d, want %d", c.b, c.rate, got, c.want)
		}
	}
}

// TestPacingWaitEndsWithTheConnection: a link waiting out a pacing delay
// (the hub allows one message per 100 s) notices at once that the hub
// dropped the connection, and reconnects, instead of after the delay.
func TestPacingWaitEndsWithTheConnection(t *testing.T) {
	f := newFakeHub(t)
	f.msgsPerSec, f.dropAfterOne = 0.01, true
	sp := openSpool(t)
	appendN(t, sp, 3)
	_, stop := runLink(t, f, sp, "fwd_test")
	defer stop()
	eventually(t, "a second connection after the hub dropped the first mid-pacing", func() bool { return f.connections() >= 2 })
}
