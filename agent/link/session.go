package link

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/fleetwire/fleetwire/protocol"
)

// session runs one connection: dial, hello, welcome, then send and ack
// until the connection ends. welcomed reports whether the hub accepted the
// session (used to reset the backoff).
func (l *Link) session(ctx context.Context) (welcomed bool, err error) {
	conn, err := l.dial(ctx)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	w, err := l.handshake(conn)
	if err != nil {
		return false, err
	}
	l.sessions.Add(1)
	l.maxPoints.Store(int64(w.Settings.MaxBatchPoints))
	l.connected.Store(true)
	defer l.connected.Store(false)
	l.cfg.Logger.Info("hub link up", "device", w.DeviceID, "session", w.SessionID)

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r := newReader(conn, w, l.cfg.OnCommand)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); r.run(sctx) }()
	err = l.sendLoop(sctx, conn, w, r)
	l.closeConn(conn, err)
	cancel()
	conn.Close() // ends the reader's blocked read at once
	wg.Wait()
	if rerr := r.err(); rerr != nil {
		err = rerr // the hub's close reason explains more than our write error
	}
	return true, err
}

func (l *Link) dial(ctx context.Context) (*websocket.Conn, error) {
	h := http.Header{}
	h.Set("Authorization", "Bearer "+l.Token())
	dctx, cancel := context.WithTimeout(ctx, l.cfg.HandshakeTimeout)
	defer cancel()
	conn, resp, err := l.dialer.DialContext(dctx, l.cfg.URL, h)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		if resp != nil && resp.StatusCode == http.StatusUnauthorized {
			return nil, errUnauthorized
		}
		if resp != nil && (resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusTooManyRequests) {
			if d, ok := protocol.ParseRetryAfterSeconds(resp.Header.Get("Retry-After")); ok {
				return nil, &busyErr{status: resp.StatusCode, wait: d}
			}
		}
		if resp != nil {
			return nil, fmt.Errorf("dial: %w (HTTP %d)", err, resp.StatusCode)
		}
		return nil, fmt.Errorf("dial: %w", err)
	}
	if conn.Subprotocol() != protocol.Subprotocol {
		conn.Close()
		return nil, fmt.Errorf("dial: hub did not select subprotocol %s", protocol.Subprotocol)
	}
	return conn, nil
}

func (l *Link) handshake(conn *websocket.Conn) (*protocol.Welcome, error) {
	deadline := time.Now().Add(l.cfg.HandshakeTimeout)
	hello := l.cfg.Hello
	data, err := protocol.Encode(&hello)
	if err != nil {
		return nil, err
	}
	conn.SetWriteDeadline(deadline)
	if err := conn.WriteMessage(websocket.BinaryMessage, data); err != nil {
		return nil, fmt.Errorf("send hello: %w", err)
	}
	conn.SetReadDeadline(deadline)
	conn.SetReadLimit(protocol.DefaultMaxMessageBytes)
	msg, err := readMsg(conn)
	if err != nil {
		return nil, fmt.Errorf("read welcome: %w", err)
	}
	w, ok := msg.(*protocol.Welcome)
	if !ok {
		return nil, fmt.Errorf("read welcome: got %T", msg)
	}
	if w.Settings.MaxInflight == 0 || w.Settings.PingIntervalMs == 0 {
		return nil, errors.New("read welcome: settings missing")
	}
	return w, nil
}

// readMsg reads one binary message and decodes it; a close frame becomes
// a *closeErr.
func readMsg(conn *websocket.Conn) (any, error) {
	mt, data, err := conn.ReadMessage()
	if err != nil {
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return nil, &closeErr{code: protocol.CloseCode(ce.Code), text: ce.Text}
		}
		return nil, err
	}
	if mt != websocket.BinaryMessage {
		return nil, errors.New("hub sent a text message")
	}
	return protocol.Decode(data, 0)
}

