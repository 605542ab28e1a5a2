package devicews

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/protocol"
)

// inflight is a batch received in this session and not yet acked.
type inflight struct {
	seq    uint64
	done   bool
	failed bool
}

// maxQueued bounds the encoded messages waiting for the writer; a producer
// beyond it waits (SendCommand) until the writer has taken the queue.
const maxQueued = 64

// session is one device connection. The reader goroutine (run) owns reads.
// Writes have no goroutine of their own while the link is idle: a producer
// queues under wmu and, if no writer is running, starts one that drains
// the queue and ends (gorilla allows one writer at a time; pings and close
// frames go through WriteControl, which may run beside it). Pings and
// last-seen updates are runtime timers, not goroutines. An idle session
// thus costs one parked goroutine. Close may be called from anywhere.
type session struct {
	h    *Handler
	conn *websocket.Conn
	dev  hub.Device

	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once

	wmu     sync.Mutex    // guards the write state below
	queue   [][]byte      // encoded messages for the writer; nil when idle
	ackDue  bool          // the acked seq advanced since the writer last sent it
	writing bool          // a writer goroutine is running (or writes are held)
	ended   bool          // run is over: start no more background work
	space   chan struct{} // made by a producer waiting for room, closed by the writer
	bg      sync.WaitGroup
	pingT   *time.Timer
	touchT  *time.Timer

	mu       sync.Mutex // guards the fields below; taken by ingest workers
	window   []inflight // received, unacked, in receive order
	acked    uint64     // highest seq of the stored prefix of window
	lastRecv uint64
	agentVer string

	thr hub.Throttle // the device's rate budget; the reader's alone
}

func newSession(h *Handler, conn *websocket.Conn, dev hub.Device) *session {
	ctx, cancel := context.WithCancel(context.Background())
	// writing starts true: nothing is written before run releases the
	// welcome (see run).
	return &session{h: h, conn: conn, dev: dev, ctx: ctx, cancel: cancel, writing: true}
}

// log returns the session's logger. It is built per call, not kept: it
// is used a few times per session, and a kept one costs every idle
// connection its preformatted attributes.
func (s *session) log() *slog.Logger {
	return s.h.cfg.Logger.With("device", s.dev.ID, "remote", s.conn.RemoteAddr().String())
}

// run is the session's whole life: hello under a deadline, register,
// welcome, then the read loop until the connection ends.
func (s *session) run() {
	cfg := &s.h.cfg
	defer s.cancel()
	hello, err := s.readHello()
	if err != nil {
		s.log().Info("session refused", "err", err)
		return
	}
	s.agentVer = hello.AgentVersion
	// The welcome is queued before the session is registered, so nothing
	// (a command pushed the moment the device is online) can overtake it;
	// writes stay held until last-seen is stored.
	if err := s.send(s.welcome()); err != nil {
		return
	}
	if s.dev.RotateRequested && slices.Contains(hello.Capabilities, protocol.CapRotateToken) {
		// An operator asked for a new token while the device was away: it
		// gets one (POST /api/v1/device/token) and comes back with it. An
		// agent that cannot rotate is not closed (it would only loop).
		s.Close(protocol.CloseRotateToken, "rotate your device token")
		return
	}
	cfg.Registry.Register(s.dev.ID, s)
	defer cfg.Registry.Unregister(s.dev.ID, s)
	cfg.Metrics.Connects.Inc()
	shallow(s.touch)
	defer s.touch()

	defer s.stopBackground()
	defer s.Close(protocol.CloseNormal, "") // no-op if already closed with a reason
	s.startBackground()

	s.log().Info("device connected", "agent_version", hello.AgentVersion, "boot_id", hello.BootID)
	if cfg.Commands != nil {
		cfg.Commands.DeviceConnected(s.dev.ID)
	}
	s.readLoop()
}

// shallow runs f on a short-lived goroutine and waits for it. The reader
// goroutine lives as long as the connection; a deep call (SQLite) made on
// it would leave its stack grown for that long.
func shallow(f func()) {
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	<-done
}

// startBackground releases the held writes (the welcome first) and arms
// the ping and last-seen timers.
func (s *session) startBackground() {
	cfg := &s.h.cfg
	s.wmu.Lock()
	s.pingT = time.AfterFunc(cfg.PingInterval, s.pingTick)
	s.touchT = time.AfterFunc(cfg.TouchInterval, s.touchTick)
	s.writing = false
	s.startWriterLocked()
	s.wmu.Unlock()
}

