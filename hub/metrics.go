package hub

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the core's Prometheus instruments (names fleethub_*).
type Metrics struct {
	Connections     prometheus.Gauge
	Connects        prometheus.Counter
	Closes          *prometheus.CounterVec // by close reason
	AuthFailures    *prometheus.CounterVec // by reason
	Messages        *prometheus.CounterVec // received, by type
	BadMessages     *prometheus.CounterVec // by reason
	Points          prometheus.Counter     // points received and validated
	Batches         prometheus.Counter
	AcksSent        prometheus.Counter
	AcksPending     prometheus.Gauge // batches received but not yet acked, all sessions
	IngestQueue     prometheus.Gauge
	SpoolDropped    prometheus.Counter // batches agents report their spools dropped
	StoredBatches   prometheus.Counter
	AbandonedWrites prometheus.Counter
	// Limited counts abuse-limit actions on devices: limit is
	// conns_per_addr, messages, points or flap; action is refused (HTTP
	// 429 before the upgrade), throttled (a message waited), closed
	// (ClosePolicy) or held (a flapping device's hold-off started).
	Limited         *prometheus.CounterVec
	ThrottleSeconds prometheus.Counter // time device sessions spent throttled
}

// NewMetrics creates the instruments and registers them on reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Connections:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "fleethub_device_connections", Help: "Open device sessions."}),
		Connects:        prometheus.NewCounter(prometheus.CounterOpts{Name: "fleethub_device_connects_total", Help: "Device sessions established."}),
		Closes:          prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleethub_device_closes_total", Help: "Device sessions closed, by reason."}, []string{"reason"}),
		AuthFailures:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleethub_device_auth_failures_total", Help: "Refused device upgrade requests, by reason."}, []string{"reason"}),
		Messages:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleethub_device_messages_total", Help: "Messages received from devices, by type."}, []string{"type"}),
		BadMessages:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleethub_device_bad_messages_total", Help: "Messages refused, by reason."}, []string{"reason"}),
		Points:          prometheus.NewCounter(prometheus.CounterOpts{Name: "fleethub_points_received_total", Help: "Telemetry points received and validated."}),
		Batches:         prometheus.NewCounter(prometheus.CounterOpts{Name: "fleethub_batches_received_total", Help: "Telemetry batches received and validated."}),
		AcksSent:        prometheus.NewCounter(prometheus.CounterOpts{Name: "fleethub_acks_sent_total", Help: "Ack messages sent to devices."}),
		AcksPending:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "fleethub_acks_pending", Help: "Batches received but not yet stored and acked."}),
		IngestQueue:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "fleethub_ingest_queue_batches", Help: "Batches waiting for an InfluxDB write."}),
		SpoolDropped:    prometheus.NewCounter(prometheus.CounterOpts{Name: "fleethub_agent_spool_dropped_batches_total", Help: "Batches agents report their full spools dropped."}),
		StoredBatches:   prometheus.NewCounter(prometheus.CounterOpts{Name: "fleethub_batches_stored_total", Help: "Batches stored in InfluxDB (or dead-lettered)."}),
		AbandonedWrites: prometheus.NewCounter(prometheus.CounterOpts{Name: "fleethub_batches_abandoned_total", Help: "Batches not stored because the hub shut down first (agents resend them)."}),
		Limited:         prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleethub_device_limited_total", Help: "Device abuse-limit actions, by limit (conns_per_addr, messages, points, flap) and action (refused, throttled, closed, held)."}, []string{"limit", "action"}),
		ThrottleSeconds: prometheus.NewCounter(prometheus.CounterOpts{Name: "fleethub_device_throttle_seconds_total", Help: "Seconds device sessions spent throttled by the per-device rate limits."}),
	}
	if reg != nil {
		reg.MustRegister(m.Connections, m.Connects, m.Closes, m.AuthFailures, m.Messages, m.BadMessages,
			m.Points, m.Batches, m.AcksSent, m.AcksPending, m.IngestQueue, m.SpoolDropped, m.StoredBatches, m.AbandonedWrites, m.Limited, m.ThrottleSeconds)
	}
	return m
}
