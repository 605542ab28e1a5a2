package link

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/fleetwire/fleetwire/agent/spool"
	"github.com/fleetwire/fleetwire/protocol"
)

// fakeHub is a minimal protocol peer over a real WebSocket: it answers
// hello with welcome, records batches and acks them when ackAll is set.
type fakeHub struct {
	t        *testing.T
	srv      *httptest.Server
	inflight uint
	mu       sync.Mutex
	received []uint64
	conns    int
	ackAll   bool
	status   int    // non-zero: refuse the upgrade with this status
	retry    string // Retry-After header sent with status
	closeNow protocol.CloseCode
	// msgsPerSec, if set, is the message budget advertised (burst 1);
	// dropAfterOne drops each connection after its first batch.
	msgsPerSec   float64
	dropAfterOne bool
}

func newFakeHub(t *testing.T) *fakeHub {
	f := &fakeHub{t: t, inflight: 4, ackAll: true}
	up := websocket.Upgrader{Subprotocols: []string{protocol.Subprotocol}}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		status, retry := f.status, f.retry
		f.conns++
		f.mu.Unlock()
		if retry != "" {
			w.Header().Set("Retry-After", retry)
		}
		if status != 0 {
			http.Error(w, "no", status)
			return
		}
		if r.Header.Get("Authorization") != "Bearer fwd_test" {
			http.Error(w, "bad token", http.StatusUnauthorized)
			return
		}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		f.serve(c)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeHub) serve(c *websocket.Conn) {
	if _, _, err := c.ReadMessage(); err != nil { // hello
		return
	}
	w, _ := protocol.Encode(&protocol.Welcome{SessionID: "s", DeviceID: "d", Settings: protocol.Settings{
		MaxMessageBytes: 1 << 20, MaxBatchPoints: 100, MaxInflight: f.inflight, PingIntervalMs: 1000,
		MsgsPerSec: f.msgsPerSec, MsgsBurst: 1}})
	c.WriteMessage(websocket.BinaryMessage, w)
	f.mu.Lock()
	code := f.closeNow
	f.mu.Unlock()
	if code != 0 {
		c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(int(code), "bye"))
		return
	}
	for {
		_, data, err := c.ReadMessage()
		if err != nil {
			return
		}
		msg, err := protocol.Decode(data, 0)
		if err != nil {
			f.t.Errorf("hub got undecodable message: %v", err)
			return
		}
		b := msg.(*protocol.Batch)
		f.mu.Lock()
		f.received = append(f.received, b.Seq)
		ack, drop := f.ackAll, f.dropAfterOne
		f.mu.Unlock()
		if drop {
			return
		}
		if ack {
			a, _ := protocol.Encode(&protocol.Ack{Seq: b.Seq})
			c.WriteMessage(websocket.BinaryMessage, a)
		}
	}
}

func (f *fakeHub) got() []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]uint64(nil), f.received...)
}

