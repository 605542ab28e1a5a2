package influx_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/hub/influx"
	"github.com/fleetwire/fleetwire/hub/influx/influxtest"
	"github.com/fleetwire/fleetwire/protocol"
)

// benchWritePoints is the size of one benchmarked write: the ingest
// default of points gathered per sink write.
const benchWritePoints = 5000

// benchBatches returns one write's worth of telemetry: 10 devices, each a
// batch of 50 metrics at 10 instants one second apart, starting at base.
// Successive bases 10 s apart give every write fresh points.
func benchBatches(base int64) []*hub.IngestBatch {
	const devices, metrics, instants = 10, 50, 10
	out := make([]*hub.IngestBatch, 0, devices)
	for d := range devices {
		b := &hub.IngestBatch{
			DeviceID: fmt.Sprintf("bench-%02d", d),
			Labels:   map[string]string{"site": "lab", "group": "g1"},
			Batch: &protocol.Batch{Seq: 1, BaseTime: base, Tags: map[string]string{"host": fmt.Sprintf("pi-%02d", d)},
				Points: make([]protocol.Point, 0, metrics*instants)},
		}
		for i := range instants {
			for m := range metrics {
				var v any = float64(m*i) + 0.5
				if m%5 == 0 {
					v = int64(m * i)
				}
				b.Batch.Points = append(b.Batch.Points, protocol.Point{Name: fmt.Sprintf("sys.metric_%02d", m), DT: int64(i * 1000), Value: v})
			}
		}
		out = append(out, b)
	}
	return out
}

func reportPointsPerSec(b *testing.B, points int) {
	b.ReportMetric(float64(points)/b.Elapsed().Seconds(), "points/s")
}

// BenchmarkPoints measures the batch -> line protocol rendering (into a
// reused buffer, as the sink does).
func BenchmarkPoints(b *testing.B) {
	batches := benchBatches(1_700_000_000_000)
	var buf []byte
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		buf = buf[:0]
		for _, batch := range batches {
			var err error
			if buf, err = influx.AppendLineProtocol(buf, batch); err != nil {
				b.Fatal(err)
			}
		}
	}
	reportPointsPerSec(b, b.N*benchWritePoints)
}

// BenchmarkWriteInflux measures Sink.Write of 5000 points to a real influxd.
func BenchmarkWriteInflux(b *testing.B) {
	srv := influxtest.Start(b)
	f := sinkFor(b, srv)
	base := time.Now().Add(-24 * time.Hour).UnixMilli()
	writes := make([][]*hub.IngestBatch, b.N)
	for i := range writes {
		writes[i] = benchBatches(base + int64(i)*10_000)
	}
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		if err := f.sink.Write(ctx, writes[i]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportPointsPerSec(b, b.N*benchWritePoints)
	if n := f.metric(b, "fleethub_influx_points_written_total"); n != float64(b.N*benchWritePoints) {
		b.Fatalf("points written %v, want %d", n, b.N*benchWritePoints)
	}
}

// BenchmarkInfluxDirectLineProtocol is the baseline for BenchmarkWriteInflux:
// the same points, rendered to line protocol beforehand, POSTed to
// /api/v2/write with plain net/http. The ratio of the two is the sink's
// overhead (conversion, encoding, bookkeeping).
func BenchmarkInfluxDirectLineProtocol(b *testing.B) {
	srv := influxtest.Start(b)
	base := time.Now().Add(-24 * time.Hour).UnixMilli()
	bodies := make([]string, b.N)
	for i := range bodies {
		var body []byte
		for _, batch := range benchBatches(base + int64(i)*10_000) {
			var err error
			if body, err = influx.AppendLineProtocol(body, batch); err != nil {
				b.Fatal(err)
			}
		}
		bodies[i] = string(body)
	}
	target := srv.URL + "/api/v2/write?" + url.Values{"bucket": {srv.Bucket}, "org": {""}, "precision": {"ms"}}.Encode()
	client := &http.Client{Timeout: 30 * time.Second}
	b.ResetTimer()
	for i := range b.N {
		resp, err := client.Post(target, "text/plain; charset=utf-8", strings.NewReader(bodies[i]))
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	b.StopTimer()
	reportPointsPerSec(b, b.N*benchWritePoints)
}
