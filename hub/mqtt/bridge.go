// Package mqtt is fleethub's MQTT bridge: it joins a broker with
// eclipse/paho.mqtt.golang and makes MQTT-only devices first-class members
// of the fleet (registry, InfluxDB schema, live stream, commands).
//
// Delivery: the bridge holds a persistent QoS 1 session and acks a
// telemetry message to the broker only after InfluxDB accepted its points,
// so a hub or InfluxDB outage loses nothing the broker holds. The paho
// handler never blocks: it hands messages to the bridge's workers through a
// bounded queue, and the workers' wait for InfluxDB is the backpressure.
// protocol/MQTT.md is the device-facing contract.
package mqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/hub/mqtt/payload"
	"github.com/fleetwire/fleetwire/protocol"
)

// Route says how telemetry on the topics of Template is encoded.
type Route struct {
	Topic  Template
	Format payload.Format
}

// Store is what the bridge needs of the device registry (hub/store).
type Store interface {
	GetDevice(ctx context.Context, id string) (hub.Device, error)
	CreateDevice(ctx context.Context, id string, labels map[string]string) (hub.Device, string, error)
	TouchDevice(ctx context.Context, id string, seen time.Time, agentVersion string) error
	SetDeviceTransport(ctx context.Context, id, transport string) error
}

// Ingester takes validated batches to InfluxDB (hub.Ingester).
type Ingester interface {
	Submit(ctx context.Context, b *hub.IngestBatch, done func(error)) error
}

// Commands is the part of hub.CommandService the bridge drives.
type Commands interface {
	HandleResult(ctx context.Context, deviceID string, r *protocol.CommandResult) error
	DeviceConnected(deviceID string)
}

// Live fans telemetry out to dashboards (hub/live.Broker); Publish must
// not block.
type Live interface {
	Publish(deviceID string, b *protocol.Batch)
}

// Northbound republishes the telemetry of agent (WebSocket) devices.
type Northbound struct {
	Topic  Template       // e.g. "fleetwire/northbound/{device}/telemetry"
	Format payload.Format // FormatJSON or FormatCBOR
	QoS    byte           // 0 or 1
}

// Config configures a Bridge. Brokers, ClientID, Store, Registry,
// Ingester and Commands are required; zero values elsewhere take the
// defaults noted.
type Config struct {
	Brokers  []string // tcp://, ssl://, ws://, wss:// URLs; several = failover
	ClientID string   // the persistent session's id: keep it stable
	Username string
	Password string
	TLS      *tls.Config // for ssl:// and wss:// brokers

	KeepAlive      time.Duration // default 30s
	ConnectTimeout time.Duration // default 10s
	MaxReconnect   time.Duration // longest wait between attempts, default 30s

	Telemetry    []Route  // default: fleetwire/{device}/telemetry, auto
	StatusTopic  Template // default fleetwire/{device}/status
	CommandTopic Template // default fleetwire/{device}/commands
	ResultTopic  Template // default fleetwire/{device}/results
	// CommandFormat encodes commands: "json" (default) or "cbor" (the
	// protocol's command message).
	CommandFormat payload.Format

	// AutoCreate registers unknown device ids on their first message, with
	// AutoCreateLabels. Off: they are refused and counted.
	AutoCreate       bool
	AutoCreateLabels map[string]string

	// PresenceTimeout: a device that never announced itself online on its
	// status topic is offline this long after its last message. Default 5m.
	PresenceTimeout time.Duration
	// MaxPayloadBytes refuses larger payloads; default and at most
	// payload.MaxPayloadBytes.
	MaxPayloadBytes int
	// MaxPending and MaxPendingBytes bound the messages (and their
	// payload bytes) received and not yet acked. Past either, messages stay
	// unacked and, once those in hand are stored, the bridge reconnects to
	// have the broker send them again. Brokers bound the unacked QoS 1
	// messages they send a client only loosely (Mosquitto's
	// max_inflight_messages does not hold while acks flow), so these are
	// the bridge's own memory bound. Defaults 10,000 and 64 MiB.
	MaxPending      int
	MaxPendingBytes int
	Workers         int // messages processed at once, default 4
	Limits          protocol.Limits
	// Rate is each device's telemetry budget (messages and points, as for
	// agents). The hub cannot slow an MQTT publisher down, so a message
	// over it is refused (acked and dropped); refused messages are not
	// charged. CloseAfter does not apply. Zero rates: no budget.
	Rate hub.RateLimit

	// Northbound, if set, republishes agent devices' telemetry (see
	// Bridge.Sink).
	Northbound *Northbound

	Store       Store
	Registry    *hub.Registry
	Ingester    Ingester
	Commands    Commands
	Live        Live                // optional
	DeadLetters hub.DeadLetterStore // optional: invalid payloads of known devices
	Registerer  prometheus.Registerer
	Logger      *slog.Logger
	Clock       func() time.Time
}