func (f *fakeHub) connections() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conns
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func openSpool(t *testing.T) *spool.Spool {
	sp, err := spool.Open(t.TempDir(), spool.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	return sp
}

func appendN(t *testing.T, sp *spool.Spool, n int) {
	for i := 0; i < n; i++ {
		if _, err := sp.Append(protocol.SampleBatch(0, 3)); err != nil {
			t.Fatal(err)
		}
	}
}

func runLink(t *testing.T, f *fakeHub, sp *spool.Spool, token string) (*Link, func()) {
	l, err := New(Config{
		URL: "ws" + strings.TrimPrefix(f.srv.URL, "http"), Token: token, AllowInsecure: true, Spool: sp,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		AuthBackoff: time.Hour, MaxAuthBackoff: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	return l, func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v", err)
		}
	}
}

func TestSendsSpoolAndAppliesAcks(t *testing.T) {
	f := newFakeHub(t)
	sp := openSpool(t)
	appendN(t, sp, 10)
	l, stop := runLink(t, f, sp, "fwd_test")
	defer stop()
	eventually(t, "spool drained", func() bool { return sp.Stats().Batches == 0 })
	appendN(t, sp, 3) // live batches after the backlog
	eventually(t, "live batches acked", func() bool { return sp.Stats().Batches == 0 && len(f.got()) == 13 })
	for i, seq := range f.got() {
		if seq != uint64(i+1) {
			t.Fatalf("batches out of order: %v", f.got())
		}
	}
	if l.Stats().LastAcked != 13 {
		t.Fatalf("last acked %d", l.Stats().LastAcked)
	}
}

func TestRespectsInflightWindowAndResendsAfterReconnect(t *testing.T) {
	f := newFakeHub(t)
	f.ackAll = false
	sp := openSpool(t)
	appendN(t, sp, 10)
	_, stop := runLink(t, f, sp, "fwd_test")
	eventually(t, "window filled", func() bool { return len(f.got()) == 4 })
	if n := len(f.got()); n != 4 {
		t.Fatalf("sent %d unacked batches, window is 4", n)
	}
	stop()
	// Unacked batches stay spooled; a new link resends them from seq 1.
	if sp.Stats().Batches != 10 {
		t.Fatalf("spool holds %d, want 10", sp.Stats().Batches)
	}
	f.mu.Lock()
	f.ackAll, f.received = true, nil
	f.mu.Unlock()
	_, stop = runLink(t, f, sp, "fwd_test")
	defer stop()
	eventually(t, "resent and acked", func() bool { return sp.Stats().Batches == 0 })
	if got := f.got(); got[0] != 1 || len(got) != 10 {
		t.Fatalf("resend: %v", got)
	}
}

func TestReconnectsAfterHubClose(t *testing.T) {
	f := newFakeHub(t)
	f.closeNow = protocol.CloseGoingAway
	sp := openSpool(t)
	l, stop := runLink(t, f, sp, "fwd_test")
	defer stop()
	eventually(t, "several reconnects", func() bool { return f.connections() >= 3 })
	f.mu.Lock()
	f.closeNow = 0
	f.mu.Unlock()
	appendN(t, sp, 2)
	eventually(t, "delivered after reconnect", func() bool { return sp.Stats().Batches == 0 })
	if l.Stats().Sessions < 3 {
		t.Fatalf("sessions %d", l.Stats().Sessions)
	}
}

func TestUnauthorizedBacksOffLong(t *testing.T) {
	f := newFakeHub(t)
	sp := openSpool(t)
	l, stop := runLink(t, f, sp, "fwd_wrong")
	defer stop()
	// AuthBackoff is an hour, unlike the 10-50 ms network backoff.
	eventually(t, "refusal noticed", func() bool { return strings.Contains(l.Stats().LastError, "401") })
	if st := l.Stats(); st.RetryIn < time.Hour || f.connections() != 1 {
		t.Fatalf("after a 401: retry in %s, %d attempts; want >= 1h and 1", st.RetryIn, f.connections())
	}
}

// A hub at its accept-rate limit answers 503 with Retry-After: the agent
// waits exactly that; without a usable hint, the (short) network backoff.
func TestBusyHubRetryAfter(t *testing.T) {
	for _, c := range []struct {
		status      int
		header      string
		min, max    time.Duration
		errContains string
	}{
		{http.StatusServiceUnavailable, "7", 7 * time.Second, 8 * time.Second, "hub busy (HTTP 503), retry after 7s"}, // + 0-1 s jitter
		{http.StatusTooManyRequests, "86400", 24 * time.Hour, 24*time.Hour + time.Second, "HTTP 429"},
		{http.StatusServiceUnavailable, "86401", 0, time.Second, "HTTP 503"},                         // over a day: ignored
		{http.StatusServiceUnavailable, "0", 0, time.Second, "HTTP 503"},                             // not positive: ignored
		{http.StatusServiceUnavailable, "Wed, 21 Oct 2026 07:28:00 GMT", 0, time.Second, "HTTP 503"}, // date form: ignored
		{http.StatusServiceUnavailable, "", 0, time.Second, "HTTP 503"},
	} {
		f := newFakeHub(t)
		f.status, f.retry = c.status, c.header
		sp := openSpool(t)
		l, stop := runLink(t, f, sp, "fwd_test")
		eventually(t, "refusal noticed", func() bool { return l.Stats().LastError != "" })
		st := l.Stats()
		stop()
		if st.RetryIn < c.min || st.RetryIn > c.max || !strings.Contains(st.LastError, c.errContains) {
			t.Errorf("%d Retry-After %q: retry in %s (%q); want %s..%s and %q", c.status, c.header, st.RetryIn, st.LastError, c.min, c.max, c.errContains)
		}
	}
}

func TestRevokedCloseBacksOffLong(t *testing.T) {
	f := newFakeHub(t)
	f.closeNow = protocol.CloseRevoked
	sp := openSpool(t)
	l, stop := runLink(t, f, sp, "fwd_test")
	defer stop()
	eventually(t, "revocation noticed", func() bool { return strings.Contains(l.Stats().LastError, "4005") })
	if st := l.Stats(); st.RetryIn < time.Hour || f.connections() != 1 {
		t.Fatalf("after revocation: retry in %s, %d attempts; want >= 1h and 1", st.RetryIn, f.connections())
	}
}

func TestBackoffJitterBounds(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: time.Second, Rand: func() float64 { return 0.999999 }}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		got := b.Next()
		if got > w*time.Millisecond || got < w*time.Millisecond*99/100 {
			t.Fatalf("attempt %d: %s, want just under %dms", i, got, w)
		}
	}
	b.Reset()
	b.Rand = func() float64 { return 0 }
	if d := b.Next(); d != 0 {
		t.Fatalf("full jitter must reach 0, got %s", d)
	}
}

