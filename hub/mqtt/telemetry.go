package mqtt

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/hub/mqtt/payload"
	"github.com/fleetwire/fleetwire/hub/store"
	"github.com/fleetwire/fleetwire/protocol"
)

// telemetry decodes, publishes live and stores one telemetry message; it
// is acked once InfluxDB accepted it.
//
// The rate budget is checked after the dedupe lookup, on fresh messages
// only: a broker's redelivery of a message stored or being stored is not
// charged twice (the DUP flag and packet id are the broker's, so a device
// cannot pass its messages off as redeliveries). A message over budget
// is forgotten by dedupe and refused, uncharged.
func (b *Bridge) telemetry(m paho.Message, r Route, dev string) {
	data := m.Payload()
	if len(data) > b.cfg.MaxPayloadBytes {
		b.refuse(m, reasonOversize, dev, fmt.Errorf("%d bytes > %d", len(data), b.cfg.MaxPayloadBytes))
		return
	}
	d, ok := b.deviceFor(m, dev, true)
	if !ok {
		return
	}
	now := b.cfg.Clock()
	batch, err := payload.Decode(r.Format, data, now, b.cfg.Limits)
	if err != nil {
		reason := reasonMalformed
		if strings.Contains(err.Error(), `"`+protocol.DeviceTag+`" is reserved`) {
			reason = reasonInjection // a payload naming a device: it may only be its topic's
		}
		b.deadLetter(dev, m.Topic(), len(data), err)
		b.refuse(m, reason, dev, err)
		return
	}
	key := messageKey(m.Topic(), m.MessageID(), data)
	e, st := b.dedupe.begin(key, m)
	switch st {
	case alreadyStored:
		b.metrics.duplicates.Inc()
		b.release(m, true)
		return
	case joined:
		b.metrics.duplicates.Inc() // settled with the original, still being stored
		return
	}
	if b.overBudget(key, e, dev, now, len(batch.Points)) {
		return
	}
	b.seen(d, false, now)
	if b.cfg.Live != nil {
		b.cfg.Live.Publish(dev, batch)
	}
	ib := &hub.IngestBatch{DeviceID: dev, Labels: d.Labels, Batch: batch, Transport: store.TransportMQTT}
	n := len(batch.Points)
	err = b.cfg.Ingester.Submit(b.ctx, ib, func(err error) {
		if err == nil {
			b.metrics.points.Add(float64(n))
		}
		b.stored(key, e, err == nil)
	})
	if err != nil { // shutting down: the broker keeps the message
		b.stored(key, e, false)
	}
}

// overBudget charges a fresh message to its device's rate budget; one
// over it is forgotten by dedupe (a resend of it is new work) and
// refused, with any copy that joined it, and overBudget reports true.
func (b *Bridge) overBudget(key dedupeKey, e *dedupeEntry, dev string, now time.Time, points int) bool {
	if b.rates.allow(dev, now, points) {
		return false
	}
	err := fmt.Errorf("over the device's rate budget (message of %d points)", points)
	for _, w := range b.dedupe.finish(key, e, false) {
		b.refuse(w, reasonRate, dev, err)
	}
	return true
}

// stored settles a message (and any redelivered copies waiting on it):
// acked if its points are stored, left to the broker otherwise.
func (b *Bridge) stored(key dedupeKey, e *dedupeEntry, ok bool) {
	for _, m := range b.dedupe.finish(key, e, ok) {
		b.release(m, ok)
	}
}

