// Package link keeps the agent's connection to the hub: it dials wss:// with
// the device token, says hello, sends every spooled batch the hub has not
// acked (within the hub's in-flight window), deletes batches from the spool
// as acks arrive, and reconnects with capped, jittered backoff.
package link

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/fleetwire/fleetwire/agent/spool"
	"github.com/fleetwire/fleetwire/protocol"
)

// Spool is the part of the agent's spool the link uses.
type Spool interface {
	Pending(after uint64, max int) ([]spool.Entry, error)
	Ack(seq uint64) error
	Notify() <-chan struct{}
}

// Config configures a Link. Zero durations take the documented defaults.
type Config struct {
	URL           string      // wss://host:8443/v1/device
	Token         string      // device token (fwd_...)
	TLS           *tls.Config // verification of the hub; required for wss
	AllowInsecure bool        // permit ws:// (local development only)
	// Compress offers permessage-deflate (RFC 7692, no context takeover):
	// a typical 100-point batch shrinks to about a third. The hub may decline.
	Compress bool
	// NetDialContext, if set, makes the TCP connections (e.g. from a chosen
	// source address, as fleetsim does); default net.Dialer.
	NetDialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	Hello          protocol.Hello
	Spool          Spool
	Logger         *slog.Logger
	// OnCommand, if set, receives every command from the hub. It runs on
	// the reader goroutine and must return quickly.
	OnCommand func(protocol.Command)
	// Rotate, if set, gets a new device token in exchange for the current
	// one when the hub asks for it (close code 4009, CloseRotateToken) and
	// keeps it; the link then reconnects with the new token. Without it,
	// such a close is a plain reconnect.
	Rotate func(ctx context.Context, current string) (string, error)

	MinBackoff       time.Duration // default 1s
	MaxBackoff       time.Duration // default 60s
	AuthBackoff      time.Duration // floor after the hub refused the token, default 5m
	MaxAuthBackoff   time.Duration // cap after refusals, default 1h
	HandshakeTimeout time.Duration // TCP+TLS+upgrade+welcome, default 20s
	WriteTimeout     time.Duration // per message, default 15s
	Rand             func() float64
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.MinBackoff, time.Second)
	def(&c.MaxBackoff, time.Minute)
	def(&c.AuthBackoff, 5*time.Minute)
	def(&c.MaxAuthBackoff, time.Hour)
	def(&c.HandshakeTimeout, 20*time.Second)
	def(&c.WriteTimeout, 15*time.Second)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Hello.ProtocolVersion = protocol.Version
}

// Validate checks the config; messages name the agent config key.
func (c *Config) Validate() error {
	u, err := url.Parse(c.URL)
	if err != nil || u.Host == "" {
		return fmt.Errorf("hub.url: %q is not a URL", c.URL)
	}
	switch u.Scheme {
	case "wss":
	case "ws":
		if !c.AllowInsecure {
			return errors.New("hub.url: ws:// is refused unless hub.allow_insecure is set (local development only)")
		}
	default:
		return fmt.Errorf("hub.url: scheme %q must be wss", u.Scheme)
	}
	if c.Token == "" {
		return errors.New("hub.token: required")
	}
	if c.Spool == nil {
		return errors.New("link: spool required")
	}
	return nil
}

// Stats are the link's counters, safe to read at any time.
type Stats struct {
	Connected  bool
	Sessions   uint64 // sessions that got a welcome
	BatchesOut uint64
	LastAcked  uint64
	LastError  string        // why the last session ended or failed
	RetryIn    time.Duration // the wait chosen after it
}

// Link is the agent's connection manager.
type Link struct {
	cfg    Config
	dialer websocket.Dialer

	connected  atomic.Bool
	sessions   atomic.Uint64
	batchesOut atomic.Uint64
	lastAcked  atomic.Uint64
	maxPoints  atomic.Int64 // welcome.settings.max_batch_points of the last session
	results    chan []byte  // encoded command results waiting for a session
	dropped    atomic.Uint64

	mu      sync.Mutex // guards lastErr, retryIn and token
	lastErr string
	retryIn time.Duration
	token   string // the device token, replaced by a rotation
}

// New checks cfg and returns a Link; call Run to connect.
func New(cfg Config) (*Link, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// 32 results wait for a session at most (the command executor runs a
	// few at a time; older final results are re-reported from its state
	// dir after a reconnect): a small buffer per link, which fleetsim runs
	// by the thousand.
	l := &Link{cfg: cfg, results: make(chan []byte, 32), token: cfg.Token}
	if l.cfg.OnCommand == nil {
		// Without an executor every command is refused at once, so the hub
		// does not keep redelivering it until its TTL.
		l.cfg.OnCommand = func(c protocol.Command) {
			l.SendResult(protocol.CommandResult{ID: c.ID, State: "rejected", Error: "this agent does not run commands"})
		}
	}
	l.dialer = websocket.Dialer{
		Proxy:            http.ProxyFromEnvironment,
		HandshakeTimeout: cfg.HandshakeTimeout,
		TLSClientConfig:  cfg.TLS,
		Subprotocols:     []string{protocol.Subprotocol},
		ReadBufferSize:   2048,
		WriteBufferSize:  8192,
		NetDialContext:   cfg.NetDialContext,
		// Deflate at the fastest level: nearly all of the gain for little CPU.
		EnableCompression: cfg.Compress,
	}
	return l, nil
}

