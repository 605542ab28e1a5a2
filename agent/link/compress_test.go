package link

import (
	"context"
	"errors"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/hub/devicews"
	"github.com/fleetwire/fleetwire/protocol"
)

// compressDevice is the only device tokenStore knows.
const compressDevice = "pi-compress"

// tokenStore authenticates the token "fwd_test" as compressDevice.
type tokenStore struct{}

func (tokenStore) AuthenticateDevice(_ context.Context, token string) (hub.Device, error) {
	if token != "fwd_test" {
		return hub.Device{}, hub.ErrUnauthorized
	}
	return hub.Device{ID: compressDevice}, nil
}

func (tokenStore) TouchDevice(context.Context, string, time.Time, string) error { return nil }

// pointSink stores nothing but counts what the hub decoded and validated.
type pointSink struct {
	mu     sync.Mutex
	points int
	seqs   []uint64
}

func (s *pointSink) Write(_ context.Context, bs []*hub.IngestBatch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range bs {
		s.points += len(b.Batch.Points)
		s.seqs = append(s.seqs, b.Batch.Seq)
	}
	return nil
}

func (s *pointSink) stored() (points, batches int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.points, len(s.seqs)
}

// startDeviceEndpoint serves the hub's real device endpoint
// (hub/devicews, which accepts permessage-deflate) on plain ws:// over
// loopback, ingesting into sink.
func startDeviceEndpoint(t *testing.T, sink hub.TelemetrySink) string {
	t.Helper()
	m := hub.NewMetrics(nil)
	ing := hub.NewIngester(hub.IngestConfig{Workers: 1}, sink, m, nil)
	h := devicews.New(devicews.Config{Store: tokenStore{}, Registry: hub.NewRegistry(m), Ingester: ing, Metrics: m})
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Close()
		if err := h.Close(ctx); err != nil {
			t.Errorf("device endpoint close: %v", err)
		}
		if err := ing.Close(ctx); err != nil {
			t.Errorf("ingester close: %v", err)
		}
	})
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/v1/device"
}

// countingConn counts the bytes the link writes to TCP: the upgrade
// request and every WebSocket frame as it leaves the process.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// wireBytes delivers the same spooled batches through a real device
// endpoint with compression on or off and returns the bytes the link wrote.
func wireBytes(t *testing.T, compress bool, batches []*protocol.Batch) int64 {
	t.Helper()
	sink := &pointSink{}
	url := startDeviceEndpoint(t, sink)
	sp := openSpool(t)
	want := 0
	for _, b := range batches {
		if _, err := sp.Append(b); err != nil {
			t.Fatal(err)
		}
		want += len(b.Points)
	}
	var written atomic.Int64
	var d net.Dialer
	l, err := New(Config{
		URL: url, Token: "fwd_test", AllowInsecure: true, Spool: sp, Compress: compress,
		Hello: protocol.Hello{AgentVersion: "test", BootID: "b"},
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return countingConn{Conn: c, n: &written}, nil
		},
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	// Acked means the hub decoded, validated and stored each batch.
	eventually(t, "every batch acked", func() bool { return sp.Stats().Batches == 0 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run returned %v", err)
	}
	if st := l.Stats(); st.Sessions != 1 {
		t.Errorf("%d sessions, want 1: byte counts would include reconnects", st.Sessions)
	}
	if points, n := sink.stored(); points != want || n != len(batches) {
		t.Errorf("hub stored %d points in %d batches, want %d in %d", points, n, want, len(batches))
	}
	return written.Load()
}

// TestCompressionOnTheWire: with hub.compress on, the bytes an agent writes
// to TCP for the same spooled batches are under half of those without
// (permessage-deflate of repeated metric names and tags), and the real hub
// endpoint still decodes and acks every batch. Plain ws:// so the count is
// not blurred by TLS record overhead.
func TestCompressionOnTheWire(t *testing.T) {
	var batches []*protocol.Batch
	for seq := range uint64(20) {
		batches = append(batches, protocol.SampleBatch(seq, 100))
	}
	plain := wireBytes(t, false, batches)
	deflated := wireBytes(t, true, batches)
	t.Logf("20 batches of 100 points: %d bytes uncompressed, %d with permessage-deflate (%.2fx)",
		plain, deflated, float64(deflated)/float64(plain))
	if deflated*2 >= plain {
		t.Errorf("compressed link wrote %d bytes, want < half of the uncompressed %d", deflated, plain)
	}
}