// stopBackground stops the timers and waits for a running writer or timer
// callback: when run returns, nothing of the session runs any more.
func (s *session) stopBackground() {
	s.wmu.Lock()
	s.ended = true
	if s.pingT != nil {
		s.pingT.Stop()
		s.touchT.Stop()
	}
	s.wmu.Unlock()
	s.bg.Wait()
}

// enterBackground registers a background goroutine (writer, timer
// callback) unless the session has ended. Call with wmu held.
func (s *session) enterBackgroundLocked() bool {
	if s.ended {
		return false
	}
	s.bg.Add(1)
	return true
}

func (s *session) readHello() (*protocol.Hello, error) {
	s.conn.SetReadDeadline(time.Now().Add(s.h.cfg.HelloTimeout))
	msg, err := s.readMessage()
	if err != nil {
		return nil, fmt.Errorf("read hello: %w", err)
	}
	hello, ok := msg.(*protocol.Hello)
	if !ok {
		s.Close(protocol.CloseProtocolError, "expected hello")
		return nil, errors.New("read hello: first message is not hello")
	}
	if hello.ProtocolVersion < protocol.MinVersion || hello.ProtocolVersion > protocol.Version {
		s.Close(protocol.CloseUnsupportedVersion, fmt.Sprintf("protocol %d not supported (hub speaks %d..%d)", hello.ProtocolVersion, protocol.MinVersion, protocol.Version))
		return nil, fmt.Errorf("read hello: protocol version %d", hello.ProtocolVersion)
	}
	return hello, nil
}

func (s *session) welcome() *protocol.Welcome {
	cfg := &s.h.cfg
	w := &protocol.Welcome{
		SessionID:  newID(),
		ServerTime: time.Now().UnixMilli(),
		DeviceID:   s.dev.ID,
		Settings: protocol.Settings{
			MaxMessageBytes: uint(cfg.MaxMessageBytes),
			MaxBatchPoints:  uint(effectiveMaxPoints(cfg.Limits)),
			MaxInflight:     uint(cfg.MaxInflight),
			PingIntervalMs:  uint(cfg.PingInterval / time.Millisecond),
		},
	}
	cfg.Rate.Advertise(&w.Settings)
	return w
}

func effectiveMaxPoints(l protocol.Limits) int {
	if l.MaxPoints > 0 {
		return l.MaxPoints
	}
	return protocol.DefaultLimits.MaxPoints
}

// readMessage reads and decodes one message; on a bad one it closes the
// session with the matching code and returns the error. The size limit is
// enforced here rather than by gorilla's read limit so that the device gets
// CloseTooBig (4002), not gorilla's generic 1009.
func (s *session) readMessage() (any, error) {
	mt, r, err := s.conn.NextReader()
	if err != nil {
		return nil, err
	}
	max := s.h.cfg.MaxMessageBytes
	data, err := io.ReadAll(io.LimitReader(r, int64(max)+1))
	if err != nil {
		return nil, err
	}
	if len(data) > max {
		s.bad("too_big")
		s.Close(protocol.CloseTooBig, fmt.Sprintf("message exceeds %d bytes", max))
		return nil, fmt.Errorf("message over %d bytes", max)
	}
	if mt != websocket.BinaryMessage {
		s.bad("not_binary")
		s.Close(protocol.CloseProtocolError, "binary messages only")
		return nil, errors.New("text message")
	}
	msg, err := protocol.Decode(data, max)
	if err != nil {
		s.bad(decodeReason(err))
		s.Close(protocol.CloseProtocolError, closeReason(err.Error()))
		return nil, err
	}
	return msg, nil
}

func decodeReason(err error) string {
	switch {
	case errors.Is(err, protocol.ErrTooLarge):
		return "too_big"
	case errors.Is(err, protocol.ErrUnknownType):
		return "unknown_type"
	}
	return "malformed"
}

func (s *session) bad(reason string) { s.h.cfg.Metrics.BadMessages.WithLabelValues(reason).Inc() }

func (s *session) readLoop() {
	idle := s.h.cfg.PingInterval * 5 / 2
	s.conn.SetPongHandler(func(string) error {
		return s.conn.SetReadDeadline(time.Now().Add(idle))
	})
	for {
		s.conn.SetReadDeadline(time.Now().Add(idle))
		msg, err := s.readMessage()
		if err != nil {
			s.readEnded(err)
			return
		}
		switch m := msg.(type) {
		case *protocol.Batch:
			s.h.cfg.Metrics.Messages.WithLabelValues("batch").Inc()
			if !s.throttle(len(m.Points)) {
				return
			}
			if err := s.handleBatch(m); err != nil {
				s.log().Info("session closed", "err", err)
				return
			}
		case *protocol.CommandResult:
			s.h.cfg.Metrics.Messages.WithLabelValues("command_result").Inc()
			if !s.throttle(0) {
				return
			}
			shallow(func() { s.handleResult(m) }) // SQLite: keep the reader's stack small
		default:
			s.bad("unexpected_type")
			s.Close(protocol.CloseProtocolError, fmt.Sprintf("unexpected message %T", msg))
			return
		}
	}
}

