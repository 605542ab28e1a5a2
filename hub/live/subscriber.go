package live

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"sync"
	"time"

	wire "github.com/fleetwire/fleetwire/protocol/live"
)

// fleetEntry is a device's pending fleet summary; entries for the same
// device merge until the next flush.
type fleetEntry struct {
	id       string
	online   bool
	lastSeen int64
	metrics  map[string]float64
}

// Subscriber is one dashboard connection's view of the broker. The broker
// merges updates into its pending state; its own flusher goroutine turns
// them into encoded messages on Out at most every FlushInterval. The
// transport owns the writes: it reads Out and stops at Done.
type Subscriber struct {
	b      *Broker
	ctx    context.Context
	cancel context.CancelCauseFunc
	once   sync.Once
	out    chan []byte
	wake   chan struct{} // capacity 1: pending state is non-empty
	exited chan struct{} // the flusher has returned

	mu        sync.Mutex // guards the fields below; taken under the broker's locks
	fleet     bool
	devices   map[string]struct{}
	pFleet    map[string]*fleetEntry
	pPoints   map[string][]wire.Point
	pDropped  map[string]int
	npoints   int
	pStates   []wire.DeviceState
	fullSince time.Time // first of the consecutive flushes that found Out full (flusher only)
	lastFleet time.Time // when the last fleet message was taken (flusher only, under mu)
}

// Subscribe opens a subscriber with no topics. It lives until ctx ends,
// Close is called, or the broker disconnects it for being too slow.
func (b *Broker) Subscribe(ctx context.Context) *Subscriber {
	ctx, cancel := context.WithCancelCause(ctx)
	s := &Subscriber{
		b: b, ctx: ctx, cancel: cancel,
		out: make(chan []byte, b.cfg.QueueLen), wake: make(chan struct{}, 1), exited: make(chan struct{}),
		devices: make(map[string]struct{}), pFleet: make(map[string]*fleetEntry),
		pPoints: make(map[string][]wire.Point), pDropped: make(map[string]int),
	}
	b.metrics.Subscribers.Inc()
	go s.run()
	return s
}

// Out delivers encoded JSON messages, one per WebSocket message.
func (s *Subscriber) Out() <-chan []byte { return s.out }

// Done is closed when the subscriber ends; Err then says why.
func (s *Subscriber) Done() <-chan struct{} { return s.ctx.Done() }

// Context is cancelled when the subscriber ends (context.Cause says why);
// a transport can context.AfterFunc it to unblock a stuck write.
func (s *Subscriber) Context() context.Context { return s.ctx }

// Err is nil while the subscriber is open, then the cause: ErrTooSlow,
// ErrClosed or the parent context's error.
func (s *Subscriber) Err() error { return context.Cause(s.ctx) }

// Close ends the subscriber and waits for its flusher. Idempotent.
func (s *Subscriber) Close() {
	s.end(ErrClosed)
	<-s.exited
}

// end removes s from every topic and cancels it; safe from the flusher.
func (s *Subscriber) end(cause error) {
	s.once.Do(func() {
		s.cancel(cause)
		b := s.b
		b.mu.Lock()
		delete(b.fleetSubs, s)
		s.mu.Lock()
		for id := range s.devices {
			if subs := b.deviceSubs[id]; subs != nil {
				delete(subs, s)
				if len(subs) == 0 {
					delete(b.deviceSubs, id)
				}
			}
		}
		s.mu.Unlock()
		b.mu.Unlock()
		b.metrics.Subscribers.Dec()
		if cause == ErrTooSlow {
			b.metrics.Disconnects.WithLabelValues("too_slow").Inc()
		}
	})
}

// SubscribeFleet adds the fleet topic. The first flush after it carries
// every device the broker knows, so the overview starts complete.
func (s *Subscriber) SubscribeFleet() error {
	b := s.b
	b.winMu.Lock()
	defer b.winMu.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	if s.ctx.Err() != nil {
		return context.Cause(s.ctx)
	}
	// The whole snapshot goes in under one lock, so the flusher (which may
	// run at any moment) sends it in one message, never a part of it.
	s.mu.Lock()
	s.fleet = true
	for id, d := range b.devices {
		s.mergeFleet(d.summary(id))
	}
	s.mu.Unlock()
	b.fleetSubs[s] = struct{}{}
	s.signal()
	return nil
}

