package protocol

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"fmt"
	"testing"
)

// deflater compresses messages as an RFC 7692 sender does, reusing one
// flate writer as gorilla/websocket pools them.
type deflater struct {
	buf bytes.Buffer
	w   *flate.Writer
}

func newDeflater(tb testing.TB) *deflater {
	d := &deflater{}
	w, err := flate.NewWriter(&d.buf, flate.BestSpeed)
	if err != nil {
		tb.Fatal(err)
	}
	d.w = w
	return d
}

// message returns what permessage-deflate puts in the payload of one
// WebSocket message: msg compressed at level 1 (gorilla/websocket's
// default) and flushed, without the trailing 4-byte empty stored block
// (00 00 ff ff, RFC 7692 §7.2.1). No context takeover: every message
// starts afresh. The frame header (2-14 bytes) is not counted. The result
// is valid until the next call.
func (d *deflater) message(tb testing.TB, msg []byte) []byte {
	tb.Helper()
	d.buf.Reset()
	d.w.Reset(&d.buf)
	if _, err := d.w.Write(msg); err != nil {
		tb.Fatal(err)
	}
	if err := d.w.Flush(); err != nil {
		tb.Fatal(err)
	}
	out := d.buf.Bytes()
	if !bytes.HasSuffix(out, []byte{0, 0, 0xff, 0xff}) {
		tb.Fatalf("flush did not end with an empty stored block: % x", out[max(0, len(out)-8):])
	}
	return out[:len(out)-4]
}

// gzipper compresses a whole body as an HTTP client posting line protocol
// with Content-Encoding: gzip would (default level).
type gzipper struct {
	buf bytes.Buffer
	w   *gzip.Writer
}

func (g *gzipper) body(tb testing.TB, data []byte) []byte {
	tb.Helper()
	g.buf.Reset()
	if g.w == nil {
		g.w = gzip.NewWriter(&g.buf)
	} else {
		g.w.Reset(&g.buf)
	}
	if _, err := g.w.Write(data); err != nil {
		tb.Fatal(err)
	}
	if err := g.w.Close(); err != nil {
		tb.Fatal(err)
	}
	return g.buf.Bytes()
}

// wireEncodings are the ways to ship a batch that BenchmarkWireEfficiency
// compares; newEncoder returns a function giving the bytes on the wire for
// a batch (reusing its buffers between calls).
var wireEncodings = []struct {
	name       string
	newEncoder func(tb testing.TB) func(b *Batch) []byte
}{
	{"cbor", func(tb testing.TB) func(*Batch) []byte {
		return func(b *Batch) []byte { return mustEncode(tb, b) }
	}},
	{"cbor+deflate", func(tb testing.TB) func(*Batch) []byte {
		d := newDeflater(tb)
		return func(b *Batch) []byte { return d.message(tb, mustEncode(tb, b)) }
	}},
	{"line-protocol", func(tb testing.TB) func(*Batch) []byte {
		return func(b *Batch) []byte { return []byte(lineProtocol(b, nil, "pi-0001")) }
	}},
	{"line-protocol+gzip", func(tb testing.TB) func(*Batch) []byte {
		g := &gzipper{}
		return func(b *Batch) []byte { return g.body(tb, []byte(lineProtocol(b, nil, "pi-0001"))) }
	}},
}

func mustEncode(tb testing.TB, m any) []byte {
	tb.Helper()
	data, err := Encode(m)
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

// BenchmarkWireEfficiency reports the bytes per point of a batch in each
// encoding and the ratio to InfluxDB line protocol (what the hub writes,
// with the device tag) for batch sizes a 1 s, 3 s and 10 s interval give.
// The sizes are deterministic; the benchmark also measures encode time.
//
//	go test -run '^$' -bench WireEfficiency ./protocol
func BenchmarkWireEfficiency(b *testing.B) {
	for _, n := range []int{10, 30, 100} {
		batch := SampleBatch(1, n)
		lp := len(lineProtocol(batch, nil, "pi-0001"))
		for _, enc := range wireEncodings {
			b.Run(fmt.Sprintf("points=%d/%s", n, enc.name), func(b *testing.B) {
				encode := enc.newEncoder(b)
				var size int
				for b.Loop() {
					size = len(encode(batch))
				}
				b.ReportMetric(float64(size)/float64(n), "B/point")
				b.ReportMetric(float64(size)/float64(lp), "x-line-protocol")
			})
		}
	}
}

// TestWireEfficiency: 100 points as the agent sends them (CBOR batch in a
// permessage-deflate message) take under 0.35x the bytes of the same
// points in line protocol. Deterministic: flate's output for given input
// and level does not vary between runs.
func TestWireEfficiency(t *testing.T) {
	b := SampleBatch(1, 100)
	cb := mustEncode(t, b)
	df := newDeflater(t).message(t, cb)
	lp := lineProtocol(b, nil, "pi-0001")
	t.Logf("100 points: CBOR %d bytes, CBOR+deflate %d bytes, line protocol %d bytes; ratios %.2f and %.2f",
		len(cb), len(df), len(lp), float64(len(cb))/float64(len(lp)), float64(len(df))/float64(len(lp)))
	if len(cb) >= len(lp) {
		t.Errorf("CBOR batch (%d bytes) is not smaller than line protocol (%d bytes)", len(cb), len(lp))
	}
	if limit := len(lp) * 35 / 100; len(df) >= limit {
		t.Errorf("deflated CBOR batch is %d bytes, want < %d (0.35x line protocol's %d)", len(df), limit, len(lp))
	}
}