// Default topics.
var (
	DefaultTelemetry = MustTemplate("fleetwire/{device}/telemetry")
	DefaultStatus    = MustTemplate("fleetwire/{device}/status")
	DefaultCommands  = MustTemplate("fleetwire/{device}/commands")
	DefaultResults   = MustTemplate("fleetwire/{device}/results")
)

func (c *Config) setDefaults() {
	if len(c.Telemetry) == 0 {
		c.Telemetry = []Route{{Topic: DefaultTelemetry, Format: payload.FormatAuto}}
	}
	for p, d := range map[*Template]Template{&c.StatusTopic: DefaultStatus, &c.CommandTopic: DefaultCommands, &c.ResultTopic: DefaultResults} {
		if p.raw == "" {
			*p = d
		}
	}
	if c.CommandFormat == "" {
		c.CommandFormat = payload.FormatJSON
	}
	if c.KeepAlive <= 0 {
		c.KeepAlive = 30 * time.Second
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 10 * time.Second
	}
	if c.MaxReconnect <= 0 {
		c.MaxReconnect = 30 * time.Second
	}
	if c.PresenceTimeout <= 0 {
		c.PresenceTimeout = 5 * time.Minute
	}
	if c.MaxPayloadBytes <= 0 || c.MaxPayloadBytes > payload.MaxPayloadBytes {
		c.MaxPayloadBytes = payload.MaxPayloadBytes
	}
	if c.MaxPending <= 0 {
		c.MaxPending = 10_000
	}
	if c.MaxPendingBytes <= 0 {
		c.MaxPendingBytes = 64 << 20
	}
	if c.Workers <= 0 {
		c.Workers = 4
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
}

// CheckConfig checks c's settings as New would, without the hub's parts
// (Store, Registry, ...): configuration loaders use it to fail early.
func CheckConfig(c Config) error {
	c.setDefaults()
	return c.checkSettings()
}

// validate checks what the defaults cannot fill in.
func (c *Config) validate() error {
	err := c.checkSettings()
	if c.Store == nil || c.Registry == nil || c.Ingester == nil || c.Commands == nil {
		err = errors.Join(err, errors.New("store, registry, ingester and commands are required"))
	}
	return err
}

func (c *Config) checkSettings() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("no broker URL"))
	}
	if c.ClientID == "" {
		errs = append(errs, errors.New("client id required (the persistent session is found by it)"))
	}
	if c.CommandFormat != payload.FormatJSON && c.CommandFormat != payload.FormatCBOR {
		errs = append(errs, fmt.Errorf("command format %q: want json or cbor", c.CommandFormat))
	}
	// Every topic kind must be told apart from every other, or a device's
	// status could be read as telemetry.
	all := []Template{c.StatusTopic, c.CommandTopic, c.ResultTopic}
	for _, r := range c.Telemetry {
		if _, err := payload.ParseFormat(string(r.Format)); err != nil {
			errs = append(errs, fmt.Errorf("telemetry topic %s: %w", r.Topic, err))
		}
		all = append(all, r.Topic)
	}
	for i := range all {
		for j := i + 1; j < len(all); j++ {
			if all[i].Overlaps(all[j]) {
				errs = append(errs, fmt.Errorf("topics %s and %s overlap", all[i], all[j]))
			}
		}
	}
	if n := c.Northbound; n != nil {
		for _, t := range all {
			if n.Topic.Overlaps(t) {
				errs = append(errs, fmt.Errorf("northbound topic %s overlaps %s: the bridge would read its own output", n.Topic, t))
			}
		}
		if n.Format != payload.FormatJSON && n.Format != payload.FormatCBOR {
			errs = append(errs, fmt.Errorf("northbound format %q: want json or cbor", n.Format))
		}
		if n.QoS > 1 {
			errs = append(errs, fmt.Errorf("northbound qos %d: want 0 or 1", n.QoS))
		}
	}
	return errors.Join(errs...)
}

