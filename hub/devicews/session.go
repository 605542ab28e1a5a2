package devicews

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
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

// session is one device connection. The reader goroutine (run) owns reads;
// writeLoop owns every data write; Close may be called from anywhere.
type session struct {
	h    *Handler
	conn *websocket.Conn
	dev  hub.Device
	log  *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once

	out     chan []byte   // encoded messages for writeLoop
	ackWake chan struct{} // capacity 1: the acked seq advanced

	mu       sync.Mutex // guards the fields below; taken by ingest workers
	window   []inflight // received, unacked, in receive order
	acked    uint64     // highest seq of the stored prefix of window
	lastRecv uint64
	agentVer string
}

func newSession(h *Handler, conn *websocket.Conn, dev hub.Device) *session {
	ctx, cancel := context.WithCancel(context.Background())
	return &session{
		h: h, conn: conn, dev: dev, ctx: ctx, cancel: cancel,
		log:     h.cfg.Logger.With("device", dev.ID, "remote", conn.RemoteAddr().String()),
		out:     make(chan []byte, 64),
		ackWake: make(chan struct{}, 1),
	}
}

// run is the session's whole life: hello under a deadline, register,
// welcome, then the read loop until the connection ends.
func (s *session) run() {
	cfg := &s.h.cfg
	defer s.cancel()
	hello, err := s.readHello()
	if err != nil {
		s.log.Info("session refused", "err", err)
		return
	}
	s.agentVer = hello.AgentVersion
	// The welcome is queued before the session is registered, so nothing
	// (a command pushed the moment the device is online) can overtake it.
	if err := s.send(s.welcome()); err != nil {
		return
	}
	cfg.Registry.Register(s.dev.ID, s)
	defer cfg.Registry.Unregister(s.dev.ID, s)
	cfg.Metrics.Connects.Inc()
	s.touch()
	defer s.touch()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.writeLoop() }()
	defer wg.Wait()
	defer s.Close(protocol.CloseNormal, "") // no-op if already closed with a reason

	s.log.Info("device connected", "agent_version", hello.AgentVersion, "boot_id", hello.BootID)
	if cfg.Commands != nil {
		cfg.Commands.DeviceConnected(s.dev.ID)
	}
	s.readLoop()
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
	return &protocol.Welcome{
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
			if err := s.handleBatch(m); err != nil {
				s.log.Info("session closed", "err", err)
				return
			}
		case *protocol.CommandResult:
			s.h.cfg.Metrics.Messages.WithLabelValues("command_result").Inc()
			s.handleResult(m)
		default:
			s.bad("unexpected_type")
			s.Close(protocol.CloseProtocolError, fmt.Sprintf("unexpected message %T", msg))
			return
		}
	}
}

func (s *session) readEnded(err error) {
	var ce *websocket.CloseError
	switch {
	case errors.As(err, &ce):
		s.log.Info("device closed session", "code", ce.Code, "text", ce.Text)
	case s.ctx.Err() != nil:
		// closed by us; Close logged the reason
	default:
		var ne interface{ Timeout() bool }
		if errors.As(err, &ne) && ne.Timeout() {
			s.Close(protocol.CloseIdle, "no traffic")
			return
		}
		s.log.Info("session read ended", "err", err)
	}
}

// Close records why the session ends, tells the device (best effort, short
// deadline) and closes the connection. Safe to call many times from any
// goroutine; the first reason wins.
func (s *session) Close(code protocol.CloseCode, reason string) {
	s.once.Do(func() {
		s.h.cfg.Metrics.Closes.WithLabelValues(code.String()).Inc()
		if code != protocol.CloseNormal {
			s.log.Info("closing session", "code", uint16(code), "reason", reason)
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
		s.log.Warn("command result refused", "id", r.ID, "state", r.State, "err", err)
	}
}

// SendCommand queues a command for the device (hub.CommandSender).
func (s *session) SendCommand(ctx context.Context, cmd *protocol.Command) error {
	data, err := protocol.Encode(cmd)
	if err != nil {
		return err
	}
	select {
	case s.out <- data:
		return nil
	case <-s.ctx.Done():
		return errors.New("session closed")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// send queues an encoded message for writeLoop.
func (s *session) send(msg any) error {
	data, err := protocol.Encode(msg)
	if err != nil {
		return err
	}
	select {
	case s.out <- data:
		return nil
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
}

// writeLoop owns data writes: queued messages, acks, pings and periodic
// last-seen updates.
func (s *session) writeLoop() {
	ping := time.NewTicker(s.h.cfg.PingInterval)
	defer ping.Stop()
	touch := time.NewTicker(s.h.cfg.TouchInterval)
	defer touch.Stop()
	for {
		var err error
		select {
		case <-s.ctx.Done():
			return
		case data := <-s.out:
			err = s.write(websocket.BinaryMessage, data)
		case <-s.ackWake:
			err = s.writeAck()
		case <-ping.C:
			err = s.write(websocket.PingMessage, nil)
		case <-touch.C:
			s.touch()
		}
		if err != nil {
			// The connection is broken: no close frame can reach the device.
			s.log.Info("write failed", "err", err)
			s.abort()
			return
		}
	}
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
		s.log.Warn("update last seen", "err", err)
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
