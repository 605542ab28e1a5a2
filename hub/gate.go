package hub

import (
	"context"
	"sync"
)

// Gate admits connections until it is closed, then lets shutdown wait for
// those inside to leave. The device and dashboard endpoints share it.
type Gate struct {
	mu     sync.Mutex
	closed bool
	inside sync.WaitGroup
}

// Enter admits the caller unless the gate is closed; an admitted caller
// must Leave.
func (g *Gate) Enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.inside.Add(1)
	return true
}

// Leave ends an Enter.
func (g *Gate) Leave() { g.inside.Done() }

// Close stops admitting. Idempotent.
func (g *Gate) Close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

// Closed reports whether Close was called.
func (g *Gate) Closed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

// Wait returns when every admitted caller has left, or ctx's error first.
func (g *Gate) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { g.inside.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