// UnsubscribeFleet removes the fleet topic and its pending updates.
func (s *Subscriber) UnsubscribeFleet() {
	s.b.mu.Lock()
	delete(s.b.fleetSubs, s)
	s.b.mu.Unlock()
	s.mu.Lock()
	s.fleet = false
	clear(s.pFleet)
	s.mu.Unlock()
}

// SubscribeDevice adds deviceID's topic (every point). At most
// MaxDeviceTopics per subscriber; subscribing twice is a no-op.
func (s *Subscriber) SubscribeDevice(deviceID string) error {
	b := s.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if s.ctx.Err() != nil {
		return context.Cause(s.ctx)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.devices[deviceID]; ok {
		return nil
	}
	if len(s.devices) >= b.cfg.MaxDeviceTopics {
		return ErrTooManyTopics
	}
	s.devices[deviceID] = struct{}{}
	subs := b.deviceSubs[deviceID]
	if subs == nil {
		subs = make(map[*Subscriber]struct{})
		b.deviceSubs[deviceID] = subs
	}
	subs[s] = struct{}{}
	return nil
}

// UnsubscribeDevice removes deviceID's topic and its pending points.
func (s *Subscriber) UnsubscribeDevice(deviceID string) {
	b := s.b
	b.mu.Lock()
	if subs := b.deviceSubs[deviceID]; subs != nil {
		delete(subs, s)
		if len(subs) == 0 {
			delete(b.deviceSubs, deviceID)
		}
	}
	b.mu.Unlock()
	s.mu.Lock()
	delete(s.devices, deviceID)
	s.npoints -= len(s.pPoints[deviceID])
	delete(s.pPoints, deviceID)
	delete(s.pDropped, deviceID)
	s.mu.Unlock()
}

func (s *Subscriber) signal() {
	select {
	case s.wake <- struct{}{}:
	default: // a flush is already due
	}
}

// addFleet merges e into the pending fleet update. Caller holds b.mu.
// Only the first pending entry wakes the flusher: it either sends the
// summary or arms its fleet timer, so the updates after it (a busy fleet
// makes thousands a second) cost no wake-ups.
func (s *Subscriber) addFleet(e fleetEntry) {
	s.mu.Lock()
	first := len(s.pFleet) == 0
	if s.fleet {
		s.mergeFleet(e)
	}
	s.mu.Unlock()
	if first {
		s.signal()
	}
}

// mergeFleet merges e into pFleet. Caller holds s.mu.
func (s *Subscriber) mergeFleet(e fleetEntry) {
	if p := s.pFleet[e.id]; p != nil {
		p.online, p.lastSeen = e.online, max(p.lastSeen, e.lastSeen)
		maps.Copy(p.metrics, e.metrics)
		return
	}
	e.metrics = maps.Clone(e.metrics)
	if e.metrics == nil {
		e.metrics = make(map[string]float64)
	}
	s.pFleet[e.id] = &e
}

// addPoints buffers pts up to MaxPendingPoints and returns how many it
// dropped. Caller holds b.mu.
func (s *Subscriber) addPoints(deviceID string, pts []wire.Point) int {
	s.mu.Lock()
	if _, ok := s.devices[deviceID]; !ok {
		s.mu.Unlock()
		return 0
	}
	room := max(0, s.b.cfg.MaxPendingPoints-s.npoints)
	n := min(room, len(pts))
	s.pPoints[deviceID] = append(s.pPoints[deviceID], pts[:n]...)
	s.npoints += n
	dropped := len(pts) - n
	s.pDropped[deviceID] += dropped
	s.mu.Unlock()
	s.signal()
	return dropped
}

// addState queues a presence change. Caller holds b.mu. States are few
// (one per connect/disconnect) and bounded by the device-topic limit times
// the flapping rate; the newest per device is all that matters, so it
// replaces an older pending one.
func (s *Subscriber) addState(st wire.DeviceState) {
	s.mu.Lock()
	s.pStates = slices.DeleteFunc(s.pStates, func(o wire.DeviceState) bool { return o.ID == st.ID })
	s.pStates = append(s.pStates, st)
	s.mu.Unlock()
	s.signal()
}

// run is the flusher: wait for pending state, flush, then rest for
// FlushInterval so a busy subscriber gets at most one flush per interval.
// A fleet summary not yet due (FleetInterval) arms fleetT instead.
func (s *Subscriber) run() {
	defer close(s.exited)
	defer s.end(ErrClosed) // a cancelled parent context still leaves the topics
	t := time.NewTimer(time.Hour)
	t.Stop()
	fleetT := time.NewTimer(time.Hour)
	fleetT.Stop()
	defer fleetT.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.wake:
		case <-fleetT.C:
		}
		ok, fleetIn := s.flush()
		if !ok {
			s.end(ErrTooSlow)
			return
		}
		if fleetIn > 0 {
			fleetT.Reset(fleetIn)
		}
		t.Reset(s.b.cfg.FlushInterval)
		select {
		case <-s.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-s.b.flushGate: // tests only: nil otherwise, never ready
			t.Stop()
		}
	}
}

