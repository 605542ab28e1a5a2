package influx_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/hub/influx"
	"github.com/fleetwire/fleetwire/hub/influx/influxtest"
	"github.com/fleetwire/fleetwire/protocol"
)

// deadLetters is an in-memory hub.DeadLetterStore.
type deadLetters struct {
	mu   sync.Mutex
	list []hub.DeadLetter
	fail error // returned by AddDeadLetters while set
}

func (d *deadLetters) AddDeadLetters(_ context.Context, dl []hub.DeadLetter) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fail != nil {
		return d.fail
	}
	d.list = append(d.list, dl...)
	return nil
}

func (d *deadLetters) all() []hub.DeadLetter {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]hub.DeadLetter(nil), d.list...)
}

// fixture is a Sink with its own registry and dead-letter store.
type fixture struct {
	sink *influx.Sink
	reg  *prometheus.Registry
	dead *deadLetters
}

func newSink(t testing.TB, cfg influx.Config) *fixture {
	t.Helper()
	f := &fixture{reg: prometheus.NewRegistry(), dead: &deadLetters{}}
	if cfg.Rand == nil {
		cfg.Rand = rand.New(rand.NewPCG(1, 2))
	}
	sink, err := influx.New(cfg, f.dead, f.reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("new sink: %v", err)
	}
	t.Cleanup(sink.Close)
	f.sink = sink
	return f
}

