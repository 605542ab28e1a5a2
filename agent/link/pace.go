package link

import (
	"context"
	"math"

	"golang.org/x/time/rate"

	"github.com/fleetwire/fleetwire/protocol"
)

// pacedShare is the share of each advertised rate the agent keeps to,
// leaving the hub's buckets room for network jitter bunching sends.
const pacedShare = 0.9

// pacer keeps one session's sends under the rate budget the hub
// advertised in its welcome (protocol.Settings keys 5-8), charged as the
// hub charges it: one message token per message, one point token per
// point with a batch at most the point burst. Paced, an agent resending a
// long spool after an outage goes at the budget's pace instead of being
// throttled and closed as abusive. A hub that advertises no budget gets
// no pacing.
type pacer struct {
	msgs, points *rate.Limiter // nil: no budget
	pointsBurst  int
}

func newPacer(s protocol.Settings) *pacer {
	p := &pacer{}
	if s.MsgsPerSec > 0 {
		p.msgs = rate.NewLimiter(rate.Limit(s.MsgsPerSec*pacedShare), burstOf(s.MsgsBurst, s.MsgsPerSec))
	}
	if s.PointsPerSec > 0 {
		p.pointsBurst = burstOf(s.PointsBurst, s.PointsPerSec)
		p.points = rate.NewLimiter(rate.Limit(s.PointsPerSec*pacedShare), p.pointsBurst)
	}
	return p
}

// burstOf is an advertised burst, or the hub's default for an absent one
// (the rate, at least 1), kept within an int on 32-bit devices.
func burstOf(b uint, perSec float64) int {
	if b == 0 {
		return int(max(1, min(perSec, math.MaxInt32)))
	}
	return int(min(b, math.MaxInt32))
}

// wait blocks until one more message, encoded as data, fits the budget.
// data that is not a batch costs a message token only.
func (p *pacer) wait(ctx context.Context, data []byte) error {
	if p.msgs != nil {
		if err := p.msgs.Wait(ctx); err != nil {
			return err
		}
	}
	if p.points == nil {
		return nil
	}
	n, ok := protocol.BatchPoints(data)
	if !ok && len(data) > 1 && data[1] == byte(protocol.TypeBatch) {
		n = p.pointsBurst // a batch we cannot count: assume the worst
	}
	if n = min(n, p.pointsBurst); n <= 0 {
		return nil
	}
	return p.points.WaitN(ctx, n)
}
