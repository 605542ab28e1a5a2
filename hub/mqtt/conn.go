package mqtt

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// Bridge is a running MQTT bridge.
type Bridge struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics

	// The paho client is replaced by a new one (a new generation) on every
	// reconnect the bridge makes itself: paho cannot Connect a client
	// whose Disconnect still runs in the background, and handlers bound to
	// a generation ignore a client the bridge gave up on.
	linkMu sync.Mutex
	client paho.Client
	gen    uint64
	// epoch changes whenever a connection comes up or goes down (any
	// generation): a command publish that spans a change is not trusted.
	epoch atomic.Uint64

	queues       []chan paho.Message // one per worker; a device's messages always go to the same one
	tmpls        []Template          // the subscribed templates (shard reads them per message)
	acks         chan paho.Message   // acks leave through one goroutine, never an ingest worker
	north        chan northItem      // northbound batches, dropped when full
	pending      counter             // messages taken from paho and not yet done with
	pendingBytes atomic.Int64        // their payload bytes
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
	rates    *rates
	refusals logLimiter

	mu       sync.Mutex
	sessions map[string]*session  // online devices
	revoked  map[string]time.Time // devices revoked or deleted lately: no new session
}

// northQueue bounds the northbound batches waiting for the broker.
const northQueue = 1024

// New checks cfg and builds a bridge; nothing connects until Start.
func New(cfg Config) (*Bridge, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Bridge{
		cfg: cfg, log: cfg.Logger.With("component", "mqtt"), metrics: newMetrics(cfg.Registerer),
		acks: make(chan paho.Message, cfg.MaxPending), north: make(chan northItem, northQueue),
		ctx: ctx, cancel: cancel,
		dedupe: newDedupe(), devices: newDeviceCache(cfg.Store, cfg.Clock), rates: newRates(cfg.Rate),
		sessions: map[string]*session{}, revoked: map[string]time.Time{}, tmpls: cfg.templates(),
	}
	for range cfg.Workers {
		b.queues = append(b.queues, make(chan paho.Message, cfg.MaxPending))
	}
	cfg.Registry.OnDisconnect(b.forgetDevice)
	b.newClient()
	return b, nil
}

// newClient makes the next generation's client current. Call with linkMu
// held, or before Start.
func (b *Bridge) newClient() paho.Client {
	b.gen++
	b.client = paho.NewClient(b.clientOptions(b.gen))
	return b.client
}

// conn is the current client.
func (b *Bridge) conn() paho.Client {
	b.linkMu.Lock()
	defer b.linkMu.Unlock()
	return b.client
}

// current reports whether gen is the current generation.
func (b *Bridge) current(gen uint64) bool {
	b.linkMu.Lock()
	defer b.linkMu.Unlock()
	return b.gen == gen
}

func (b *Bridge) clientOptions(gen uint64) *paho.ClientOptions {
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
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { b.receive(gen, m) }).
		SetOnConnectHandler(func(cl paho.Client) { b.onConnect(gen, cl) }).
		SetConnectionLostHandler(func(_ paho.Client, err error) { b.onLost(gen, err) }).
		SetConnectionNotificationHandler(b.onNotification)
	if c.TLS != nil {
		o.SetTLSConfig(c.TLS)
	}
	return o
}

// Start connects in the background (retrying until the broker answers) and
// starts the workers.
func (b *Bridge) Start() {
	for _, q := range b.queues {
		b.wg.Add(1)
		go b.worker(q)
	}
	b.wg.Add(3)
	go b.acker()
	go b.northbounder()
	go b.presenceLoop()
	b.conn().Connect() // with ConnectRetry the token completes only once connected; onConnect does the rest
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
	c := b.conn()
	b.barrier(c)
	c.Disconnect(250)
	b.reconnectMu.Unlock()
	b.allOffline()
	b.metrics.connected.Set(0)
	return err
}

// barrierTopic is never subscribed: unsubscribing from it is a no-op the
// broker must still answer.
const barrierTopic = "fleetwire/$bridge-barrier"

// barrier returns once the broker has read everything sent before it: the
// UNSUBACK to an UNSUBSCRIBE sent after our PUBACKs proves the broker
// processed them. Without it, closing the socket right after the acks can
// lose them (a reset discards what the broker had not read yet), and the
// next hub would store those messages again.
func (b *Bridge) barrier(c paho.Client) {
	if !c.IsConnectionOpen() {
		return
	}
	tok := c.Unsubscribe(barrierTopic)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		b.log.Warn("mqtt: broker did not confirm the last acks before disconnecting; it may send those messages again", "err", tok.Error())
	}
}