// sendLoop sends spooled batches after the last one sent, at most
// MaxInflight unacked and within the welcome's rate budget (pacer), and
// applies acks to the spool.
func (l *Link) sendLoop(ctx context.Context, conn *websocket.Conn, w *protocol.Welcome, r *reader) error {
	window := int(w.Settings.MaxInflight)
	maxBytes := int(w.Settings.MaxMessageBytes)
	var lastSent uint64
	var inflight []uint64 // sent, unacked, ascending
	pace := newPacer(w.Settings)
	// A pacing wait ends with the connection, not only with ctx.
	pctx, stopPacing := context.WithCancel(ctx)
	defer stopPacing()
	go func() {
		select {
		case <-r.done:
			stopPacing()
		case <-pctx.Done():
		}
	}()
	notify := l.cfg.Spool.Notify()
	for {
		if room := window - len(inflight); room > 0 {
			entries, err := l.cfg.Spool.Pending(lastSent, room)
			if err != nil {
				return fmt.Errorf("read spool: %w", err)
			}
			for _, e := range entries {
				if maxBytes > 0 && len(e.Data) > maxBytes {
					// The hub would close the session on it and a resend
					// would loop forever, so it is dropped. Spool acks are
					// cumulative: wait until nothing earlier is in flight.
					if len(inflight) > 0 {
						break
					}
					l.cfg.Logger.Error("batch larger than the hub accepts; dropped", "seq", e.Seq, "bytes", len(e.Data), "limit", maxBytes)
					if err := l.cfg.Spool.Ack(e.Seq); err != nil {
						return err
					}
					lastSent = e.Seq
					continue
				}
				if err := pace.wait(pctx, e.Data); err != nil {
					return err // the reader's error, if it ended, replaces it (session)
				}
				conn.SetWriteDeadline(time.Now().Add(l.cfg.WriteTimeout))
				if err := conn.WriteMessage(websocket.BinaryMessage, e.Data); err != nil {
					return fmt.Errorf("send batch %d: %w", e.Seq, err)
				}
				lastSent = e.Seq
				l.batchesOut.Add(1)
				inflight = append(inflight, e.Seq)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.done:
			return r.err()
		case <-notify:
		case data := <-l.results:
			if err := pace.wait(pctx, data); err != nil {
				return err // the reader's error, if it ended, replaces it (session)
			}
			conn.SetWriteDeadline(time.Now().Add(l.cfg.WriteTimeout))
			if err := conn.WriteMessage(websocket.BinaryMessage, data); err != nil {
				return fmt.Errorf("send command result: %w", err)
			}
		case seq := <-r.acks:
			if err := l.cfg.Spool.Ack(seq); err != nil {
				return fmt.Errorf("ack spool: %w", err)
			}
			l.lastAcked.Store(seq)
			n := 0
			for n < len(inflight) && inflight[n] <= seq {
				n++
			}
			inflight = inflight[n:]
		}
	}
}

// closeConn tells the hub why we leave, best effort.
func (l *Link) closeConn(conn *websocket.Conn, cause error) {
	code := protocol.CloseNormal
	var ce *closeErr
	if errors.As(cause, &ce) {
		return // the hub closed; gorilla already echoed the close frame
	}
	if cause != nil && !errors.Is(cause, context.Canceled) {
		code = protocol.CloseGoingAway
	}
	msg := websocket.FormatCloseMessage(int(code), "")
	_ = conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
}

// reader owns the connection's reads for one session.
type reader struct {
	conn      *websocket.Conn
	onCommand func(protocol.Command)
	idle      time.Duration
	acks      chan uint64
	done      chan struct{}
	mu        sync.Mutex
	e         error
}

func newReader(conn *websocket.Conn, w *protocol.Welcome, onCommand func(protocol.Command)) *reader {
	// 2.5 missed hub pings mean the path is dead even if TCP has not
	// noticed (SPEC.md 5.5).
	idle := time.Duration(w.Settings.PingIntervalMs) * time.Millisecond * 5 / 2
	r := &reader{conn: conn, onCommand: onCommand, idle: idle, acks: make(chan uint64, 1), done: make(chan struct{})}
	conn.SetPingHandler(func(data string) error {
		conn.SetReadDeadline(time.Now().Add(r.idle))
		err := conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(5*time.Second))
		if errors.Is(err, websocket.ErrCloseSent) {
			return nil
		}
		return err
	})
	return r
}

func (r *reader) run(ctx context.Context) {
	defer close(r.done)
	for {
		r.conn.SetReadDeadline(time.Now().Add(r.idle))
		msg, err := readMsg(r.conn)
		if err != nil {
			if ctx.Err() == nil {
				r.setErr(err)
			}
			return
		}
		switch m := msg.(type) {
		case *protocol.Ack:
			r.deliverAck(ctx, m.Seq)
		case *protocol.Command:
			if r.onCommand != nil {
				r.onCommand(*m)
			}
		default:
			r.setErr(fmt.Errorf("unexpected message %T", msg))
			return
		}
	}
}

// deliverAck keeps only the newest ack if the sender is busy: acks are
// cumulative, so an older one carries nothing the newer lacks.
func (r *reader) deliverAck(ctx context.Context, seq uint64) {
	for {
		select {
		case r.acks <- seq:
			return
		case <-ctx.Done():
			return
		default:
		}
		select {
		case old := <-r.acks:
			if old > seq {
				seq = old
			}
		default:
		}
	}
}

func (r *reader) setErr(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.e == nil {
		r.e = err
	}
}

func (r *reader) err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.e
}
