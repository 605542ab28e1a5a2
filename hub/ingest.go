package hub

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"golang.org/x/sync/semaphore"
)

// IngestConfig sizes the ingest pipeline.
type IngestConfig struct {
	// QueuePoints bounds the points held in memory between the sessions and
	// the sink (queued or being written); Submit blocks beyond it. Points,
	// not batches: that is what memory is made of. Default 250,000.
	QueuePoints    int
	Workers        int // concurrent sink writes (default 2)
	MaxWritePoints int // points gathered into one sink write (default 5000)
}

func (c IngestConfig) withDefaults() IngestConfig {
	if c.QueuePoints <= 0 {
		c.QueuePoints = 250_000
	}
	if c.Workers <= 0 {
		c.Workers = 2
	}
	if c.MaxWritePoints <= 0 {
		c.MaxWritePoints = 5000
	}
	return c
}

// ingestItem is a queued batch and the callback that learns its fate.
type ingestItem struct {
	batch *IngestBatch
	done  func(error)
}

// Ingester is the bounded queue between device sessions and the telemetry
// sink. Workers gather queued batches of many devices into one sink write;
// each batch's done callback runs after the write that carried it returned,
// so a session can ack exactly what is stored.
type Ingester struct {
	cfg     IngestConfig
	sink    TelemetrySink
	queue   chan ingestItem
	room    *semaphore.Weighted // points that may still be queued
	log     *slog.Logger
	metrics *Metrics

	// quit ends blocked Submits when Close starts, so Close never waits
	// behind a Submit that waits for room.
	quit       context.Context
	cancelQuit context.CancelFunc

	// writeCtx is canceled when Close gives up on draining.
	writeCtx    context.Context
	cancelWrite context.CancelFunc

	mu     sync.RWMutex // guards closed against concurrent Submit
	closed bool
	wg     sync.WaitGroup
}

// ErrIngestClosed is returned by Submit after Close.
var ErrIngestClosed = errors.New("ingest closed")

// NewIngester starts cfg.Workers writer goroutines.
func NewIngester(cfg IngestConfig, sink TelemetrySink, m *Metrics, log *slog.Logger) *Ingester {
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	quit, cancelQuit := context.WithCancel(context.Background())
	in := &Ingester{
		cfg: cfg, sink: sink, log: log, metrics: m,
		queue:    make(chan ingestItem, min(cfg.QueuePoints, 1<<16)),
		room:     semaphore.NewWeighted(int64(cfg.QueuePoints)),
		writeCtx: ctx, cancelWrite: cancel,
		quit: quit, cancelQuit: cancelQuit,
	}
	for range cfg.Workers {
		in.wg.Add(1)
		go in.worker()
	}
	return in
}

// Submit queues a batch; done is called exactly once, from a worker
// goroutine, with nil when the batch is stored or the reason it is not.
// Submit blocks while QueuePoints are held (InfluxDB slow or down) until ctx
// ends or the ingester closes; that backpressure bounds the hub's memory.
func (in *Ingester) Submit(ctx context.Context, b *IngestBatch, done func(error)) error {
	in.mu.RLock()
	defer in.mu.RUnlock()
	if in.closed {
		return ErrIngestClosed
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(in.quit, cancel)
	defer stop()
	n := in.weight(b)
	if err := in.room.Acquire(ctx, n); err != nil {
		if in.quit.Err() != nil {
			return ErrIngestClosed
		}
		return err
	}
	item := ingestItem{batch: b, done: func(err error) {
		in.room.Release(n)
		done(err)
	}}
	select {
	case in.queue <- item:
		in.metrics.IngestQueue.Inc()
		return nil
	case <-ctx.Done():
		in.room.Release(n)
		if in.quit.Err() != nil {
			return ErrIngestClosed
		}
		return ctx.Err()
	}
}

// weight is the room a batch takes; a batch larger than the whole queue
// takes all of it rather than waiting forever.
func (in *Ingester) weight(b *IngestBatch) int64 {
	return int64(min(max(len(b.Batch.Points), 1), in.cfg.QueuePoints))
}

func (in *Ingester) worker() {
	defer in.wg.Done()
	items := make([]ingestItem, 0, 64)
	batches := make([]*IngestBatch, 0, 64)
	for first := range in.queue {
		items, batches = in.gather(first, items[:0], batches[:0])
		in.metrics.IngestQueue.Sub(float64(len(items)))
		err := in.sink.Write(in.writeCtx, batches)
		if err != nil {
			in.log.Warn("telemetry write abandoned", "batches", len(batches), "err", err)
		}
		for _, it := range items {
			it.done(err)
		}
		clear(batches) // drop references so stored batches can be collected
		clear(items)
	}
}

// gather takes first plus whatever else is queued, up to MaxWritePoints.
func (in *Ingester) gather(first ingestItem, items []ingestItem, batches []*IngestBatch) ([]ingestItem, []*IngestBatch) {
	items = append(items, first)
	batches = append(batches, first.batch)
	points := len(first.batch.Batch.Points)
	for points < in.cfg.MaxWritePoints {
		select {
		case it, ok := <-in.queue:
			if !ok {
				return items, batches
			}
			items = append(items, it)
			batches = append(batches, it.batch)
			points += len(it.batch.Batch.Points)
		default:
			return items, batches
		}
	}
	return items, batches
}

// Close stops accepting batches and writes what is queued. If ctx ends
// first, the pending writes are abandoned (their done callbacks get an
// error; the agents still hold those batches and resend them).
func (in *Ingester) Close(ctx context.Context) error {
	in.cancelQuit()
	in.mu.Lock()
	if !in.closed {
		in.closed = true
		close(in.queue)
	}
	in.mu.Unlock()
	drained := make(chan struct{})
	go func() { in.wg.Wait(); close(drained) }()
	select {
	case <-drained:
		in.cancelWrite()
		return nil
	case <-ctx.Done():
		in.cancelWrite()
		<-drained
		return ctx.Err()
	}
}
