package dashws

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/hub/live"
	wire "github.com/fleetwire/fleetwire/protocol/live"
)

// Causes a session ends with, beyond the subscriber's own.
var (
	errClientGone  = errors.New("client closed")
	errBadFrame    = errors.New("binary or oversized message")
	errReplyFlood  = errors.New("too many unanswered client messages")
	errWriteFailed = errors.New("write failed")
)

// session is one dashboard connection. run's goroutine owns reads; the
// writer goroutine owns every write (gorilla allows one writer at a time).
type session struct {
	h       *Handler
	ws      *websocket.Conn
	user    string
	role    hub.Role
	log     *slog.Logger
	replies chan any // pongs and errors for the writer; bounded

	ctx    context.Context
	cancel context.CancelCauseFunc
	sub    *live.Subscriber
}

// run is the connection's whole life: subscribe, start the writer, read
// until the connection or the hub ends, then wait for the writer.
func (s *session) run() {
	s.ctx, s.cancel = context.WithCancelCause(s.h.base)
	defer s.cancel(errClientGone) // no-op if a cause was set first
	s.sub = s.h.cfg.Broker.Subscribe(s.ctx)
	defer s.sub.Close()
	// A writer stuck on a browser that stopped reading would only notice
	// the broker's verdict at its write deadline; closing the socket now
	// frees the memory at once.
	stop := context.AfterFunc(s.sub.Context(), func() {
		if s.sub.Err() == live.ErrTooSlow {
			s.cancel(live.ErrTooSlow)
			s.ws.NetConn().Close()
		}
	})
	defer stop()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.writeLoop() }()
	s.readLoop()
	s.cancel(errClientGone)
	wg.Wait()
	cause := context.Cause(s.ctx)
	if cause != live.ErrTooSlow { // the broker counted that one
		s.h.count(reason(cause))
	}
	s.log.Debug("live session ended", "cause", cause)
}

func reason(cause error) string {
	switch cause {
	case errShutdown:
		return "shutdown"
	case errBadFrame:
		return "bad_message"
	case errReplyFlood:
		return "reply_flood"
	case errWriteFailed:
		return "write_error"
	}
	return "client_closed"
}

func (s *session) readLoop() {
	pongWait := s.h.cfg.PingInterval * 5 / 2
	s.ws.SetReadLimit(s.h.cfg.MaxMessageBytes)
	s.ws.SetReadDeadline(time.Now().Add(pongWait))
	s.ws.SetPongHandler(func(string) error {
		return s.ws.SetReadDeadline(time.Now().Add(pongWait))
	})
	for {
		typ, data, err := s.ws.ReadMessage()
		if err != nil {
			if errors.Is(err, websocket.ErrReadLimit) {
				s.cancel(errBadFrame)
			}
			return
		}
		s.ws.SetReadDeadline(time.Now().Add(pongWait))
		if typ != websocket.TextMessage {
			s.cancel(errBadFrame)
			return
		}
		if !s.handle(data) {
			s.cancel(errReplyFlood)
			return
		}
	}
}

// handle applies one client message. It returns false when the reply
// queue is full: the browser sends faster than it reads, so it goes.
func (s *session) handle(data []byte) bool {
	m, err := wire.DecodeClient(data)
	if err != nil {
		return s.reply(wire.Error{Type: wire.TypeError, Error: err.Error()})
	}
	switch {
	case m.Type == wire.TypePing:
		return s.reply(wire.Pong{Type: wire.TypePong})
	case m.Type == wire.TypeSubscribe && m.Topic == wire.TopicFleet:
		err = s.sub.SubscribeFleet()
	case m.Type == wire.TypeSubscribe:
		err = s.sub.SubscribeDevice(m.Device)
	case m.Topic == wire.TopicFleet:
		s.sub.UnsubscribeFleet()
	default:
		s.sub.UnsubscribeDevice(m.Device)
	}
	if err != nil {
		return s.reply(wire.Error{Type: wire.TypeError, Error: err.Error()})
	}
	return true
}

func (s *session) reply(m any) bool {
	select {
	case s.replies <- m:
		return true
	default:
		return false
	}
}

// writeLoop owns the connection's writes: hello, then broker messages,
// replies and pings until the session ends, then a close frame that says
// whether to come back.
func (s *session) writeLoop() {
	defer s.ws.NetConn().Close() // unblocks the reader whatever ended us
	ping := time.NewTicker(s.h.cfg.PingInterval)
	defer ping.Stop()
	hello := wire.Hello{Type: wire.TypeHello, User: s.user, Role: string(s.role)}
	if !s.writeJSON(hello) {
		return
	}
	for {
		var err error
		select {
		case <-s.ctx.Done():
			s.writeClose(context.Cause(s.ctx))
			return
		case data := <-s.sub.Out():
			err = s.write(websocket.TextMessage, data)
		case m := <-s.replies:
			if !s.writeJSON(m) {
				return
			}
		case <-ping.C:
			err = s.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(s.h.cfg.WriteTimeout))
		}
		if err != nil {
			s.cancel(errWriteFailed)
			return
		}
	}
}

func (s *session) write(typ int, data []byte) error {
	s.ws.SetWriteDeadline(time.Now().Add(s.h.cfg.WriteTimeout))
	return s.ws.WriteMessage(typ, data)
}

func (s *session) writeJSON(m any) bool {
	data, err := json.Marshal(m)
	if err == nil {
		err = s.write(websocket.TextMessage, data)
	}
	if err != nil {
		s.cancel(errWriteFailed)
		return false
	}
	return true
}

// writeClose maps the cause to a close code: 1001 for shutdown (reconnect
// to the next hub), 1013 for too slow (reconnect later), 1008 for a
// protocol abuse, 1000 otherwise.
func (s *session) writeClose(cause error) {
	code, text := websocket.CloseNormalClosure, ""
	switch cause {
	case errShutdown:
		code, text = websocket.CloseGoingAway, "hub shutting down"
	case live.ErrTooSlow:
		code, text = websocket.CloseTryAgainLater, "too slow"
	case errBadFrame, errReplyFlood:
		code, text = websocket.ClosePolicyViolation, cause.Error()
	}
	_ = s.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(time.Second))
}