// Stats returns a snapshot of the counters.
func (l *Link) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Stats{
		Connected:  l.connected.Load(),
		Sessions:   l.sessions.Load(),
		BatchesOut: l.batchesOut.Load(),
		LastAcked:  l.lastAcked.Load(),
		LastError:  l.lastErr,
		RetryIn:    l.retryIn,
	}
}

// SendResult queues a command result for the hub without blocking. Results
// wait for the next session; if too many pile up the newest are dropped:
// the hub redelivers unfinished commands after a reconnect and the agent
// re-reports their stored results, so nothing final is lost.
func (l *Link) SendResult(r protocol.CommandResult) {
	data, err := protocol.Encode(&r)
	if err != nil {
		l.cfg.Logger.Error("encode command result", "id", r.ID, "err", err)
		return
	}
	select {
	case l.results <- data:
	default:
		l.dropped.Add(1)
	}
}

// MaxBatchPoints is the largest batch the hub accepts, from the last
// welcome; 0 before the first one.
func (l *Link) MaxBatchPoints() int { return int(l.maxPoints.Load()) }

// Run connects and reconnects until ctx ends. It returns ctx's error.
func (l *Link) Run(ctx context.Context) error {
	net := Backoff{Min: l.cfg.MinBackoff, Max: l.cfg.MaxBackoff, Rand: l.cfg.Rand}
	auth := Backoff{Min: l.cfg.AuthBackoff, Max: l.cfg.MaxAuthBackoff, Rand: l.cfg.Rand}
	for {
		welcomed, err := l.session(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if welcomed {
			net.Reset()
			auth.Reset()
		}
		var wait time.Duration
		if ce := (*closeErr)(nil); errors.As(err, &ce) && ce.code == protocol.CloseRotateToken && l.cfg.Rotate != nil && !l.rotate(ctx) {
			wait = net.Next() // not rotated: the hub will ask again; do not loop at once
		} else {
			wait = l.waitAfter(err, &net, &auth)
		}
		l.mu.Lock()
		l.lastErr, l.retryIn = fmt.Sprint(err), wait
		l.mu.Unlock()
		l.cfg.Logger.Info("hub link down", "err", err, "retry_in", wait.Round(time.Millisecond))
		if !sleep(ctx, wait) {
			return ctx.Err()
		}
	}
}

// Token is the device token the link uses now.
func (l *Link) Token() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.token
}

// rotate trades the token for a new one. On failure the old token stays
// (the hub honours it until a new one is used) and the hub will ask again.
func (l *Link) rotate(ctx context.Context) bool {
	old := l.Token()
	rctx, cancel := context.WithTimeout(ctx, l.cfg.HandshakeTimeout)
	defer cancel()
	tok, err := l.cfg.Rotate(rctx, old)
	if err != nil {
		l.cfg.Logger.Warn("token rotation failed; keeping the current token", "err", err)
		return false
	}
	l.mu.Lock()
	l.token = tok
	l.mu.Unlock()
	l.cfg.Logger.Info("device token rotated")
	return true
}

// waitAfter picks the wait for the way the last session ended (SPEC.md
// section 6). Refused credentials and "do not retry" closes wait far longer
// than network errors, so a revoked device does not hammer the hub.
func (l *Link) waitAfter(err error, net, auth *Backoff) time.Duration {
	if errors.Is(err, errUnauthorized) {
		return l.cfg.AuthBackoff + auth.Next()
	}
	var busy *busyErr
	if errors.As(err, &busy) {
		// The hub said when: come back then (its hint is already spread
		// over its backlog); the exponential backoff starts over.
		net.Reset()
		return busy.wait + l.jitter()
	}
	var ce *closeErr
	if !errors.As(err, &ce) {
		return net.Next()
	}
	switch ce.code.Retry() {
	case protocol.RetryNever:
		return l.cfg.AuthBackoff + auth.Next()
	case protocol.RetryNow:
		net.Reset()
		return (&Backoff{Min: l.cfg.MinBackoff, Max: l.cfg.MinBackoff, Rand: l.cfg.Rand}).Next()
	case protocol.RetryAfterHint:
		if d, ok := protocol.ParseRetryAfter(ce.text); ok {
			net.Reset()
			return d + l.jitter()
		}
	}
	return net.Next()
}

// jitter is a random 0-1 s added to retry-after hints: hints are whole
// seconds, and devices told the same second should not arrive together.
func (l *Link) jitter() time.Duration {
	r := l.cfg.Rand
	if r == nil {
		r = rand.Float64
	}
	return time.Duration(r() * float64(time.Second))
}

var errUnauthorized = errors.New("hub refused the device token (401)")

// busyErr is a refused upgrade with a Retry-After (the hub's accept-rate
// limit, or a proxy in front of it).
type busyErr struct {
	status int
	wait   time.Duration
}

func (e *busyErr) Error() string {
	return fmt.Sprintf("hub busy (HTTP %d), retry after %s", e.status, e.wait)
}

// closeErr is a session ended by the hub's close frame.
type closeErr struct {
	code protocol.CloseCode
	text string
}

func (e *closeErr) Error() string {
	return fmt.Sprintf("hub closed session: %d %s: %s", uint16(e.code), e.code, e.text)
}