// onConnect restores the subscriptions (a broker that lost our session
// forgot them) and counts the connection.
func (b *Bridge) onConnect(gen uint64, c paho.Client) {
	if !b.current(gen) {
		return // a client being replaced
	}
	b.epoch.Add(1)
	b.metrics.connects.Inc()
	filters := map[string]byte{}
	for _, t := range b.tmpls {
		filters[t.Filter()] = 1
	}
	tok := c.SubscribeMultiple(filters, nil) // nil: messages go to the default handler
	if !tok.WaitTimeout(b.cfg.ConnectTimeout) || tok.Error() != nil {
		// Without subscriptions the bridge would sit connected and deaf:
		// connect again.
		b.log.Error("mqtt subscribe failed; reconnecting", "err", tok.Error())
		go b.reconnect(gen)
		return
	}
	// A broker refuses a filter (its ACL, say) in the SUBACK, not as an
	// error: 0x80, or a lower QoS than asked, which would lose messages.
	for f, q := range tok.(*paho.SubscribeToken).Result() {
		if q != 1 {
			b.log.Error("mqtt broker refused the subscription or downgraded its QoS; messages on it are not received at QoS 1", "filter", f, "granted", q)
		}
	}
	b.metrics.connected.Set(1)
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

func (b *Bridge) onLost(gen uint64, err error) {
	b.epoch.Add(1)
	if !b.current(gen) {
		return
	}
	b.metrics.connected.Set(0)
	b.log.Warn("mqtt connection lost; reconnecting", "err", err)
	// Devices cannot get commands now; their retained status messages mark
	// them online again when the bridge is back.
	b.allOffline()
}

// reconnect replaces generation gen's client by a new one on the same
// session (the broker then resends every unacked QoS 1 message). A no-op
// if gen was replaced already or the bridge is closing.
func (b *Bridge) reconnect(gen uint64) {
	b.reconnectMu.Lock()
	defer b.reconnectMu.Unlock()
	if b.closing.Load() || !b.current(gen) {
		return
	}
	old := b.conn()
	b.barrier(old)
	b.linkMu.Lock()
	c := b.newClient() // from here on the old client's messages are ignored
	b.linkMu.Unlock()
	old.Disconnect(250)
	b.epoch.Add(1)
	b.metrics.connected.Set(0)
	b.allOffline()
	b.resyncing.Store(false)
	c.Connect()
}

// receive is paho's handler. It must not block (paho's router calls it
// inline), so it only enqueues; when the bridge is full the message stays
// unacked and a reconnect, once the messages in hand are stored, makes
// the broker send it again.
func (b *Bridge) receive(gen uint64, m paho.Message) {
	if b.closing.Load() || b.resyncing.Load() || !b.current(gen) {
		return // unacked: the broker keeps it for the session
	}
	if b.take(m) || b.closing.Load() {
		return
	}
	b.metrics.overflows.Inc()
	if b.resyncing.CompareAndSwap(false, true) {
		b.log.Warn("mqtt bridge full (max_pending, max_pending_bytes); reconnecting once the messages in hand are stored, so the broker resends the rest",
			"max_pending", b.cfg.MaxPending, "max_pending_bytes", b.cfg.MaxPendingBytes)
		go b.resync(gen)
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
	b.queues[b.shard(m.Topic())] <- m // never blocks: each holds MaxPending, more than are in hand
	b.metrics.pending.Inc()
	return true
}

// shard picks a device's worker, so its messages (a status "offline"
// then "online", say) are handled in the order they came.
func (b *Bridge) shard(topic string) int {
	if len(b.queues) == 1 {
		return 0
	}
	key := topic
	for _, t := range b.tmpls {
		if dev, ok := t.Match(topic); ok {
			key = dev
			break
		}
	}
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % uint32(len(b.queues)))
}

// templates are the subscribed topic templates.
func (c *Config) templates() []Template {
	ts := []Template{c.StatusTopic, c.ResultTopic}
	for _, r := range c.Telemetry {
		ts = append(ts, r.Topic)
	}
	return ts
}

// resync waits for the messages in hand, then reconnects.
func (b *Bridge) resync(gen uint64) {
	if b.pending.wait(b.ctx) != nil {
		return // closing
	}
	b.reconnect(gen)
	b.resyncing.Store(false) // also when gen was replaced meanwhile
}

// retry gives m back to the broker: unacked, and a reconnect once the
// messages in hand are done makes the broker send it again. For failures
// that are not the message's (the registry or command store failing).
func (b *Bridge) retry(m paho.Message) {
	b.release(m, false)
	b.linkMu.Lock()
	gen := b.gen
	b.linkMu.Unlock()
	if !b.closing.Load() && b.resyncing.CompareAndSwap(false, true) {
		go b.resync(gen)
	}
}

func (b *Bridge) worker(q chan paho.Message) {
	defer b.wg.Done()
	for {
		select {
		case <-b.ctx.Done():
			return
		case m := <-q:
			b.handle(m)
		}
	}
}

// release ends the bridge's hold on a message: acked (the broker forgets
// it) or not (the broker sends it again on the next connection). Acks go
// through the acker: paho's ack path can block while the broker is slow,
// and release runs on the ingester's workers, which every device shares.
func (b *Bridge) release(m paho.Message, ack bool) {
	if ack {
		b.acks <- m // never blocks: it holds MaxPending, more than are in hand
		return
	}
	b.done(m)
}

func (b *Bridge) done(m paho.Message) {
	b.pendingBytes.Add(-int64(len(m.Payload())))
	b.metrics.pending.Dec()
	b.pending.add(-1)
}

// acker sends the acks. A message counts as in hand until its ack is
// handed to paho, so Close waits for the acks too.
func (b *Bridge) acker() {
	defer b.wg.Done()
	for {
		select {
		case <-b.ctx.Done():
			return
		case m := <-b.acks:
			m.Ack()
			b.done(m)
		}
	}
}