func (b *Bridge) deadLetter(dev, topic string, size int, derr error) {
	if b.cfg.DeadLetters == nil {
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	dl := []hub.DeadLetter{{DeviceID: dev, Line: fmt.Sprintf("mqtt topic=%s bytes=%d", topic, size), Error: derr.Error(), At: b.cfg.Clock()}}
	if err := b.cfg.DeadLetters.AddDeadLetters(ctx, dl); err != nil {
		b.log.Error("record invalid mqtt payload", "device", dev, "err", err)
	}
}

// deviceFor is device for a message: when there is no usable device the
// message is refused (counted) or, if the registry failed, handed back to
// the broker, and ok is false.
func (b *Bridge) deviceFor(m paho.Message, dev string, create bool) (d hub.Device, ok bool) {
	d, reason, err := b.device(dev, create)
	switch {
	case err == nil:
		return d, true
	case reason == "": // the registry failed us: not the message's fault
		b.log.Error("mqtt device lookup", "device", dev, "err", err)
		b.retry(m)
	default:
		b.refuse(m, reason, dev, err)
	}
	return d, false
}

// device returns a registered, unrevoked device, creating it if create
// and AutoCreate are on (telemetry and an "online" status create devices;
// an "offline" or a result never does). On error, reason is the refusal
// reason, or "" when the registry itself failed.
func (b *Bridge) device(id string, create bool) (hub.Device, string, error) {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	d, err := b.devices.get(ctx, id)
	if errors.Is(err, hub.ErrNotFound) && create && b.cfg.AutoCreate {
		d, _, err = b.cfg.Store.CreateDevice(ctx, id, b.cfg.AutoCreateLabels)
		if errors.Is(err, hub.ErrConflict) { // created meanwhile
			b.devices.forget(id)
			d, err = b.devices.get(ctx, id)
		} else if err == nil {
			b.log.Info("mqtt device registered on first message (auto_create)", "device", id)
			b.devices.forget(id)
		}
	}
	switch {
	case errors.Is(err, hub.ErrNotFound):
		return d, reasonUnknownDevice, err
	case err != nil:
		return d, "", err
	case d.Revoked:
		return d, reasonRevoked, fmt.Errorf("device %s: %w", id, hub.ErrRevoked)
	}
	return d, "", nil
}

// deviceCache keeps registry lookups for a while: every message names its
// device, and SQLite need not answer each one. Revocation and deletion
// close the device's session, which forgets the entry at once.
type deviceCache struct {
	st    Store
	clock func() time.Time
	mu    sync.Mutex
	m     map[string]cachedDevice
}

type cachedDevice struct {
	d   hub.Device
	err error // nil or ErrNotFound
	at  time.Time
}

const (
	deviceCacheTTL    = 30 * time.Second
	unknownCacheTTL   = 5 * time.Second // unknown ids: short, so a registration shows soon
	deviceCacheLimit  = 100_000         // entries; a flood of made-up ids empties the cache
	touchInterval     = time.Minute     // last-seen updates per online device at most this often
	presenceTickRatio = 4               // presence checks per PresenceTimeout
)

func newDeviceCache(st Store, clock func() time.Time) *deviceCache {
	return &deviceCache{st: st, clock: clock, m: map[string]cachedDevice{}}
}

func (c *deviceCache) get(ctx context.Context, id string) (hub.Device, error) {
	now := c.clock()
	c.mu.Lock()
	e, ok := c.m[id]
	c.mu.Unlock()
	ttl := deviceCacheTTL
	if e.err != nil {
		ttl = unknownCacheTTL
	}
	if ok && now.Sub(e.at) < ttl {
		return e.d, e.err
	}
	d, err := c.st.GetDevice(ctx, id)
	if err != nil && !errors.Is(err, hub.ErrNotFound) {
		return d, err
	}
	c.mu.Lock()
	if len(c.m) >= deviceCacheLimit {
		clear(c.m)
	}
	c.m[id] = cachedDevice{d: d, err: err, at: now}
	c.mu.Unlock()
	return d, err
}

func (c *deviceCache) forget(id string) {
	c.mu.Lock()
	delete(c.m, id)
	c.mu.Unlock()
}

// dedupeKey identifies a message: its topic and bytes, and the packet id
// the broker gave it. A broker resending an unacked message keeps its
// packet id (MQTT 3.1.1 §4.4), while two messages with the same bytes
// (a sensor without a clock reporting the same value) differ in theirs.
type dedupeKey struct {
	sum [16]byte
	id  uint16
}

func messageKey(topic string, id uint16, data []byte) dedupeKey {
	h := sha256.New()
	h.Write([]byte(topic))
	h.Write([]byte{0})
	h.Write(data)
	k := dedupeKey{id: id}
	copy(k.sum[:], h.Sum(nil))
	return k
}

// dedupe recognises a broker's redelivery (DUP flag) of a message the
// bridge already stored or is storing: the broker resends a QoS 1 message
// whose ack it did not get (a connection lost between our InfluxDB write
// and our PUBACK), and writing it again would duplicate points that carry
// no time of their own. It keeps one entry per packet id, the newest: a
// broker reuses an id only once the message that had it was acked, so an
// older entry with that id can never be redelivered. That bounds it to
// 65,536 entries.
type dedupe struct {
	mu   sync.Mutex
	m    map[dedupeKey]*dedupeEntry
	byID map[uint16]dedupeKey
}

// dedupeEntry is one remembered message; waiters are the message itself
// and any redelivered copies, settled together.
type dedupeEntry struct {
	stored  bool
	waiters []paho.Message
}

func newDedupe() *dedupe {
	return &dedupe{m: map[dedupeKey]*dedupeEntry{}, byID: map[uint16]dedupeKey{}}
}

// dedupeState is what begin made of a message.
type dedupeState int

const (
	fresh         dedupeState = iota // new: store it
	alreadyStored                    // a redelivery of a stored message: ack it
	joined                           // a redelivery of one being stored: settled with it
)

// begin registers m under key.
func (d *dedupe) begin(key dedupeKey, m paho.Message) (*dedupeEntry, dedupeState) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if old, ok := d.m[key]; ok && m.Duplicate() {
		if old.stored {
			return old, alreadyStored
		}
		old.waiters = append(old.waiters, m)
		return old, joined
	}
	if prev, ok := d.byID[key.id]; ok && prev != key {
		if e := d.m[prev]; e != nil && e.stored {
			delete(d.m, prev) // its id was reused: it was acked
		}
	}
	e := &dedupeEntry{waiters: []paho.Message{m}}
	d.m[key] = e
	d.byID[key.id] = key
	return e, fresh
}

// finish settles e and returns the messages to release. A failed message
// is forgotten so its redelivery is processed afresh.
func (d *dedupe) finish(key dedupeKey, e *dedupeEntry, ok bool) []paho.Message {
	d.mu.Lock()
	defer d.mu.Unlock()
	ws := e.waiters
	e.waiters = nil
	switch {
	case ok && d.byID[key.id] == key:
		e.stored = true
	case d.m[key] == e:
		// Failed: its redelivery is new work. Or stored after its id was
		// reused (a broker that lost its state): it cannot come again.
		delete(d.m, key)
	}
	return ws
}
