package influx

import "github.com/prometheus/client_golang/prometheus"

// metrics are the sink's Prometheus instruments (names fleethub_influx_*).
type metrics struct {
	pointsWritten prometheus.Counter
	writeErrors   *prometheus.CounterVec // by kind: transient | rejected
	deadLetters   prometheus.Counter
	writeDuration prometheus.Histogram
	retries       prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		pointsWritten: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fleethub_influx_points_written_total",
			Help: "Points InfluxDB accepted.",
		}),
		writeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleethub_influx_write_errors_total",
			Help: "Failed InfluxDB write requests, by kind (transient: retried; rejected: invalid data, split and dead-lettered).",
		}, []string{"kind"}),
		deadLetters: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fleethub_influx_dead_letters_total",
			Help: "Points InfluxDB refused as invalid, kept as dead letters.",
		}),
		writeDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "fleethub_influx_write_duration_seconds",
			Help:    "Duration of one InfluxDB write request, successful or not.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15), // 1 ms .. 16 s
		}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fleethub_influx_retries_total",
			Help: "InfluxDB write requests retried after a transient failure.",
		}),
	}
	// Pre-create both kinds so dashboards see zeros, not missing series.
	m.writeErrors.WithLabelValues(kindTransient)
	m.writeErrors.WithLabelValues(kindRejected)
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.pointsWritten, m.writeErrors, m.deadLetters, m.writeDuration, m.retries} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Values of the kind label of write_errors_total.
const (
	kindTransient = "transient"
	kindRejected  = "rejected"
)