func sinkFor(t testing.TB, srv *influxtest.Server) *fixture {
	return newSink(t, influx.Config{URL: srv.URL, Bucket: srv.Bucket, MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
}

// metric returns a counter's value or a histogram's sample count.
func (f *fixture) metric(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !hasLabels(m, labels) {
				continue
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s%v not found", name, labels)
	return 0
}

func hasLabels(m *dto.Metric, kv []string) bool {
	for i := 0; i+1 < len(kv); i += 2 {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == kv[i] && l.GetValue() == kv[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// deviceRecords returns the stored values of a device, keyed by
// "measurement.field".
func deviceRecords(t testing.TB, srv *influxtest.Server, device string) map[string]map[string]any {
	t.Helper()
	q := fmt.Sprintf(`from(bucket: %s)
  |> range(start: 1970-01-01T00:00:00Z, stop: 2200-01-01T00:00:00Z)
  |> filter(fn: (r) => r.device == %s)`, influxtest.FluxString(srv.Bucket), influxtest.FluxString(device))
	out := map[string]map[string]any{}
	for _, rec := range srv.Query(t, q) {
		key := fmt.Sprintf("%s.%s", rec["_measurement"], rec["_field"])
		if _, dup := out[key]; dup {
			t.Fatalf("%s stored more than once", key)
		}
		out[key] = rec
	}
	return out
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func numbered(device, name string, n int, base int64) *hub.IngestBatch {
	b := &hub.IngestBatch{DeviceID: device, Batch: &protocol.Batch{Seq: 1, BaseTime: base}}
	for i := range n {
		b.Batch.Points = append(b.Batch.Points, protocol.Point{Name: name, DT: int64(i), Value: float64(i)})
	}
	return b
}

// TestSink runs the tests that can share one influxd; each uses its own
// device ID so their data does not mix.
func TestSink(t *testing.T) {
	t.Parallel()
	srv := influxtest.Start(t)
	t.Run("WriteAndReadBack", func(t *testing.T) { testWriteAndReadBack(t, srv) })
	t.Run("FieldTypeConflict", func(t *testing.T) { testFieldTypeConflict(t, srv) })
	t.Run("MaxPointsPerWrite", func(t *testing.T) { testMaxPointsPerWrite(t, srv) })
	t.Run("Ping", func(t *testing.T) { testPing(t, srv) })
	t.Run("DeadLetterStoreFailure", func(t *testing.T) { testDeadLetterStoreFailure(t, srv) })
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, srv) })
}

func testWriteAndReadBack(t *testing.T, srv *influxtest.Server) {
	f := sinkFor(t, srv)
	if err := f.sink.Write(context.Background(), []*hub.IngestBatch{sampleBatch("rb-1")}); err != nil {
		t.Fatalf("write: %v", err)
	}
	got := deviceRecords(t, srv, "rb-1")
	common := map[string]any{"device": "rb-1", "host": "pi-1", "rack": "r1", "site": "lab"}
	want := []struct {
		key   string
		value any
		dt    int64
		tags  map[string]any
	}{
		{"cpu.usage_percent", 12.5, 0, common},
		{"mem.used_bytes", int64(123456789), 1, common},
		{"disk.free_bytes", int64(42), 2, common},
		{"uptime.value", int64(3600), 3, common},
		{"net.up", true, 4, common},
		{"os.release", `bookworm "12", a\b`, 5, common},
		{"temp.cpu", -3.25, 1500, map[string]any{"device": "rb-1", "host": "point-host", "rack": "r1", "site": "lab", "sensor": "t0"}},
	}
	if len(got) != len(want) {
		t.Errorf("stored %d series, want %d: %v", len(got), len(want), got)
	}
	for _, w := range want {
		rec, ok := got[w.key]
		if !ok {
			t.Errorf("%s: not stored", w.key)
			continue
		}
		if rec["_value"] != w.value {
			t.Errorf("%s: value %T(%v), want %T(%v)", w.key, rec["_value"], rec["_value"], w.value, w.value)
		}
		if ts, _ := rec["_time"].(time.Time); !ts.Equal(time.UnixMilli(baseTime + w.dt)) {
			t.Errorf("%s: time %v, want %v", w.key, rec["_time"], time.UnixMilli(baseTime+w.dt).UTC())
		}
		for k, v := range w.tags {
			if rec[k] != v {
				t.Errorf("%s: tag %s = %v, want %v", w.key, k, rec[k], v)
			}
		}
		if _, extra := rec["sensor"]; extra && w.key != "temp.cpu" {
			t.Errorf("%s: has tag sensor of another point", w.key)
		}
	}
	if n := f.metric(t, "fleethub_influx_points_written_total"); n != float64(len(want)) {
		t.Errorf("points_written_total = %v, want %d", n, len(want))
	}
	// Writing the same batch again (an agent resend) stores nothing new.
	if err := f.sink.Write(context.Background(), []*hub.IngestBatch{sampleBatch("rb-1")}); err != nil {
		t.Fatalf("rewrite: %v", err)
	}
	if n := srv.CountPoints(t, "temp", "cpu", "rb-1"); n != 1 {
		t.Errorf("after resend: %d temp.cpu points, want 1", n)
	}
}

func testFieldTypeConflict(t *testing.T, srv *influxtest.Server) {
	f := sinkFor(t, srv)
	ctx := context.Background()
	first := &hub.IngestBatch{DeviceID: "conf-1", Batch: &protocol.Batch{Seq: 1, BaseTime: baseTime,
		Points: []protocol.Point{{Name: "fan.rpm", Value: int64(1200)}}}}
	if err := f.sink.Write(ctx, []*hub.IngestBatch{first}); err != nil {
		t.Fatalf("first write: %v", err)
	}
	// The float fan.rpm conflicts with the stored integer field; the other
	// points of the write are fine, some before and some after it.
	second := numbered("conf-1", "load.avg", 9, baseTime+10)
	second.Batch.Points = append(second.Batch.Points[:4],
		append([]protocol.Point{{Name: "fan.rpm", DT: 100, Value: 1300.5}}, second.Batch.Points[4:]...)...)
	other := numbered("conf-2", "load.avg", 3, baseTime)
	if err := f.sink.Write(ctx, []*hub.IngestBatch{second, other}); err != nil {
		t.Fatalf("conflicting write: %v", err)
	}
	dl := f.dead.all()
	if len(dl) != 1 {
		t.Fatalf("dead letters %+v, want 1", dl)
	}
	if wantLine := fmt.Sprintf("fan,device=conf-1 rpm=1300.5 %d\n", baseTime+10+100); dl[0].Line != wantLine {
		t.Errorf("dead letter line %q, want %q", dl[0].Line, wantLine)
	}
	if dl[0].DeviceID != "conf-1" || !strings.Contains(dl[0].Error, "field type conflict") || dl[0].At.IsZero() {
		t.Errorf("dead letter %+v", dl[0])
	}
	if n := srv.CountPoints(t, "load", "avg", "conf-1"); n != 9 {
		t.Errorf("conf-1 load.avg: %d points stored, want 9", n)
	}
	if n := srv.CountPoints(t, "load", "avg", "conf-2"); n != 3 {
		t.Errorf("conf-2 load.avg: %d points stored, want 3", n)
	}
	if n := srv.CountPoints(t, "fan", "rpm", "conf-1"); n != 1 {
		t.Errorf("fan.rpm: %d points stored, want only the first", n)
	}
	if n := f.metric(t, "fleethub_influx_dead_letters_total"); n != 1 {
		t.Errorf("dead_letters_total = %v, want 1", n)
	}
	if n := f.metric(t, "fleethub_influx_write_errors_total", "kind", "rejected"); n < 1 {
		t.Errorf("write_errors_total{rejected} = %v, want >= 1", n)
	}
	if n := f.metric(t, "fleethub_influx_write_errors_total", "kind", "transient"); n != 0 {
		t.Errorf("write_errors_total{transient} = %v, want 0", n)
	}
}

func testMaxPointsPerWrite(t *testing.T, srv *influxtest.Server) {
	for _, c := range []struct{ points, requests int }{{1, 1}, {10, 1}, {11, 2}, {20, 2}, {25, 3}} {
		t.Run(fmt.Sprint(c.points), func(t *testing.T) {
			f := newSink(t, influx.Config{URL: srv.URL, Bucket: srv.Bucket, MaxPointsPerWrite: 10})
			device := fmt.Sprintf("split-%d", c.points)
			// Spread the points over two batches so the split does not
			// follow batch boundaries.
			a := numbered(device, "s.v", c.points/2, baseTime)
			b := numbered(device, "s.v", c.points-c.points/2, baseTime+1000)
			if err := f.sink.Write(context.Background(), []*hub.IngestBatch{a, b}); err != nil {
				t.Fatalf("write: %v", err)
			}
			if n := f.metric(t, "fleethub_influx_write_duration_seconds"); n != float64(c.requests) {
				t.Errorf("%d write requests, want %d", int(n), c.requests)
			}
			if n := srv.CountPoints(t, "s", "v", device); n != c.points {
				t.Errorf("%d points stored, want %d", n, c.points)
			}
		})
	}
}

func testPing(t *testing.T, srv *influxtest.Server) {
	ctx := context.Background()
	for _, bucket := range []string{srv.Bucket, srv.Database} {
		f := newSink(t, influx.Config{URL: srv.URL, Bucket: bucket})
		if err := f.sink.Ping(ctx); err != nil {
			t.Errorf("ping bucket %q: %v", bucket, err)
		}
	}
	for _, bucket := range []string{"nope/autogen", "nope", srv.Database + "/nope"} {
		f := newSink(t, influx.Config{URL: srv.URL, Bucket: bucket})
		err := f.sink.Ping(ctx)
		if err == nil || !strings.Contains(err.Error(), "not found") {
			t.Errorf("ping bucket %q: err %v, want not found", bucket, err)
		}
	}
}

// TestWriteSurvivesOutage: with InfluxDB down Write keeps retrying and does
// not return; once it is back, Write returns nil and every point is stored
// exactly once.
func TestWriteSurvivesOutage(t *testing.T) {
	t.Parallel()
	srv := influxtest.Start(t)
	f := sinkFor(t, srv)
	if err := f.sink.Ping(context.Background()); err != nil {
		t.Fatalf("ping while up: %v", err)
	}
	srv.Stop(t)
	if err := f.sink.Ping(context.Background()); err == nil {
		t.Fatal("ping while down: no error")
	}

	batch := numbered("outage-1", "o.v", 50, baseTime)
	done := make(chan error, 1)
	go func() { done <- f.sink.Write(context.Background(), []*hub.IngestBatch{batch}) }()

	waitFor(t, "3 retries", 10*time.Second, func() bool {
		return f.metric(t, "fleethub_influx_retries_total") >= 3
	})
	select {
	case err := <-done:
		t.Fatalf("Write returned %v while InfluxDB was down", err)
	default:
	}
	if n := f.metric(t, "fleethub_influx_write_errors_total", "kind", "transient"); n < 3 {
		t.Errorf("write_errors_total{transient} = %v, want >= 3", n)
	}

	srv.Restart(t)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("write after restart: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Write did not return after InfluxDB came back")
	}
	if n := srv.CountPoints(t, "o", "v", "outage-1"); n != 50 {
		t.Errorf("%d points stored, want 50", n)
	}
	if n := f.metric(t, "fleethub_influx_points_written_total"); n != 50 {
		t.Errorf("points_written_total = %v, want 50", n)
	}
	if len(f.dead.all()) != 0 {
		t.Errorf("dead letters: %+v", f.dead.all())
	}
	if err := f.sink.Ping(context.Background()); err != nil {
		t.Errorf("ping after restart: %v", err)
	}
}

// TestWriteCancelDuringOutage: a Write stuck on a dead server returns soon
// after its context ends, with the context's error.
func TestWriteCancelDuringOutage(t *testing.T) {
	t.Parallel()
	// Long backoff: Write must return from inside the backoff wait.
	f := newSink(t, influx.Config{URL: "http://" + deadAddr(t), Bucket: "fleet/autogen", MinBackoff: 5 * time.Second, MaxBackoff: 10 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- f.sink.Write(ctx, []*hub.IngestBatch{numbered("cancel-1", "c.v", 5, baseTime)}) }()
	waitFor(t, "a failed attempt", 10*time.Second, func() bool {
		return f.metric(t, "fleethub_influx_write_errors_total", "kind", "transient") >= 1
	})
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Write returned %v, want context.Canceled", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Write did not return within 1 s of cancel")
	}
}

// testDeadLetterStoreFailure: refused points are not acked (Write does
// not return nil) until the dead-letter store has them.
func testDeadLetterStoreFailure(t *testing.T, srv *influxtest.Server) {
	f := sinkFor(t, srv)
	ctx := context.Background()
	b := &hub.IngestBatch{DeviceID: "dls-1", Batch: &protocol.Batch{Seq: 1, BaseTime: baseTime,
		Points: []protocol.Point{{Name: "x.y", Value: "text"}}}}
	if err := f.sink.Write(ctx, []*hub.IngestBatch{b}); err != nil {
		t.Fatal(err)
	}
	f.dead.mu.Lock()
	f.dead.fail = errors.New("disk full")
	f.dead.mu.Unlock()
	b.Batch.Points[0].Value = int64(1)
	b.Batch.BaseTime++
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := f.sink.Write(wctx, []*hub.IngestBatch{b}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("write with failing dead-letter store: %v, want deadline exceeded", err)
	}
	f.dead.mu.Lock()
	f.dead.fail = nil
	f.dead.mu.Unlock()
	if err := f.sink.Write(ctx, []*hub.IngestBatch{b}); err != nil {
		t.Fatal(err)
	}
	if dl := f.dead.all(); len(dl) != 1 || dl[0].DeviceID != "dls-1" {
		t.Fatalf("dead letters %+v", dl)
	}
}

// TestStatusHandling drives the error paths InfluxDB rarely produces on
// demand with a scripted HTTP server: 413 splits without dead letters, 401
// and 503 are retried, 422 on a single point dead-letters it.
func TestStatusHandling(t *testing.T) {
	var mu sync.Mutex
	var stored []string
	failures := map[int]int{http.StatusUnauthorized: 1, http.StatusServiceUnavailable: 1}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		lines := strings.Split(strings.TrimSpace(string(body)), "\n")
		mu.Lock()
		defer mu.Unlock()
		for code, n := range failures {
			if n > 0 {
				failures[code]--
				http.Error(w, `{"code":"x","message":"scripted"}`, code)
				return
			}
		}
		switch {
		case len(lines) > 2:
			w.WriteHeader(http.StatusRequestEntityTooLarge)
		case strings.Contains(string(body), "bad"):
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnprocessableEntity)
			io.WriteString(w, `{"code":"invalid","message":"bad point"}`)
		default:
			stored = append(stored, lines...)
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	defer srv.Close()
	f := newSink(t, influx.Config{URL: srv.URL, Bucket: "b", MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	b := numbered("st-1", "s.v", 7, 1000)
	b.Batch.Points[3].Value = "bad"
	if err := f.sink.Write(context.Background(), []*hub.IngestBatch{b}); err != nil {
		t.Fatalf("write: %v", err)
	}
	if len(stored) != 6 {
		t.Errorf("stored %d lines, want 6: %q", len(stored), stored)
	}
	if dl := f.dead.all(); len(dl) != 1 || !strings.Contains(dl[0].Line, `v="bad"`) || !strings.Contains(dl[0].Error, "bad point") {
		t.Errorf("dead letters %+v", dl)
	}
	if n := f.metric(t, "fleethub_influx_retries_total"); n != 2 {
		t.Errorf("retries_total = %v, want 2", n)
	}
}