// rateRetryAfter is the retry-after hint of a session closed for
// sustained excess over its rate limit.
const rateRetryAfter = time.Minute

// throttle charges a message of points to the device's rate budget and
// waits out any delay before the message is handled. The reader does not
// read meanwhile, so the device's sends back up and its acks come later.
// A device throttled without a break for Rate.CloseAfter is closed with
// ClosePolicy and a retry-after hint; the message is then not handled
// (not acked: the agent resends it). false: the session is closed.
func (s *session) throttle(points int) bool {
	cfg := &s.h.cfg
	if !cfg.Rate.Enabled() {
		return true
	}
	delay, limit, sustained := s.thr.Take(&cfg.Rate, cfg.Now(), points)
	switch {
	case delay == 0:
		return true
	case sustained:
		cfg.Metrics.Limited.WithLabelValues(limit, "closed").Inc()
		s.Close(protocol.ClosePolicy, protocol.FormatRetryAfter(limit+" rate limit exceeded", rateRetryAfter))
		return false
	}
	cfg.Metrics.Limited.WithLabelValues(limit, "throttled").Inc()
	cfg.Metrics.ThrottleSeconds.Add(delay.Seconds())
	cfg.Sleep(s.ctx, delay)
	return s.ctx.Err() == nil
}

func (s *session) readEnded(err error) {
	var ce *websocket.CloseError
	switch {
	case errors.As(err, &ce):
		s.log().Info("device closed session", "code", ce.Code, "text", ce.Text)
	case s.ctx.Err() != nil:
		// closed by us; Close logged the reason
	default:
		var ne interface{ Timeout() bool }
		if errors.As(err, &ne) && ne.Timeout() {
			s.Close(protocol.CloseIdle, "no traffic")
			return
		}
		s.log().Info("session read ended", "err", err)
	}
}

// Close records why the session ends, tells the device (best effort, short
// deadline) and closes the connection. Safe to call many times from any
// goroutine; the first reason wins.
func (s *session) Close(code protocol.CloseCode, reason string) {
	s.once.Do(func() {
		s.h.cfg.Metrics.Closes.WithLabelValues(code.String()).Inc()
		if code != protocol.CloseNormal {
			s.log().Info("closing session", "code", uint16(code), "reason", reason)
		}
		// gorilla allows WriteControl concurrently with the writer goroutine.
		msg := websocket.FormatCloseMessage(int(code), closeReason(reason))
		_ = s.conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
		s.cancel()
		_ = s.conn.Close()
	})
}

// abort ends the session without a close frame (the connection is broken).
func (s *session) abort() {
	s.once.Do(func() {
		s.h.cfg.Metrics.Closes.WithLabelValues("broken").Inc()
		s.cancel()
		_ = s.conn.Close()
	})
}

