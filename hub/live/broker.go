// Package live is the hub's live broker: it fans validated telemetry and
// device presence out to dashboard subscribers, coalescing per subscriber so
// a slow browser costs bounded memory and never slows ingest, and keeps each
// device's recent window in memory for the device page's instant fill. It
// knows nothing of WebSocket or HTTP (hub/dashws adapts it).
package live

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetwire/fleetwire/protocol"
	wire "github.com/fleetwire/fleetwire/protocol/live"
)

// Errors returned to subscribers.
var (
	ErrTooManyTopics = errors.New("too many device subscriptions")
	ErrTooSlow       = errors.New("subscriber too slow")
	ErrClosed        = errors.New("subscriber closed")
)

// Config tunes the broker. Zero values take the defaults named per field.
type Config struct {
	// FlushInterval: at most one flush per subscriber this often, default
	// 15ms (about a display frame). A quiet subscriber is flushed at once;
	// a busy one gets its updates merged per interval.
	FlushInterval time.Duration
	// FleetInterval: the fleet summary (the overview table, read by people)
	// goes out at most this often, default 250ms; the first one, the
	// snapshot, at once. Device topics keep FlushInterval.
	FleetInterval    time.Duration
	QueueLen         int // encoded messages queued per subscriber, default 2*MaxDeviceTopics+8
	MaxPendingPoints int // device points buffered per subscriber before dropping, default 10,000
	MaxDeviceTopics  int // device subscriptions per subscriber, default 64
	// SlowAfter: a subscriber whose queue has stayed full for this long
	// (at every flush since) is disconnected as too slow, default 5s.
	SlowAfter time.Duration

	Window              time.Duration // recent window length, default 10m
	MaxSamplesPerSeries int           // default 2,000
	MaxSeriesPerDevice  int           // default 256
	MaxSeries           int           // all devices, default 200,000
	MaxSamples          int           // all series, default 10,000,000 (~160 MB of samples)
	SweepInterval       time.Duration // Run's sweep period, default 1m
	// KeyMetrics are summarised on the fleet topic. Default:
	// cpu.usage_percent, mem.used_percent, temp.celsius.
	KeyMetrics []string

	Clock      func() time.Time      // default time.Now
	Registerer prometheus.Registerer // nil: metrics not registered
}

func (c *Config) setDefaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur(&c.FlushInterval, 15*time.Millisecond)
	defDur(&c.FleetInterval, 250*time.Millisecond)
	def(&c.MaxPendingPoints, 10_000)
	def(&c.MaxDeviceTopics, 64)
	// One flush makes a message per subscribed device plus the fleet and
	// presence ones; a queue smaller than that would hold points back a
	// whole FlushInterval per overflow (measured: p99 671 ms with 16).
	def(&c.QueueLen, 2*c.MaxDeviceTopics+8)
	defDur(&c.SlowAfter, 5*time.Second)
	defDur(&c.Window, 10*time.Minute)
	def(&c.MaxSamplesPerSeries, 2_000)
	def(&c.MaxSeriesPerDevice, 256)
	def(&c.MaxSeries, 200_000)
	def(&c.MaxSamples, 10_000_000)
	defDur(&c.SweepInterval, time.Minute)
	if c.KeyMetrics == nil {
		c.KeyMetrics = []string{"cpu.usage_percent", "mem.used_percent", "temp.celsius"}
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
}

// Metrics are the broker's Prometheus instruments. Dashboard transports
// count their own disconnect reasons on Disconnects.
type Metrics struct {
	Subscribers prometheus.Gauge
	Dropped     *prometheus.CounterVec // by reason
	Disconnects *prometheus.CounterVec // by reason
}

func newMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Subscribers: prometheus.NewGauge(prometheus.GaugeOpts{Name: "fleethub_live_subscribers", Help: "Open live-stream subscribers (dashboard connections)."}),
		Dropped:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleethub_live_dropped_total", Help: "Live points or window samples dropped, by reason."}, []string{"reason"}),
		Disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleethub_live_disconnects_total", Help: "Live subscribers disconnected, by reason."}, []string{"reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.Subscribers, m.Dropped, m.Disconnects)
	}
	return m
}

// Broker fans telemetry out to subscribers and keeps the recent window.
//
// Lock order: winMu, then mu, then a Subscriber's mu. Publish holds winMu
// through the fan-out so that presence and values reach every subscriber in
// the order they happened (an offline event can't be overtaken by an older
// batch's summary). Every step under these locks is O(1) per point per
// subscriber and never waits on a connection.
type Broker struct {
	cfg     Config
	metrics *Metrics
	isKey   map[string]bool
	// flushGate, set by tests before any Subscribe, ends a flusher's rest
	// early so coalescing can be tested without timing.
	flushGate chan struct{}

	winMu    sync.Mutex
	devices  map[string]*deviceState
	nseries  int
	nsamples int

	mu         sync.RWMutex
	fleetSubs  map[*Subscriber]struct{}
	deviceSubs map[string]map[*Subscriber]struct{}
}

