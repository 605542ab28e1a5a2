package link

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is capped exponential backoff with full jitter: the n-th wait is
// uniform in [0, min(Max, Min*2^n)). Full jitter spreads a fleet's
// reconnects after a hub restart instead of synchronising them.
type Backoff struct {
	Min, Max time.Duration
	// Rand returns a float in [0,1); tests inject a fixed source.
	Rand func() float64
	n    int
}

// Next returns the next wait and advances the attempt counter.
func (b *Backoff) Next() time.Duration {
	ceil := b.Min
	for i := 0; i < b.n && ceil < b.Max; i++ {
		ceil *= 2
	}
	if ceil > b.Max {
		ceil = b.Max
	}
	b.n++
	r := b.Rand
	if r == nil {
		r = rand.Float64
	}
	return time.Duration(r() * float64(ceil))
}

// Reset starts over after a healthy session.
func (b *Backoff) Reset() { b.n = 0 }

// sleep waits d or until ctx ends; it reports whether the wait completed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