// handleResult records a command result. A bad one (unknown command,
// another device's command) is counted and logged; it does not end the
// session.
func (s *session) handleResult(r *protocol.CommandResult) {
	if s.h.cfg.Commands == nil {
		s.bad("commands_disabled")
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	if err := s.h.cfg.Commands.HandleResult(ctx, s.dev.ID, r); err != nil {
		s.bad("command_result")
		s.log().Warn("command result refused", "id", r.ID, "state", r.State, "err", err)
	}
}

// SendCommand queues a command for the device (hub.CommandSender). It
// waits while maxQueued messages are queued, until ctx ends.
func (s *session) SendCommand(ctx context.Context, cmd *protocol.Command) error {
	data, err := protocol.Encode(cmd)
	if err != nil {
		return err
	}
	for {
		space, err := s.enqueue(data)
		if err != nil {
			return errors.New("session closed")
		}
		if space == nil {
			return nil
		}
		select {
		case <-space:
		case <-s.ctx.Done():
			return errors.New("session closed")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// send queues an encoded message for the writer, waiting for room as
// SendCommand does.
func (s *session) send(msg any) error {
	data, err := protocol.Encode(msg)
	if err != nil {
		return err
	}
	for {
		space, err := s.enqueue(data)
		if err != nil || space == nil {
			return err
		}
		select {
		case <-space:
		case <-s.ctx.Done():
			return s.ctx.Err()
		}
	}
}

// enqueue queues data and makes sure a writer runs. When the queue is
// full it queues nothing and returns a channel closed once there is room.
func (s *session) enqueue(data []byte) (space <-chan struct{}, err error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.ctx.Err(); err != nil {
		return nil, err
	}
	if len(s.queue) >= maxQueued {
		if s.space == nil {
			s.space = make(chan struct{})
		}
		return s.space, nil
	}
	s.queue = append(s.queue, data)
	s.startWriterLocked()
	return nil, nil
}

// ackAdvanced asks the writer to send the newest acked seq. Ingest
// workers call it: it never blocks on the connection.
func (s *session) ackAdvanced() {
	s.wmu.Lock()
	s.ackDue = true
	s.startWriterLocked()
	s.wmu.Unlock()
}

// startWriterLocked starts a writer unless one is running (or writes are
// held before the welcome) or the session is over. Call with wmu held.
func (s *session) startWriterLocked() {
	if s.writing || s.ctx.Err() != nil || !s.enterBackgroundLocked() {
		return
	}
	s.writing = true
	go s.writeQueued()
}

// writeQueued is the writer: it sends what is queued, then the newest
// ack, until nothing is left, and ends.
func (s *session) writeQueued() {
	defer s.bg.Done()
	for {
		s.wmu.Lock()
		queue, ack := s.queue, s.ackDue
		s.queue, s.ackDue = nil, false
		if s.space != nil {
			close(s.space) // the queue is empty again
			s.space = nil
		}
		if len(queue) == 0 && !ack {
			s.writing = false
			s.wmu.Unlock()
			return
		}
		s.wmu.Unlock()
		if err := s.writeAll(queue, ack); err != nil {
			s.writeFailed(err)
			return // writing stays true: no writer starts after a failure
		}
	}
}

func (s *session) writeAll(queue [][]byte, ack bool) error {
	for _, data := range queue {
		if err := s.write(websocket.BinaryMessage, data); err != nil {
			return err
		}
	}
	if ack {
		return s.writeAck()
	}
	return nil
}

// writeFailed ends a session whose connection broke: no close frame can
// reach the device.
func (s *session) writeFailed(err error) {
	if s.ctx.Err() == nil {
		s.log().Info("write failed", "err", err)
	}
	s.abort()
}

// pingTick runs on the runtime's timer: one ping (RFC 6455 §5.5.2), then
// the next tick. WriteControl may run beside the writer.
func (s *session) pingTick() {
	if !s.enterBackground() {
		return
	}
	defer s.bg.Done()
	err := s.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(s.h.cfg.WriteTimeout))
	if err != nil {
		s.writeFailed(err)
		return
	}
	s.rearm(s.pingT, s.h.cfg.PingInterval)
}

// touchTick persists last-seen while the device stays online.
func (s *session) touchTick() {
	if !s.enterBackground() {
		return
	}
	defer s.bg.Done()
	s.touch()
	s.rearm(s.touchT, s.h.cfg.TouchInterval)
}

// rearm schedules t's next tick unless the session has ended meanwhile
// (stopBackground stopped the timers before this tick re-armed it).
func (s *session) rearm(t *time.Timer, d time.Duration) {
	s.wmu.Lock()
	if !s.ended {
		t.Reset(d)
	}
	s.wmu.Unlock()
}

// enterBackground is enterBackgroundLocked for timer callbacks.
func (s *session) enterBackground() bool {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.ctx.Err() == nil && s.enterBackgroundLocked()
}

func (s *session) write(mt int, data []byte) error {
	s.conn.SetWriteDeadline(time.Now().Add(s.h.cfg.WriteTimeout))
	return s.conn.WriteMessage(mt, data)
}

func (s *session) writeAck() error {
	s.mu.Lock()
	seq := s.acked
	s.mu.Unlock()
	data, err := protocol.Encode(&protocol.Ack{Seq: seq})
	if err != nil {
		return err
	}
	if err := s.write(websocket.BinaryMessage, data); err != nil {
		return err
	}
	s.h.cfg.Metrics.AcksSent.Inc()
	return nil
}

func (s *session) touch() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.h.cfg.Store.TouchDevice(ctx, s.dev.ID, time.Now(), s.agentVer); err != nil {
		s.log().Warn("update last seen", "err", err)
	}
}

// closeReason fits an error text into a close frame (RFC 6455 §5.5: 123
// bytes of reason) without splitting a UTF-8 sequence.
func closeReason(s string) string {
	if len(s) <= protocol.MaxCloseReason {
		return s
	}
	return strings.ToValidUTF8(s[:protocol.MaxCloseReason], "")
}