// flush moves as many pending messages as fit into Out. It returns false
// when every flush for SlowAfter found Out full, and how long until a
// pending fleet summary is due (0: none waiting). Only the flusher sends on
// Out, so its free space can only grow while we work.
func (s *Subscriber) flush() (ok bool, fleetIn time.Duration) {
	free := cap(s.out) - len(s.out)
	if free == 0 {
		now := time.Now()
		if s.fullSince.IsZero() {
			s.fullSince = now
		}
		s.signal() // pending state is still there: look again next interval
		return now.Sub(s.fullSince) < s.b.cfg.SlowAfter, 0
	}
	s.fullSince = time.Time{}
	msgs, more, fleetIn := s.take(free)
	for _, m := range msgs {
		data, err := json.Marshal(m)
		if err != nil {
			continue // values were validated finite; nothing else can fail
		}
		s.out <- data // never blocks: at most free messages were taken
	}
	if more {
		s.signal()
	}
	return true, fleetIn
}

// take removes up to n messages from the pending state: presence first
// (small and important), then the fleet summary if due, then points per
// device. fleetIn is how long a pending fleet summary still waits.
func (s *Subscriber) take(n int) (msgs []any, more bool, fleetIn time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if len(s.pFleet) > 0 && !s.lastFleet.IsZero() {
		fleetIn = s.lastFleet.Add(s.b.cfg.FleetInterval).Sub(now)
	}
	for len(msgs) < n && len(s.pStates) > 0 {
		msgs = append(msgs, s.pStates[0])
		s.pStates = s.pStates[1:]
	}
	if len(msgs) < n && len(s.pFleet) > 0 && fleetIn <= 0 {
		fleetIn = 0
		s.lastFleet = now
		f := wire.Fleet{Type: wire.TypeFleet, Devices: make([]wire.FleetDevice, 0, len(s.pFleet))}
		for _, id := range slices.Sorted(maps.Keys(s.pFleet)) {
			e := s.pFleet[id]
			f.Devices = append(f.Devices, wire.FleetDevice{ID: id, Online: e.online, LastSeen: e.lastSeen, Metrics: e.metrics})
		}
		clear(s.pFleet)
		msgs = append(msgs, f)
	}
	for id, pts := range s.pPoints {
		if len(msgs) >= n {
			break
		}
		if pts == nil {
			pts = []wire.Point{} // everything was dropped: say so with "points":[]
		}
		msgs = append(msgs, wire.Points{Type: wire.TypePoints, Device: id, Points: pts, Dropped: s.pDropped[id]})
		s.npoints -= len(pts)
		delete(s.pPoints, id)
		delete(s.pDropped, id)
	}
	// A fleet summary not yet due is not "more": the flusher's fleet timer
	// brings it.
	more = len(s.pStates) > 0 || (len(s.pFleet) > 0 && fleetIn <= 0) || len(s.pPoints) > 0
	return msgs, more, fleetIn
}
