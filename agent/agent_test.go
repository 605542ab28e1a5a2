package agent

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/agent/collect"
	"github.com/fleetwire/fleetwire/agent/spool"
	"github.com/fleetwire/fleetwire/protocol"
)

type fixed struct {
	n   int
	err error
}

func (f fixed) Name() string { return "fixed" }
func (f fixed) Collect(context.Context) ([]protocol.Point, error) {
	pts := make([]protocol.Point, f.n)
	for i := range pts {
		pts[i] = protocol.Point{Name: "x.v", Value: int64(i), Tags: map[string]string{"i": string(rune('a' + i%26))}}
	}
	return pts, f.err
}

func TestCollectOnceSplitsAtMaxPoints(t *testing.T) {
	sp, err := spool.Open(t.TempDir(), spool.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	now := time.UnixMilli(1_700_000_000_123)
	var seen []*protocol.Batch
	b, err := NewBatcher(Options{
		MaxPoints: 10, Collectors: []collect.Collector{fixed{n: 25, err: errors.New("one sensor failed")}}, Spool: sp,
		Now:       func() time.Time { return now },
		OnSpooled: func(b *protocol.Batch) { c := *b; seen = append(seen, &c) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.CollectOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 3 || len(seen[0].Points) != 10 || len(seen[2].Points) != 5 {
		t.Fatalf("split into %d batches", len(seen))
	}
	for i, s := range seen {
		if s.BaseTime != now.UnixMilli() || s.Seq != uint64(i+1) {
			t.Fatalf("batch %d: time %d seq %d", i, s.BaseTime, s.Seq)
		}
	}
	if st := sp.Stats(); st.Batches != 3 {
		t.Fatalf("spool holds %d batches", st.Batches)
	}
	// A collector error still spools the points it returned.
	if n := len(seen[0].Points) + len(seen[1].Points) + len(seen[2].Points); n != 25 {
		t.Fatalf("%d points spooled, want 25", n)
	}
}

func TestNeedsSpool(t *testing.T) {
	if _, err := NewBatcher(Options{}); err == nil {
		t.Fatal("batcher without spool accepted")
	}
}

func TestHubLimitSplitsSmaller(t *testing.T) {
	sp, err := spool.Open(t.TempDir(), spool.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	var sizes []int
	b, err := NewBatcher(Options{
		MaxPoints: 10, HubMaxPoints: func() int { return 4 }, Collectors: []collect.Collector{fixed{n: 10}}, Spool: sp,
		OnSpooled: func(b *protocol.Batch) { sizes = append(sizes, len(b.Points)) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.CollectOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(sizes) != 3 || sizes[0] != 4 || sizes[2] != 2 {
		t.Fatalf("batch sizes %v, want [4 4 2]", sizes)
	}
}

// counting counts collections.
type counting struct{ n chan struct{} }

func (c counting) Name() string { return "counting" }
func (c counting) Collect(context.Context) ([]protocol.Point, error) {
	c.n <- struct{}{}
	return []protocol.Point{{Name: "x.v", Value: int64(1)}}, nil
}

func TestCollectNowAndSetInterval(t *testing.T) {
	sp, err := spool.Open(t.TempDir(), spool.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	c := counting{n: make(chan struct{}, 100)}
	b, err := NewBatcher(Options{Interval: time.Hour, Collectors: []collect.Collector{c}, Spool: sp})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	<-c.n // the collection at start
	b.CollectNow()
	select {
	case <-c.n:
	case <-time.After(5 * time.Second):
		t.Fatal("CollectNow did not collect")
	}
	if err := b.SetInterval(time.Millisecond); err == nil {
		t.Fatal("1ms interval accepted")
	}
	if err := b.SetInterval(100 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ { // the hour-long ticker was replaced
		select {
		case <-c.n:
		case <-time.After(5 * time.Second):
			t.Fatal("new interval not applied")
		}
	}
	cancel()
	<-done
}

// TestCollectionsNeverShareAMillisecond: collections made in the same
// millisecond, or a little before the previous one's time, each get a
// later millisecond, so none overwrites another in InfluxDB; a clock
// stepped back by more than a second is followed.
func TestCollectionsNeverShareAMillisecond(t *testing.T) {
	sp, err := spool.Open(t.TempDir(), spool.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	const t0 = 1_700_000_000_123
	clock := []int64{t0, t0, t0, t0 - 2, t0 + 10, t0 - 5000}
	want := []int64{t0, t0 + 1, t0 + 2, t0 + 3, t0 + 10, t0 - 5000}
	var got []int64
	i := 0
	b, err := NewBatcher(Options{
		Collectors: []collect.Collector{fixed{n: 1}}, Spool: sp,
		Now:       func() time.Time { i++; return time.UnixMilli(clock[i-1]) },
		OnSpooled: func(b *protocol.Batch) { got = append(got, b.BaseTime) },
	})
	if err != nil {
		t.Fatal(err)
	}
	for range clock {
		if err := b.CollectOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("batch times %v, want %v", got, want)
	}
}
