package hub

import (
	"context"
	"errors"
	"log/slog"
	"sync"
)

// IngestConfig sizes the ingest pipeline.
type IngestConfig struct {
	QueueBatches   int // batches waiting for a writer; Submit blocks beyond it (default 4096)
	Workers        int // concurrent sink writes (default 2)
	MaxWritePoints int // points gathered into one sink write (default 5000)
}

func (c IngestConfig) withDefaults() IngestConfig {
	if c.QueueBatches <= 0 {
		c.QueueBatches = 4096
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
	log     *slog.Logger
	metrics *Metrics

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
	in := &Ingester{
		cfg: cfg, sink: sink, log: log, metrics: m,
		queue:    make(chan ingestItem, cfg.QueueBatches),
		writeCtx: ctx, cancelWrite: cancel,
	}
	for range cfg.Workers {
		in.wg.Add(1)
		go in.worker()
	}
	return in
}

// Submit queues a batch; done is called exactly once, from a worker
// goroutine, with nil when the batch is stored or the reason it is not.
// Submit blocks while the queue is full (InfluxDB slow or down) until ctx ends;
// that backpressure is what bounds the hub's memory.
func (in *Ingester) Submit(ctx context.Context, b *IngestBatch, done func(error)) error {
	in.mu.RLock()
	defer in.mu.RUnlock()
	if in.closed {
		return ErrIngestClosed
	}
	select {
	case in.queue <- ingestItem{batch: b, done: done}:
		in.metrics.IngestQueue.Inc()
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
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
