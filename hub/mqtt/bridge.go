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
	"sync/atomic"
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

// Bridge is a running MQTT bridge.
type Bridge struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	client  paho.Client

	queue        chan paho.Message
	pending      counter      // messages taken from paho and not yet done with
	pendingBytes atomic.Int64 // their payload bytes
	closing      atomic.Bool
	// resyncing is set while the bridge reconnects after an overflow: new
	// messages are left unacked for the broker to send again.
	resyncing atomic.Bool

	reconnectMu sync.Mutex // one reconnect at a time, none after Close

	ctx    context.Context // ends at Close: workers stop, blocked submits return
	cancel context.CancelFunc
	wg     sync.WaitGroup

	dedupe   *dedupe
	devices  *deviceCache
	refusals logLimiter

	mu       sync.Mutex
	sessions map[string]*session // online devices
}

// New checks cfg and builds a bridge; nothing connects until Start.
func New(cfg Config) (*Bridge, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Bridge{
		cfg: cfg, log: cfg.Logger.With("component", "mqtt"), metrics: newMetrics(cfg.Registerer),
		queue: make(chan paho.Message, cfg.MaxPending), ctx: ctx, cancel: cancel,
		dedupe: newDedupe(dedupeEntries), devices: newDeviceCache(cfg.Store, cfg.Clock),
		sessions: map[string]*session{},
	}
	b.client = paho.NewClient(b.clientOptions())
	return b, nil
}

func (b *Bridge) clientOptions() *paho.ClientOptions {
	c := b.cfg
	o := paho.NewClientOptions()
	for _, u := range c.Brokers {
		o.AddBroker(u)
	}
	o.SetClientID(c.ClientID).SetUsername(c.Username).SetPassword(c.Password).
		SetCleanSession(false). // the broker keeps our subscriptions and queues QoS 1 messages while we are away
		SetAutoAckDisabled(true).
		SetOrderMatters(true). // the handler only enqueues, so running it in paho's router is cheap
		SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).SetMaxReconnectInterval(c.MaxReconnect).
		SetKeepAlive(c.KeepAlive).SetPingTimeout(10 * time.Second).
		SetConnectTimeout(c.ConnectTimeout).SetWriteTimeout(10 * time.Second).
		// Messages the broker sends before our subscriptions are restored
		// (queued for the session) arrive without a route: same handler.
		SetDefaultPublishHandler(b.receive).
		SetOnConnectHandler(b.onConnect).
		SetConnectionLostHandler(b.onLost).
		SetConnectionNotificationHandler(b.onNotification)
	if c.TLS != nil {
		o.SetTLSConfig(c.TLS)
	}
	return o
}

// Start connects in the background (retrying until the broker answers) and
// starts the workers.
func (b *Bridge) Start() {
	for range b.cfg.Workers {
		b.wg.Add(1)
		go b.worker()
	}
	b.wg.Add(1)
	go b.presenceLoop()
	b.client.Connect() // with ConnectRetry the token completes only once connected; onConnect does the rest
	b.log.Info("mqtt bridge connecting", "brokers", b.cfg.Brokers, "client_id", b.cfg.ClientID)
}

// Close stops taking messages, waits (within ctx) for those in hand to be
// stored and acked, disconnects and marks the bridge's devices offline.
// Messages not acked by then stay with the broker for the next start.
func (b *Bridge) Close(ctx context.Context) error {
	b.closing.Store(true)
	// After stop no message is taken, so none can be stored after the
	// wait below and have its ack lost with the connection (the next hub
	// would store it again).
	b.pending.stop()
	var err error
	if werr := b.pending.wait(ctx); werr != nil {
		err = fmt.Errorf("mqtt bridge: %d messages not acked at shutdown (the broker sends them again): %w", b.pending.count(), werr)
	}
	b.cancel()
	b.wg.Wait()
	b.reconnectMu.Lock()
	b.client.Disconnect(250)
	b.reconnectMu.Unlock()
	b.allOffline()
	b.metrics.connected.Set(0)
	return err
}

// onConnect restores the subscriptions (a broker that lost our session
// forgot them) and counts the connection.
func (b *Bridge) onConnect(c paho.Client) {
	b.metrics.connects.Inc()
	b.metrics.connected.Set(1)
	filters := map[string]byte{b.cfg.StatusTopic.Filter(): 1, b.cfg.ResultTopic.Filter(): 1}
	for _, r := range b.cfg.Telemetry {
		filters[r.Topic.Filter()] = 1
	}
	tok := c.SubscribeMultiple(filters, nil) // nil: messages go to the default handler
	if !tok.WaitTimeout(b.cfg.ConnectTimeout) || tok.Error() != nil {
		// Without subscriptions the bridge would sit connected and deaf:
		// drop the connection so the reconnect tries again.
		b.log.Error("mqtt subscribe failed; reconnecting", "err", tok.Error())
		go b.reconnect()
		return
	}
	b.log.Info("mqtt bridge connected", "subscriptions", len(filters))
}

