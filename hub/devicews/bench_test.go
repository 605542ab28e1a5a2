package devicews_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	neturl "net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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

// benchPoints is the number of points per benchmarked batch.
const benchPoints = 100

// benchIngest pushes b.N batches of 100 points from `devices` WebSocket
// clients through the real device endpoint into sink, each client keeping
// its in-flight window full, and returns the time from first send to last
// ack, having reported it as points/s.
func benchIngest(b *testing.B, sink hub.TelemetrySink, devices int) time.Duration {
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
	// Pre-encode: the benchmark measures the hub, not the client.
	msgs := make([][]byte, b.N/devices+1)
	for i := range msgs {
		bt := protocol.SampleBatch(uint64(i+1), benchPoints)
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
	per := max(b.N/devices, 1)
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
	b.StopTimer()
	b.ReportMetric(float64(per*devices*benchPoints)/elapsed.Seconds(), "points/s")
	return elapsed
}

func BenchmarkIngestDiscard(b *testing.B) {
	for _, n := range []int{1, 16} {
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) { benchIngest(b, discardSink{}, n) })
	}
}

// BenchmarkIngestInfluxDB is the end-to-end ingest benchmark: 16 devices
// over real WebSockets, acked only once a real InfluxDB stored their points.
// On a shared machine its points/s means little alone, so the same run also
// measures InfluxDB's own ceiling on the same server: the same kind of
// points (other device tags, so nothing is overwritten), rendered to line
// protocol beforehand and POSTed in 5,000-point requests one after another
// (as BenchmarkInfluxDirectLineProtocol in hub/influx), half right before
// and half right after the hub's run. Metrics:
//
//   - points/s: the hub, end to end;
//   - direct-points/s: InfluxDB fed directly;
//   - x-direct: their ratio (the goal is >= 0.9);
//   - hub-cpu-s and influxd-cpu-s: CPU seconds used during the hub's run by
//     this process (hub and clients) and by influxd. They share the
//     machine: CPU the hub saves is CPU InfluxDB gets.
func BenchmarkIngestInfluxDB(b *testing.B) {
	const devices = 16
	ix := influxtest.Start(b)
	dead := &countDeadLetters{}
	sink, err := influx.New(influx.Config{URL: ix.URL, Bucket: ix.Bucket}, dead, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	per := max(b.N/devices, 1)
	direct := newDirectWriter(b, ix)
	before := direct.run(b, devices, 1, per/2)

	hubCPU, influxCPU := processCPU(b), childCPU(b, "influxd")
	elapsed := benchIngest(b, sink, devices)
	hubCPU, influxCPU = processCPU(b)-hubCPU, childCPU(b, "influxd")-influxCPU

	after := direct.run(b, devices, per/2+1, per)
	if n := dead.n.Load(); n > 0 {
		b.Fatalf("%d points dead-lettered", n)
	}
	hubRate := float64(per*devices*benchPoints) / elapsed.Seconds()
	directRate := float64(direct.points) / (before + after).Seconds()
	b.ReportMetric(directRate, "direct-points/s")
	b.ReportMetric(hubRate/directRate, "x-direct")
	b.ReportMetric(hubCPU.Seconds(), "hub-cpu-s")
	b.ReportMetric(influxCPU.Seconds(), "influxd-cpu-s")
}

// directWriter POSTs line protocol to InfluxDB's write endpoint with plain
// net/http, like BenchmarkInfluxDirectLineProtocol.
type directWriter struct {
	target string
	client *http.Client
	points int // written so far
}

func newDirectWriter(b *testing.B, ix *influxtest.Server) *directWriter {
	return &directWriter{
		target: ix.URL + "/api/v2/write?" + neturl.Values{"bucket": {ix.Bucket}, "org": {""}, "precision": {"ms"}}.Encode(),
		client: &http.Client{Timeout: time.Minute},
	}
}

// run writes the batches with seqs [from, to] of `devices` devices
// "direct-<i>" (the points the hub's devices send, under other device
// tags) in requests of 5,000 points from directSenders concurrent senders
// (the hub's sink writes with 2 workers), and returns the wall time of the
// sending: rendering the requests beforehand is not timed.
func (d *directWriter) run(b *testing.B, devices, from, to int) time.Duration {
	const perRequest = 5000
	var bodies [][]byte
	var body []byte
	lines := 0
	for seq := from; seq <= to; seq++ {
		for dev := range devices {
			ib := &hub.IngestBatch{DeviceID: fmt.Sprintf("direct-%d", dev), Batch: protocol.SampleBatch(uint64(seq), benchPoints)}
			var err error
			if body, err = influx.AppendLineProtocol(body, ib); err != nil {
				b.Fatal(err)
			}
			lines += benchPoints
			if lines >= perRequest {
				bodies, body, lines = append(bodies, body), nil, 0
			}
		}
		d.points += devices * benchPoints
	}
	if lines > 0 {
		bodies = append(bodies, body)
	}
	next := make(chan []byte)
	errs := make(chan error, directSenders)
	start := time.Now()
	for range directSenders {
		go func() {
			var err error
			for body := range next {
				if err != nil {
					continue // drain
				}
				err = d.post(body)
			}
			errs <- err
		}()
	}
	for _, body := range bodies {
		next <- body
	}
	close(next)
	for range directSenders {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(start)
}

// directSenders matches hub.IngestConfig's default Workers.
const directSenders = 2

func (d *directWriter) post(body []byte) error {
	resp, err := d.client.Post(d.target, "text/plain; charset=utf-8", bytes.NewReader(body))
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("direct write: status %d", resp.StatusCode)
	}
	return nil
}

// processCPU is the user+system CPU time this process used so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// childCPU is the user+system CPU time used so far by this process's
// running children named comm (Linux /proc; 0 elsewhere).
func childCPU(b *testing.B, comm string) time.Duration {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var ticks int64
	self := strconv.Itoa(os.Getpid())
	for _, p := range stats {
		data, err := os.ReadFile(p)
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid ... utime(14) stime(15): comm may hold
		// spaces, so fields are counted after its closing parenthesis.
		s := string(data)
		open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || closing < open || s[open+1:closing] != comm {
			continue
		}
		f := strings.Fields(s[closing+1:])
		if len(f) < 13 || f[1] != self {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + st
	}
	const clockTicks = 100 // USER_HZ on Linux
	return time.Duration(ticks) * time.Second / clockTicks
}
