package mqtt

import "github.com/prometheus/client_golang/prometheus"

// Refusal reasons, the label of fleethub_mqtt_refused_total.
const (
	reasonBadTopic      = "bad_topic"      // matches no template, or the device level is not an id
	reasonUnknownDevice = "unknown_device" // not registered (and auto_create off)
	reasonRevoked       = "revoked"
	reasonOversize      = "oversize"
	reasonMalformed     = "malformed"  // payload does not decode or validate
	reasonInjection     = "injection"  // names another device than its topic
	reasonBadStatus     = "bad_status" // status payload neither online nor offline
	reasonBadResult     = "bad_result" // result payload does not decode
	reasonUnknownCmd    = "unknown_command"
	reasonRate          = "rate" // telemetry over its device's budget (Config.Rate)
)

// metrics are the bridge's Prometheus instruments (fleethub_mqtt_*).
type metrics struct {
	connected       prometheus.Gauge
	connects        prometheus.Counter
	connectFailures prometheus.Counter
	messages        *prometheus.CounterVec // received, by kind
	refused         *prometheus.CounterVec // by reason
	points          prometheus.Counter     // stored
	duplicates      prometheus.Counter
	pending         prometheus.Gauge
	overflows       prometheus.Counter
	commands        prometheus.Counter
	north           *prometheus.CounterVec // by outcome
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		connected:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "fleethub_mqtt_connected", Help: "1 while the bridge is connected to the broker."}),
		connects:        prometheus.NewCounter(prometheus.CounterOpts{Name: "fleethub_mqtt_connects_total", Help: "Connections made to the broker (reconnects included)."}),
		connectFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "fleethub_mqtt_connect_failures_total", Help: "Failed attempts to connect to a broker (each is retried)."}),
		messages:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleethub_mqtt_messages_total", Help: "MQTT messages received, by kind (telemetry, status, result, other)."}, []string{"kind"}),
		refused:         prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleethub_mqtt_refused_total", Help: "MQTT messages refused (acked and dropped), by reason."}, []string{"reason"}),
		points:          prometheus.NewCounter(prometheus.CounterOpts{Name: "fleethub_mqtt_points_stored_total", Help: "Points from MQTT devices stored in InfluxDB."}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{Name: "fleethub_mqtt_duplicates_total",
			Help: "Redelivered messages (DUP) already stored: acked, not written again."}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "fleethub_mqtt_pending_messages", Help: "Messages received and not yet acked to the broker."}),
		overflows: prometheus.NewCounter(prometheus.CounterOpts{Name: "fleethub_mqtt_overflows_total",
			Help: "Messages left unacked because max_pending was reached (the bridge reconnects so the broker sends them again)."}),
		commands: prometheus.NewCounter(prometheus.CounterOpts{Name: "fleethub_mqtt_commands_published_total", Help: "Commands published to device command topics and acked by the broker."}),
		north:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleethub_mqtt_northbound_total", Help: "Northbound batches, by outcome (published, dropped, error)."}, []string{"outcome"}),
	}
	for _, r := range []string{reasonBadTopic, reasonUnknownDevice, reasonRevoked, reasonOversize, reasonMalformed,
		reasonInjection, reasonBadStatus, reasonBadResult, reasonUnknownCmd, reasonRate} {
		m.refused.WithLabelValues(r) // every reason present from the start, at 0
	}
	if reg != nil {
		reg.MustRegister(m.connected, m.connects, m.connectFailures, m.messages, m.refused, m.points, m.duplicates, m.pending,
			m.overflows, m.commands, m.north)
	}
	return m
}
