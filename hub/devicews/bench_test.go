package devicews_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/hub/devicews"
	"github.com/fleetwire/fleetwire/hub/influx"
	"github.com/fleetwire/fleetwire/hub/influx/influxtest"
	"github.com/fleetwire/fleetwire/protocol"
)

type discardSink struct{}

func (discardSink) Write(context.Context, []*hub.IngestBatch) error { return nil }

// countDeadLetters counts dead letters (none are expected in the benchmark).
type countDeadLetters struct{ n atomic.Int64 }

func (c *countDeadLetters) AddDeadLetters(_ context.Context, dl []hub.DeadLetter) error {
	c.n.Add(int64(len(dl)))
	return nil
}

// benchIngest pushes b.N batches of 100 points from `devices` WebSocket
// clients through the real device endpoint into sink, each client keeping
// its in-flight window full, and reports points/s from first send to last
// ack.
func benchIngest(b *testing.B, sink hub.TelemetrySink, devices int) {
	m := hub.NewMetrics(nil)
	reg := hub.NewRegistry(m)
	ing := hub.NewIngester(hub.IngestConfig{Workers: 2, MaxWritePoints: 5000}, sink, m, nil)
	h := devicews.New(devicews.Config{Store: fakeStore{}, Registry: reg, Ingester: ing, Metrics: m, MaxInflight: 64, PingInterval: time.Minute})
	srv := httptest.NewServer(h)
	defer func() {
		srv.Close()
		h.Close(context.Background())
		ing.Close(context.Background())
	}()
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	const points = 100
	// Pre-encode: the benchmark measures the hub, not the client.
	msgs := make([][]byte, b.N/devices+1)
	for i := range msgs {
		bt := protocol.SampleBatch(uint64(i+1), points)
		msgs[i], _ = protocol.Encode(bt)
	}
	conns := make([]*websocket.Conn, devices)
	for i := range conns {
		d := websocket.Dialer{Subprotocols: []string{protocol.Subprotocol}}
		c, _, err := d.Dial(url, http.Header{"Authorization": {fmt.Sprintf("Bearer good-bench-%d", i)}})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		hello, _ := protocol.Encode(&protocol.Hello{AgentVersion: "bench", ProtocolVersion: protocol.Version})
		c.WriteMessage(websocket.BinaryMessage, hello)
		c.ReadMessage() // welcome
		conns[i] = c
	}
	per := b.N / devices
	if per == 0 {
		per = 1
	}
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func(c *websocket.Conn) {
			defer wg.Done()
			acks := make(chan uint64, 64)
			go func() {
				defer close(acks)
				for {
					_, data, err := c.ReadMessage()
					if err != nil {
						return
					}
					if msg, err := protocol.Decode(data, 0); err == nil {
						if a, ok := msg.(*protocol.Ack); ok {
							acks <- a.Seq
						}
					}
				}
			}()
			var acked uint64
			sent := 0
			for acked < uint64(per) {
				for sent < per && uint64(sent)-acked < 64 {
					c.WriteMessage(websocket.BinaryMessage, msgs[sent])
					sent++
				}
				a, ok := <-acks
				if !ok {
					b.Error("connection ended early")
					return
				}
				acked = a
			}
		}(c)
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.ReportMetric(float64(per*devices*points)/elapsed.Seconds(), "points/s")
}

func BenchmarkIngestDiscard(b *testing.B) {
	for _, n := range []int{1, 16} {
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) { benchIngest(b, discardSink{}, n) })
	}
}

func BenchmarkIngestInfluxDB(b *testing.B) {
	ix := influxtest.Start(b)
	dead := &countDeadLetters{}
	sink, err := influx.New(influx.Config{URL: ix.URL, Bucket: ix.Bucket}, dead, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	benchIngest(b, sink, 16)
	if n := dead.n.Load(); n > 0 {
		b.Fatalf("%d points dead-lettered", n)
	}
}
