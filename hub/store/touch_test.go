package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/hub"
)

// Many concurrent touches (a reconnect storm) share transactions, yet each
// caller gets its own row's result: unknown devices ErrNotFound, the rest
// stored.
func TestTouchGroupCommit(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	const devices = 300
	for i := range devices {
		mustCreate(t, s, fmt.Sprintf("d-%03d", i), nil)
	}
	var wg sync.WaitGroup
	errs := make([]error, devices+50)
	for i := range errs {
		id := fmt.Sprintf("d-%03d", i) // the last 50 do not exist
		wg.Go(func() { errs[i] = s.TouchDevice(ctx, id, time.Unix(1_700_000_000+int64(i), 0), fmt.Sprintf("v%d", i)) })
	}
	wg.Wait()
	for i, err := range errs {
		if i < devices && err != nil {
			t.Errorf("touch d-%03d: %v", i, err)
		}
		if i >= devices && !errors.Is(err, hub.ErrNotFound) {
			t.Errorf("touch unknown d-%03d: %v; want ErrNotFound", i, err)
		}
	}
	for _, i := range []int{0, 150, devices - 1} {
		d, err := s.GetDevice(ctx, fmt.Sprintf("d-%03d", i))
		if err != nil {
			t.Fatal(err)
		}
		if d.LastSeen == nil || d.LastSeen.Unix() != 1_700_000_000+int64(i) || d.AgentVersion != fmt.Sprintf("v%d", i) {
			t.Errorf("d-%03d: last seen %v, version %q", i, d.LastSeen, d.AgentVersion)
		}
	}
}

func TestTouchAfterCloseAndCancel(t *testing.T) {
	s, _ := openTest(t)
	mustCreate(t, s, "pi-01", nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// A cancelled caller does not wait; whether its update lands is the
	// group's business, but it must return the context's error or success.
	if err := s.TouchDevice(ctx, "pi-01", time.Now(), "1"); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled touch: %v", err)
	}
	s.Close()
	if err := s.TouchDevice(context.Background(), "pi-01", time.Now(), "1"); !errors.Is(err, errStoreClosed) {
		t.Fatalf("touch after close: %v; want errStoreClosed", err)
	}
}
