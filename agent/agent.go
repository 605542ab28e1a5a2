// Package agent is the core of fleetagent: every interval it runs the
// collectors, stores the points as one durable batch in the spool, and lets
// the link ship the spool to the hub.
package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/fleetwire/fleetwire/agent/collect"
	"github.com/fleetwire/fleetwire/protocol"
)

// Spool is where batches wait for the hub's ack.
type Spool interface {
	Append(b *protocol.Batch) (uint64, error)
}

// Options configure the batcher.
type Options struct {
	Interval  time.Duration // default 10s
	MaxPoints int           // points per batch; larger collections are split (default 1000)
	// HubMaxPoints, if set, returns the hub's limit on points per batch
	// (0: not known yet); batches are split to the smaller of the two.
	HubMaxPoints func() int
	Collectors   []collect.Collector
	Spool        Spool
	Logger       *slog.Logger
	// OnSpooled, if set, sees each batch after it is durably spooled (tests,
	// fleetsim accounting). It must not keep b.
	OnSpooled func(b *protocol.Batch)
	Now       func() time.Time
}

// Batcher collects on a ticker and spools the result.
type Batcher struct {
	opt      Options
	interval chan time.Duration // SetInterval -> Run
	now      chan struct{}      // CollectNow -> Run
	// errLog limits collector error logs to one per collector per 10 min:
	// a broken sensor must not flood an SD card with logs. mu guards it
	// and lastMs.
	mu     sync.Mutex
	errLog map[string]time.Time
	lastMs int64 // time given to the latest collection (stamp), Unix ms
}

// NewBatcher checks opt and returns a Batcher.
func NewBatcher(opt Options) (*Batcher, error) {
	if opt.Interval <= 0 {
		opt.Interval = 10 * time.Second
	}
	if opt.MaxPoints <= 0 {
		opt.MaxPoints = 1000
	}
	if opt.Spool == nil {
		return nil, errors.New("agent: spool required")
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	return &Batcher{opt: opt, errLog: make(map[string]time.Time),
		interval: make(chan time.Duration, 1), now: make(chan struct{}, 1)}, nil
}

// Run collects once at start and then every interval until ctx ends.
func (b *Batcher) Run(ctx context.Context) error {
	t := time.NewTicker(b.opt.Interval)
	defer t.Stop()
	defer b.closeCollectors()
	for {
		if err := b.CollectOnce(ctx); err != nil {
			b.opt.Logger.Error("spool batch", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		case <-b.now:
		case d := <-b.interval:
			t.Reset(d)
			b.opt.Logger.Info("collection interval changed", "interval", d)
		}
	}
}

// SetInterval changes the collection interval of a running batcher (until
// the agent restarts; the config file is not changed).
func (b *Batcher) SetInterval(d time.Duration) error {
	if d < 100*time.Millisecond {
		return errors.New("interval must be at least 100ms")
	}
	select {
	case b.interval <- d:
		return nil
	default:
		return errors.New("an interval change is already pending")
	}
}

// CollectNow makes a running batcher collect at once.
func (b *Batcher) CollectNow() {
	select {
	case b.now <- struct{}{}:
	default: // one pending trigger is enough
	}
}

// CollectOnce runs every collector (each bounded by the interval) and spools
// the points stamped with the collection time.
func (b *Batcher) CollectOnce(ctx context.Context) error {
	now := b.opt.Now()
	cctx, cancel := context.WithTimeout(ctx, b.opt.Interval)
	defer cancel()
	var points []protocol.Point
	for _, c := range b.opt.Collectors {
		pts, err := c.Collect(cctx)
		points = append(points, pts...)
		if err != nil {
			b.logCollectErr(c.Name(), err)
		}
	}
	return b.spool(now, points)
}

// stamp returns the time, in Unix milliseconds, of a collection made at
// now. InfluxDB keeps one point per series and millisecond, so two
// collections in the same millisecond (a CollectNow just after a tick,
// ticks bunched behind a stalled collection) would overwrite each other:
// a collection at or up to a second before the previous one's time gets
// the millisecond after it. A clock stepped back further is taken as it
// is.
func (b *Batcher) stamp(now time.Time) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	ms := now.UnixMilli()
	if ms <= b.lastMs && b.lastMs-ms < 1000 {
		ms = b.lastMs + 1
	}
	b.lastMs = ms
	return ms
}

func (b *Batcher) spool(now time.Time, points []protocol.Point) error {
	ms := b.stamp(now)
	limit := b.opt.MaxPoints
	if b.opt.HubMaxPoints != nil {
		if h := b.opt.HubMaxPoints(); h > 0 {
			limit = min(limit, h)
		}
	}
	for len(points) > 0 {
		n := min(len(points), limit)
		batch := &protocol.Batch{BaseTime: ms, Points: points[:n]}
		if _, err := b.opt.Spool.Append(batch); err != nil {
			return err
		}
		if b.opt.OnSpooled != nil {
			b.opt.OnSpooled(batch)
		}
		// Parts share the time: one collection has each series only once,
		// so they cannot overwrite each other in InfluxDB.
		points = points[n:]
	}
	return nil
}

// closeCollectors stops collectors that hold resources (exec collectors
// kill a running script).
func (b *Batcher) closeCollectors() {
	for _, c := range b.opt.Collectors {
		if cl, ok := c.(io.Closer); ok {
			if err := cl.Close(); err != nil {
				b.opt.Logger.Warn("close collector", "collector", c.Name(), "err", err)
			}
		}
	}
}

func (b *Batcher) logCollectErr(name string, err error) {
	b.mu.Lock()
	last, ok := b.errLog[name]
	now := b.opt.Now()
	quiet := ok && now.Sub(last) < 10*time.Minute
	if !quiet {
		b.errLog[name] = now
	}
	b.mu.Unlock()
	if !quiet {
		b.opt.Logger.Warn("collector failed", "collector", name, "err", err)
	}
}