// handle routes one message by its topic.
func (b *Bridge) handle(m paho.Message) {
	topic := m.Topic()
	for _, r := range b.cfg.Telemetry {
		if dev, ok, err := deviceOf(r.Topic, topic); ok {
			b.metrics.messages.WithLabelValues("telemetry").Inc()
			if err != nil {
				b.refuse(m, reasonBadTopic, "", err)
				return
			}
			b.telemetry(m, r, dev)
			return
		}
	}
	if dev, ok, err := deviceOf(b.cfg.StatusTopic, topic); ok {
		b.metrics.messages.WithLabelValues("status").Inc()
		if err != nil {
			b.refuse(m, reasonBadTopic, "", err)
			return
		}
		b.status(m, dev)
		return
	}
	if dev, ok, err := deviceOf(b.cfg.ResultTopic, topic); ok {
		b.metrics.messages.WithLabelValues("result").Inc()
		if err != nil {
			b.refuse(m, reasonBadTopic, "", err)
			return
		}
		b.result(m, dev)
		return
	}
	b.metrics.messages.WithLabelValues("other").Inc()
	b.refuse(m, reasonBadTopic, "", errors.New("topic matches no configured template"))
}

// refuse acks and drops a message that can never be stored (sending it
// again would not help), counting why.
func (b *Bridge) refuse(m paho.Message, reason, device string, err error) {
	b.metrics.refused.WithLabelValues(reason).Inc()
	if n, ok := b.refusals.allow(reason, b.cfg.Clock()); ok {
		b.log.Warn("mqtt message refused", "topic", m.Topic(), "device", device, "reason", reason, "err", err, "refused_since_last_log", n)
	}
	b.release(m, true)
}

// logLimiter lets one log line per key through per interval, so a
// misbehaving fleet cannot flood the log; the metric counts every one.
type logLimiter struct {
	mu   sync.Mutex
	last map[string]time.Time
	held map[string]int // suppressed since the last line
}

const refusalLogInterval = 10 * time.Second

// allow reports whether to log key now, and how many were held back.
func (l *logLimiter) allow(key string, now time.Time) (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last, l.held = map[string]time.Time{}, map[string]int{}
	}
	if t, ok := l.last[key]; ok && now.Sub(t) < refusalLogInterval {
		l.held[key]++
		return 0, false
	}
	n := l.held[key]
	l.last[key], l.held[key] = now, 0
	return n, true
}

// counter counts messages in hand and lets shutdown and resync wait for
// none (a sync.WaitGroup may not be added to while waited on from zero).
type counter struct {
	mu      sync.Mutex
	n       int
	stopped bool          // tryAdd fails from now on
	idle    chan struct{} // closed when n reaches 0; nil when nobody waits
}

func (c *counter) add(d int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n += d
	if c.n == 0 && c.idle != nil {
		close(c.idle)
		c.idle = nil
	}
}

// tryAdd adds one unless the count is at max already or stop was called.
func (c *counter) tryAdd(max int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n >= max || c.stopped {
		return false
	}
	c.n++
	return true
}

// stop makes every later tryAdd fail.
func (c *counter) stop() {
	c.mu.Lock()
	c.stopped = true
	c.mu.Unlock()
}

func (c *counter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// wait returns when the count is 0, or ctx's error first.
func (c *counter) wait(ctx context.Context) error {
	for {
		c.mu.Lock()
		if c.n == 0 {
			c.mu.Unlock()
			return nil
		}
		if c.idle == nil {
			c.idle = make(chan struct{})
		}
		ch := c.idle
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
