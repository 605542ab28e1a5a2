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
// other consumers: while the broker is unreachable batches are dropped
// (counted), never queued without bound, and never slow down ingest.
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

func (b *Bridge) northbound(dev string, batch *protocol.Batch) {
	nb := b.cfg.Northbound
	if !b.client.IsConnectionOpen() {
		b.metrics.north.WithLabelValues("dropped").Inc()
		return
	}
	var data []byte
	var err error
	if nb.Format == payload.FormatCBOR {
		out := *batch
		out.Seq = 0 // the agent's sequence means nothing to other consumers
		data, err = protocol.Encode(&out)
	} else {
		data, err = payload.EncodeJSON(batch)
	}
	if err != nil {
		b.metrics.north.WithLabelValues("error").Inc()
		b.log.Warn("northbound encode", "device", dev, "err", err)
		return
	}
	// Not waiting for the broker's ack: the InfluxDB write is the one
	// that matters, and paho bounds nothing we wait on here.
	b.client.Publish(nb.Topic.Topic(dev), nb.QoS, false, data)
	b.metrics.north.WithLabelValues("published").Inc()
}
