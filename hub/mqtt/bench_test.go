package mqtt_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/hub/influx"
	"github.com/fleetwire/fleetwire/hub/influx/influxtest"
	"github.com/fleetwire/fleetwire/hub/mqtt/mqtttest"
	"github.com/fleetwire/fleetwire/hub/mqtt/payload"
	"github.com/fleetwire/fleetwire/protocol"
)

const (
	benchDevices    = 16
	benchPublishers = 4
	benchPoints     = 10  // per message: a sensor board's reading
	benchWindow     = 256 // unacked publishes per publisher
)

// benchMessage is message i in format f: benchPoints values with their
// own time, as a device with a clock sends them.
func benchMessage(f payload.Format, i int, base int64) []byte {
	t := base + int64(i)
	switch f {
	case payload.FormatLine: // one line, one field per point: env.m0 .. env.m9
		b := []byte("env ")
		for p := range benchPoints {
			if p > 0 {
				b = append(b, ',')
			}
			b = fmt.Appendf(b, "m%d=%d.5", p, i%1000)
		}
		return fmt.Appendf(b, " %d", t*1e6)
	case payload.FormatCBOR:
		batch := &protocol.Batch{Seq: 1, BaseTime: t}
		for p := range benchPoints {
			batch.Points = append(batch.Points, protocol.Point{Name: fmt.Sprintf("env.m%d", p), Value: float64(i%1000) + 0.5})
		}
		data, err := protocol.Encode(batch)
		if err != nil {
			panic(err)
		}
		return data
	}
	b := fmt.Appendf(nil, `{"time":%d,"points":[`, t)
	for p := range benchPoints {
		if p > 0 {
			b = append(b, ',')
		}
		b = fmt.Appendf(b, `{"name":"env.m%d","value":%d.5}`, p, i%1000)
	}
	return append(b, "]}"...)
}

// benchFormats are the payload formats the ingest benchmark runs.
var benchFormats = []payload.Format{payload.FormatJSON, payload.FormatLine, payload.FormatCBOR}

// BenchmarkMQTTIngest: b.N messages of 10 points (JSON envelope, one line
// of line protocol, or the protocol's CBOR batch) from 16 devices,
// published at QoS 1 by 4 clients into a real Mosquitto, through the
// bridge into a real InfluxDB; timed from the first publish until the
// bridge has stored every point (acked after InfluxDB, as in production).
// The same points are then written into the same InfluxDB directly by the
// hub's InfluxDB writer (hub/influx.Sink, 2 concurrent 5,000-point writes
// like the hub's ingester): x-direct is the bridge's rate over that.
func BenchmarkMQTTIngest(b *testing.B) {
	for _, f := range benchFormats {
		b.Run("format="+string(f), func(b *testing.B) { benchIngest(b, f) })
	}
}

func benchIngest(b *testing.B, format payload.Format) {
	db := influxtest.Start(b)
	r := newRig(b, db, func(s *rigSetup) { s.cfg.MaxPending = 100_000 })
	for d := range benchDevices {
		r.device(fmt.Sprintf("bench-%02d", d), nil)
	}
	base := time.Now().Add(-time.Hour).UnixMilli()
	msgs := make([][]byte, b.N)
	for i := range msgs {
		msgs[i] = benchMessage(format, i, base)
	}
	pubs := make([]paho.Client, benchPublishers)
	for p := range pubs {
		pubs[p] = r.client(fmt.Sprintf("bench-pub-%d", p), nil)
	}
	want := float64(b.N * benchPoints)
	stored := func() float64 { return r.metric("fleethub_mqtt_points_stored_total", nil) }

	b.ResetTimer()
	start := time.Now()
	publishAll(pubs, msgs)
	eventually(b, 10*time.Minute, "every point stored", func() bool { return stored() >= want }) // polling is part of the measured time
	elapsed := time.Since(start)
	b.StopTimer()
	rate := want / elapsed.Seconds()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(rate, "points/s")

	direct := directRate(b, db, format, msgs)
	b.ReportMetric(direct, "direct-points/s")
	b.ReportMetric(rate/direct, "x-direct")
	b.ReportMetric(0, "ns/op")
}