// New returns a broker. Call Run to have idle devices' windows swept.
func New(cfg Config) *Broker {
	cfg.setDefaults()
	b := &Broker{
		cfg: cfg, metrics: newMetrics(cfg.Registerer), isKey: make(map[string]bool),
		devices:    make(map[string]*deviceState),
		fleetSubs:  make(map[*Subscriber]struct{}),
		deviceSubs: make(map[string]map[*Subscriber]struct{}),
	}
	for _, k := range cfg.KeyMetrics {
		b.isKey[k] = true
	}
	return b
}

// Metrics returns the broker's instruments.
func (b *Broker) Metrics() *Metrics { return b.metrics }

// Window is the recent window's length.
func (b *Broker) Window() time.Duration { return b.cfg.Window }

// Run sweeps the recent window every SweepInterval until ctx ends.
func (b *Broker) Run(ctx context.Context) error {
	t := time.NewTicker(b.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			b.Sweep()
		}
	}
}

func (b *Broker) device(id string) *deviceState {
	d := b.devices[id]
	if d == nil {
		d = &deviceState{metrics: make(map[string]float64), series: make(map[string]*series)}
		b.devices[id] = d
	}
	return d
}

// Publish takes a validated batch of deviceID: it updates the recent
// window and queues the batch for subscribers. It is O(points x
// subscribers of the device) and never blocks on a subscriber; a slow one
// loses points (counted) or is disconnected by its own flusher.
func (b *Broker) Publish(deviceID string, batch *protocol.Batch) {
	if batch == nil || len(batch.Points) == 0 {
		return
	}
	now := b.cfg.Clock()
	drops := make(map[string]int)
	b.winMu.Lock()
	defer func() {
		b.winMu.Unlock()
		for reason, n := range drops {
			b.metrics.Dropped.WithLabelValues(reason).Add(float64(n))
		}
	}()
	d := b.device(deviceID)
	b.mu.RLock()
	defer b.mu.RUnlock()
	dsubs := b.deviceSubs[deviceID]
	var pts []wire.Point
	if len(dsubs) > 0 {
		pts = make([]wire.Point, 0, len(batch.Points))
	}
	untaggedKey := make(map[string]bool)
	for i := range batch.Points {
		p := &batch.Points[i]
		t := batch.BaseTime + p.DT
		tags := mergeTags(batch.Tags, p.Tags)
		if pts != nil {
			pts = append(pts, wire.Point{Name: p.Name, T: t, V: p.Value, Tags: tags})
		}
		d.lastSeen = max(d.lastSeen, t)
		v, ok := numeric(p.Value)
		if !ok {
			continue
		}
		if r := b.addSample(d, seriesKey(p.Name, tags), p.Name, tags, sample{t, v}, now); r != "" {
			drops[r]++
		}
		if b.isKey[p.Name] {
			b.keyValue(d, p.Name, v, len(tags) == 0, untaggedKey)
		}
	}
	// Every batch moves last_seen, so fleet subscribers always hear of it.
	if len(b.fleetSubs) > 0 {
		e := d.summary(deviceID)
		for s := range b.fleetSubs {
			s.addFleet(e)
		}
	}
	for s := range dsubs {
		if n := s.addPoints(deviceID, pts); n > 0 {
			drops["slow_subscriber"] += n
		}
	}
}

// keyValue updates a key metric's summary value. Within one batch an
// untagged point wins (cpu.usage_percent of the whole machine over one
// core); among tagged points only, the highest wins (the hottest thermal
// zone is the temperature worth showing on an overview).
func (b *Broker) keyValue(d *deviceState, name string, v float64, untagged bool, seenUntagged map[string]bool) {
	_, seen := seenUntagged[name]
	switch {
	case untagged:
		seenUntagged[name] = true
	case seen && seenUntagged[name]:
		return
	case seen && v <= d.metrics[name]:
		return
	default:
		seenUntagged[name] = false
	}
	d.metrics[name] = v
}

func mergeTags(batch, point map[string]string) map[string]string {
	switch {
	case len(batch) == 0:
		return point
	case len(point) == 0:
		return batch
	}
	m := make(map[string]string, len(batch)+len(point))
	for k, v := range batch {
		m[k] = v
	}
	for k, v := range point {
		m[k] = v // a point's own tag overrides the batch's
	}
	return m
}

// DeviceState records that deviceID came online or went offline (the
// registry calls it on register and unregister) and tells subscribers.
func (b *Broker) DeviceState(deviceID string, online bool) {
	b.winMu.Lock()
	defer b.winMu.Unlock()
	d := b.device(deviceID)
	d.online = online
	b.mu.RLock()
	defer b.mu.RUnlock()
	if len(b.fleetSubs) > 0 {
		e := d.summary(deviceID)
		for s := range b.fleetSubs {
			s.addFleet(e)
		}
	}
	for s := range b.deviceSubs[deviceID] {
		s.addState(wire.DeviceState{Type: wire.TypeDeviceState, ID: deviceID, Online: online})
	}
}