// onNotification reports failed connection attempts, which paho retries
// on its own without telling anyone (a wrong CA or password would
// otherwise only show as a bridge that never connects).
func (b *Bridge) onNotification(_ paho.Client, n paho.ConnectionNotification) {
	f, ok := n.(paho.ConnectionNotificationBrokerFailed)
	if !ok {
		return
	}
	b.metrics.connectFailures.Inc()
	broker := f.Broker.Redacted()
	if held, ok := b.refusals.allow("connect "+broker, b.cfg.Clock()); ok {
		b.log.Warn("mqtt broker connection failed; retrying", "broker", broker, "err", f.Reason, "failures_since_last_log", held)
	}
}

func (b *Bridge) onLost(_ paho.Client, err error) {
	b.metrics.connected.Set(0)
	b.log.Warn("mqtt connection lost; reconnecting", "err", err)
	// Devices cannot get commands now; their retained status messages mark
	// them online again when the bridge is back.
	b.allOffline()
}

// reconnect drops the connection and connects again (the broker then
// resends every unacked QoS 1 message of the session). Disconnect returns
// once paho's router has stopped, so no message of the old connection
// reaches receive after it; resyncing ends before the new connection can
// deliver anything, or its first messages would be dropped unacked.
func (b *Bridge) reconnect() {
	b.reconnectMu.Lock()
	defer b.reconnectMu.Unlock()
	if b.closing.Load() {
		return
	}
	b.client.Disconnect(250)
	b.metrics.connected.Set(0)
	b.allOffline()
	b.resyncing.Store(false)
	if !b.closing.Load() {
		b.client.Connect()
	}
}

// receive is paho's handler. It must not block (paho's router calls it
// inline), so it only enqueues; a full queue leaves the message unacked and
// schedules a reconnect, after which the broker delivers it again.
func (b *Bridge) receive(_ paho.Client, m paho.Message) {
	if b.closing.Load() || b.resyncing.Load() {
		return // unacked: the broker keeps it for the session
	}
	if b.take(m) || b.closing.Load() {
		return
	}
	b.metrics.overflows.Inc()
	if b.resyncing.CompareAndSwap(false, true) {
		b.log.Warn("mqtt bridge full (max_pending, max_pending_bytes); reconnecting once the messages in hand are stored, so the broker resends the rest",
			"max_pending", b.cfg.MaxPending, "max_pending_bytes", b.cfg.MaxPendingBytes)
		go b.resync()
	}
}

// take queues m for the workers if the bounds allow. Messages in hand
// include those waiting for InfluxDB in the ingester, not only those
// queued here; one is always taken, however large.
func (b *Bridge) take(m paho.Message) bool {
	if !b.pending.tryAdd(b.cfg.MaxPending) {
		return false
	}
	size := int64(len(m.Payload()))
	if n := b.pendingBytes.Add(size); n != size && n > int64(b.cfg.MaxPendingBytes) {
		b.pendingBytes.Add(-size)
		b.pending.add(-1)
		return false
	}
	b.queue <- m // never blocks: it holds MaxPending, more than are in hand
	b.metrics.pending.Inc()
	return true
}

// resync waits for the messages in hand, then reconnects.
func (b *Bridge) resync() {
	if b.pending.wait(b.ctx) != nil {
		return // closing
	}
	b.reconnect()
}

// retry gives m back to the broker: unacked, and a reconnect once the
// messages in hand are done makes the broker send it again. For failures
// that are not the message's (the registry or command store failing).
func (b *Bridge) retry(m paho.Message) {
	b.release(m, false)
	if !b.closing.Load() && b.resyncing.CompareAndSwap(false, true) {
		go b.resync()
	}
}

func (b *Bridge) worker() {
	defer b.wg.Done()
	for {
		select {
		case <-b.ctx.Done():
			return
		case m := <-b.queue:
			b.handle(m)
		}
	}
}

// release ends the bridge's hold on a message: acked (the broker forgets
// it) or not (the broker sends it again on the next connection).
func (b *Bridge) release(m paho.Message, ack bool) {
	if ack {
		m.Ack()
	}
	b.pendingBytes.Add(-int64(len(m.Payload())))
	b.metrics.pending.Dec()
	b.pending.add(-1)
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