// directRate writes the messages' points straight into InfluxDB with the
// hub's writer and returns points per second.
func directRate(b *testing.B, db *influxtest.Server, format payload.Format, msgs [][]byte) float64 {
	b.Helper()
	sink, err := influx.New(influx.Config{URL: db.URL, Bucket: db.Bucket}, nopDeadLetters{}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	var batches []*hub.IngestBatch
	for i, m := range msgs {
		pb, err := payload.Decode(format, m, time.Now(), protocol.Limits{})
		if err != nil {
			b.Fatal(err)
		}
		batches = append(batches, &hub.IngestBatch{DeviceID: fmt.Sprintf("direct-%02d", i%benchDevices), Batch: pb})
	}
	const perWrite = 5000 / benchPoints
	work := make(chan []*hub.IngestBatch, len(batches)/perWrite+1)
	for i := 0; i < len(batches); i += perWrite {
		work <- batches[i:min(i+perWrite, len(batches))]
	}
	close(work)
	start := time.Now()
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for w := range work {
				if err := sink.Write(context.Background(), w); err != nil {
					b.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	return float64(len(batches)*benchPoints) / time.Since(start).Seconds()
}

type nopDeadLetters struct{}

func (nopDeadLetters) AddDeadLetters(context.Context, []hub.DeadLetter) error { return nil }

// BenchmarkMQTTReceiveOnly is the transport's ceiling for the same
// messages: the same Mosquitto, publishers and QoS 1 flow into one paho
// client that acks each message from a separate goroutine (as the bridge
// does) and stores nothing.
func BenchmarkMQTTReceiveOnly(b *testing.B) {
	broker := mqtttest.Start(b)
	var got atomic.Int64
	acks := make(chan paho.Message, b.N)
	o := paho.NewClientOptions().AddBroker(broker.URL).SetClientID("receive-only").SetCleanSession(false).
		SetAutoAckDisabled(true).SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
		got.Add(1)
		acks <- m
	})
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatal(tok.Error())
	}
	defer c.Disconnect(100)
	go func() {
		for m := range acks {
			m.Ack()
		}
	}()
	defer close(acks)
	if tok := c.Subscribe("fleetwire/+/telemetry", 1, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatal(tok.Error())
	}
	base := time.Now().Add(-time.Hour).UnixMilli()
	msgs := make([][]byte, b.N)
	for i := range msgs {
		msgs[i] = benchMessage(payload.FormatJSON, i, base)
	}
	pubs := make([]paho.Client, benchPublishers)
	for p := range pubs {
		pubs[p] = paho.NewClient(paho.NewClientOptions().AddBroker(broker.URL).SetClientID(fmt.Sprintf("bench-pub-%d", p)))
		if tok := pubs[p].Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			b.Fatal(tok.Error())
		}
		defer pubs[p].Disconnect(100)
	}
	b.ResetTimer()
	start := time.Now()
	publishAll(pubs, msgs)
	eventually(b, 10*time.Minute, "every message received", func() bool { return got.Load() >= int64(b.N) }) // polling is part of the measured time
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(b.N*benchPoints)/elapsed.Seconds(), "points/s")
	b.ReportMetric(0, "ns/op")
}

// publishAll publishes msgs round-robin over the clients, message i to
// device i mod benchDevices, each client keeping benchWindow publishes
// unacked, and returns once the broker acked them all.
func publishAll(pubs []paho.Client, msgs [][]byte) {
	var wg sync.WaitGroup
	for p, c := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var window []paho.Token
			for i := p; i < len(msgs); i += len(pubs) {
				topic := fmt.Sprintf("fleetwire/bench-%02d/telemetry", i%benchDevices)
				window = append(window, c.Publish(topic, 1, false, msgs[i]))
				if len(window) == benchWindow {
					window[0].Wait()
					window = window[1:]
				}
			}
			for _, tok := range window {
				tok.Wait()
			}
		}()
	}
	wg.Wait()
}
