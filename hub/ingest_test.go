package hub

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/protocol"
)

// heldSink blocks every write until release is closed.
type heldSink struct{ release chan struct{} }

func (s heldSink) Write(ctx context.Context, _ []*IngestBatch) error {
	select {
	case <-s.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func pts(n int) *IngestBatch {
	return &IngestBatch{DeviceID: "d", Batch: protocol.SampleBatch(1, n)}
}

func TestSubmitBlocksAtPointBound(t *testing.T) {
	sink := heldSink{release: make(chan struct{})}
	in := NewIngester(IngestConfig{QueuePoints: 100, Workers: 1}, sink, NewMetrics(nil), nil)
	stored := make(chan error, 10)
	done := func(err error) { stored <- err }
	// Exactly at the bound: accepted without waiting.
	for i := 0; i < 2; i++ {
		if err := in.Submit(context.Background(), pts(50), done); err != nil {
			t.Fatal(err)
		}
	}
	// One point past it: blocks until ctx ends.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := in.Submit(ctx, pts(1), done); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Submit past the bound: %v, want deadline exceeded", err)
	}
	// Storing frees the room.
	close(sink.release)
	for i := 0; i < 2; i++ {
		if err := <-stored; err != nil {
			t.Fatal(err)
		}
	}
	if err := in.Submit(context.Background(), pts(100), done); err != nil {
		t.Fatalf("after room was freed: %v", err)
	}
	// A batch larger than the whole queue takes all of it instead of
	// waiting forever.
	<-stored
	if err := in.Submit(context.Background(), pts(500), done); err != nil {
		t.Fatalf("oversized batch: %v", err)
	}
	<-stored
	if err := in.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestCloseEndsBlockedSubmit(t *testing.T) {
	sink := heldSink{release: make(chan struct{})}
	in := NewIngester(IngestConfig{QueuePoints: 10, Workers: 1}, sink, NewMetrics(nil), nil)
	var results []error
	done := func(err error) { results = append(results, err) }
	if err := in.Submit(context.Background(), pts(10), done); err != nil {
		t.Fatal(err)
	}
	blocked := make(chan error, 1)
	go func() { blocked <- in.Submit(context.Background(), pts(5), done) }()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	// The write never finishes: Close gives up at ctx's deadline, the
	// blocked Submit returns ErrIngestClosed, the queued batch fails.
	if err := in.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close: %v", err)
	}
	if err := <-blocked; !errors.Is(err, ErrIngestClosed) {
		t.Fatalf("blocked Submit: %v, want ErrIngestClosed", err)
	}
	if len(results) != 1 || results[0] == nil {
		t.Fatalf("queued batch result %v, want one error", results)
	}
	if err := in.Submit(context.Background(), pts(1), done); !errors.Is(err, ErrIngestClosed) {
		t.Fatalf("Submit after Close: %v", err)
	}
}
