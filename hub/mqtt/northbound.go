package mqtt

import (
	"context"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/hub/mqtt/payload"
	"github.com/fleetwire/fleetwire/hub/store"
	"github.com/fleetwire/fleetwire/protocol"
)

// Sink wraps the telemetry sink: with Northbound configured, every batch
// of an agent (WebSocket) device is republished to the broker once next
// accepted it; without, it returns next. Republishing is best effort for
// other consumers: while the broker is unreachable or slow, batches are
// dropped (counted) past a small queue, and ingest never waits for it.
func (b *Bridge) Sink(next hub.TelemetrySink) hub.TelemetrySink {
	if b.cfg.Northbound == nil {
		return next
	}
	return northSink{b: b, next: next}
}

type northSink struct {
	b    *Bridge
	next hub.TelemetrySink
}

func (n northSink) Write(ctx context.Context, batches []*hub.IngestBatch) error {
	if err := n.next.Write(ctx, batches); err != nil {
		return err
	}
	for _, ib := range batches {
		if ib.Transport != store.TransportMQTT { // the bridge's own batches came from the broker
			n.b.northbound(ib.DeviceID, ib.Batch)
		}
	}
	return nil
}

// northItem is one agent batch to republish.
type northItem struct {
	dev   string
	batch *protocol.Batch
}

// northbound queues a batch for the northbounder without blocking: the
// ingester's workers call it, and they serve every device.
func (b *Bridge) northbound(dev string, batch *protocol.Batch) {
	select {
	case b.north <- northItem{dev, batch}:
	default:
		b.metrics.north.WithLabelValues("dropped").Inc()
	}
}

// northbounder publishes the queued batches.
func (b *Bridge) northbounder() {
	defer b.wg.Done()
	for {
		select {
		case <-b.ctx.Done():
			return
		case it := <-b.north:
			b.publishNorth(it)
		}
	}
}

func (b *Bridge) publishNorth(it northItem) {
	nb := b.cfg.Northbound
	c := b.conn()
	if !c.IsConnectionOpen() {
		b.metrics.north.WithLabelValues("dropped").Inc()
		return
	}
	var data []byte
	var err error
	if nb.Format == payload.FormatCBOR {
		out := *it.batch
		out.Seq = 0 // the agent's sequence means nothing to other consumers
		data, err = protocol.Encode(&out)
	} else {
		data, err = payload.EncodeJSON(it.batch)
	}
	if err != nil {
		b.metrics.north.WithLabelValues("error").Inc()
		b.log.Warn("northbound encode", "device", it.dev, "err", err)
		return
	}
	// Not waiting for the broker's ack: the InfluxDB write is the one that
	// matters; paho's write timeout bounds a stalled broker.
	c.Publish(nb.Topic.Topic(it.dev), nb.QoS, false, data)
	b.metrics.north.WithLabelValues("published").Inc()
}