func TestValidate(t *testing.T) {
	sp := openSpool(t)
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{URL: "ws://h/v1/device", Token: "t", Spool: sp}, "hub.allow_insecure"},
		{Config{URL: "http://h/x", Token: "t", Spool: sp}, "scheme"},
		{Config{URL: "wss://h/v1/device", Spool: sp}, "hub.token"},
		{Config{URL: "::", Token: "t", Spool: sp}, "hub.url"},
	} {
		if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want mention of %q", tc.cfg.URL, err, tc.want)
		}
	}
}

func TestWaitAfterFollowsClosePolicy(t *testing.T) {
	l := &Link{cfg: Config{MinBackoff: time.Second, MaxBackoff: time.Minute, AuthBackoff: time.Hour, MaxAuthBackoff: 2 * time.Hour,
		Rand: func() float64 { return 0.5 }}}
	net := Backoff{Min: time.Second, Max: time.Minute, Rand: l.cfg.Rand}
	auth := Backoff{Min: time.Hour, Max: 2 * time.Hour, Rand: l.cfg.Rand}
	cases := []struct {
		err      error
		min, max time.Duration
	}{
		{errUnauthorized, time.Hour, 2 * time.Hour},
		{&closeErr{code: protocol.CloseRevoked}, time.Hour, 3 * time.Hour},
		{&closeErr{code: protocol.CloseIdle}, 0, time.Second},
		{&closeErr{code: protocol.ClosePolicy, text: protocol.FormatRetryAfter("slow down", 30*time.Second)}, 30500 * time.Millisecond, 30500 * time.Millisecond}, // + jitter 0.5 s
		{&closeErr{code: protocol.CloseGoingAway}, 0, time.Minute},
		// A hub shutting down spreads its devices' return with a hint.
		{&closeErr{code: protocol.CloseGoingAway, text: protocol.FormatRetryAfter("hub shutting down", 7*time.Second)}, 7500 * time.Millisecond, 7500 * time.Millisecond},
		{errors.New("connection reset"), 0, time.Minute},
	}
	for _, tc := range cases {
		if d := l.waitAfter(tc.err, &net, &auth); d < tc.min || d > tc.max {
			t.Errorf("%v: wait %s, want %s..%s", tc.err, d, tc.min, tc.max)
		}
	}
}

// TestOversizedBatchDroppedOnlyWhenNothingInFlight: a spooled batch over
// the hub's message limit is dropped, but never by an ack that would also
// delete earlier batches the hub has not stored.
func TestOversizedBatchDroppedOnlyWhenNothingInFlight(t *testing.T) {
	f := newFakeHub(t)
	f.ackAll = false
	sp := openSpool(t)
	appendN(t, sp, 2)
	big := protocol.SampleBatch(0, 1)
	big.Points[0].Value = strings.Repeat("x", 2<<20) // over the fake hub's 1 MiB
	if _, err := sp.Append(big); err != nil {
		t.Fatal(err)
	}
	appendN(t, sp, 1)
	_, stop := runLink(t, f, sp, "fwd_test")
	eventually(t, "two small batches sent", func() bool { return len(f.got()) == 2 })
	stop()
	if st := sp.Stats(); st.Batches != 4 {
		t.Fatalf("spool holds %d batches, want all 4: nothing may be acked while 1-2 are in flight", st.Batches)
	}
	f.mu.Lock()
	f.ackAll, f.received = true, nil
	f.mu.Unlock()
	_, stop = runLink(t, f, sp, "fwd_test")
	defer stop()
	eventually(t, "spool drained", func() bool { return sp.Stats().Batches == 0 })
	if got := f.got(); len(got) != 3 || got[2] != 4 {
		t.Fatalf("hub received %v, want [1 2 4]", got)
	}
}
