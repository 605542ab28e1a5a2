package dashws

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/hub/influx"
	"github.com/fleetwire/fleetwire/hub/influx/influxtest"
	"github.com/fleetwire/fleetwire/protocol"
)

// fakeHistory records queries and answers with fixed series or an error.
type fakeHistory struct {
	mu      sync.Mutex
	queries []influx.HistoryQuery
	series  []influx.Series
	err     error
}

func (f *fakeHistory) History(_ context.Context, q influx.HistoryQuery) ([]influx.Series, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queries = append(f.queries, q)
	return f.series, f.err
}

func getHistory(t *testing.T, base, path, auth string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+path, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestHistoryHandler(t *testing.T) {
	src := &fakeHistory{series: []influx.Series{
		{Tags: map[string]string{"path": "/"}, T: []int64{1000, 2000}, V: []float64{1.5, 2.5}},
		{Tags: map[string]string{"path": "/data"}, T: []int64{1000}, V: []float64{7}},
	}}
	mux := http.NewServeMux()
	mux.Handle("GET /api/v1/devices/{id}/history", NewHistoryHandler(src, fakeAuth))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	resp, body := getHistory(t, srv.URL, "/api/v1/devices/pi-01/history?metric=disk.used_percent&range=24h", "Bearer viewer")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("status %d headers %v: %s", resp.StatusCode, resp.Header, body)
	}
	want := `{"device":"pi-01","range_seconds":86400,"every_seconds":144,"series":[` +
		`{"name":"disk.used_percent","tags":{"path":"/"},"t":[1000,2000],"v":[1.5,2.5]},` +
		`{"name":"disk.used_percent","tags":{"path":"/data"},"t":[1000],"v":[7]}]}`
	if strings.TrimSpace(body) != want {
		t.Fatalf("body\n%s\nwant\n%s", body, want)
	}
	// The series decode as RecentResponse's do: one parser for both.
	var rr RecentResponse
	if err := json.Unmarshal([]byte(body), &rr); err != nil || rr.Device != "pi-01" || len(rr.Series) != 2 || rr.Series[0].V[1] != 2.5 {
		t.Fatalf("as RecentResponse: %v %+v", err, rr)
	}
	if q := src.queries[0]; q != (influx.HistoryQuery{Device: "pi-01", Metric: "disk.used_percent", Range: 24 * time.Hour, MaxPoints: influx.DefaultMaxPoints}) {
		t.Fatalf("query %+v", q)
	}

	// Default range 1h; 7d.
	for path, rng := range map[string]time.Duration{
		"/api/v1/devices/pi-01/history?metric=cpu.usage_percent":          time.Hour,
		"/api/v1/devices/pi-01/history?metric=cpu.usage_percent&range=7d": 7 * 24 * time.Hour,
	} {
		src.queries = nil
		if resp, body := getHistory(t, srv.URL, path, "Bearer viewer"); resp.StatusCode != 200 || len(src.queries) != 1 || src.queries[0].Range != rng {
			t.Fatalf("%s: %d %s %+v", path, resp.StatusCode, body, src.queries)
		}
	}

	// Empty history is an empty list, not null.
	src.series = nil
	if _, body := getHistory(t, srv.URL, "/api/v1/devices/pi-01/history?metric=cpu.usage_percent", "Bearer viewer"); !strings.Contains(body, `"series":[]`) {
		t.Fatalf("empty: %s", body)
	}

	// Bad requests name the parameter and never reach the source.
	src.queries = nil
	for path, param := range map[string]string{
		"/api/v1/devices/pi-01/history":                                       "metric",
		"/api/v1/devices/pi-01/history?metric=cpu%22)":                        "metric",
		"/api/v1/devices/pi-01/history?metric=cpu.usage_percent&range=2h":     "range",
		"/api/v1/devices/pi-01/history?metric=cpu.usage_percent&range=1d":     "range",
		"/api/v1/devices/PI/history?metric=cpu.usage_percent":                 "device",
		"/api/v1/devices/pi-01/history?metric=9cpu&range=24h":                 "metric",
		"/api/v1/devices/pi-01/history?metric=cpu.usage_percent&range=-1h":    "range",
		"/api/v1/devices/pi-01/history?metric=cpu.usage_percent&range=86400s": "range",
	} {
		if resp, body := getHistory(t, srv.URL, path, "Bearer viewer"); resp.StatusCode != 400 || !strings.Contains(body, param) {
			t.Errorf("%s: %d %q, want 400 naming %s", path, resp.StatusCode, body, param)
		}
	}
	if len(src.queries) != 0 {
		t.Fatalf("bad requests reached the source: %+v", src.queries)
	}

	// Auth before anything else.
	if resp, _ := getHistory(t, srv.URL, "/api/v1/devices/pi-01/history?metric=cpu.usage_percent", ""); resp.StatusCode != 401 {
		t.Fatalf("no session: %d", resp.StatusCode)
	}
	if resp, _ := getHistory(t, srv.URL, "/api/v1/devices/pi-01/history?metric=x&range=bad", "Bearer nobody"); resp.StatusCode != 403 {
		t.Fatalf("no role: %d", resp.StatusCode)
	}

	// Source errors: not numeric -> 400 naming metric; anything else -> 502.
	src.err = fmt.Errorf("history power.on: %w", influx.ErrNotNumeric)
	if resp, body := getHistory(t, srv.URL, "/api/v1/devices/pi-01/history?metric=power.on", "Bearer viewer"); resp.StatusCode != 400 || !strings.Contains(body, "metric") {
		t.Fatalf("not numeric: %d %s", resp.StatusCode, body)
	}
	src.err = errors.New("connection refused")
	if resp, body := getHistory(t, srv.URL, "/api/v1/devices/pi-01/history?metric=cpu.usage_percent", "Bearer viewer"); resp.StatusCode != 502 || strings.Contains(body, "refused") {
		t.Fatalf("influx down: %d %s", resp.StatusCode, body)
	}
}

// nopDeadLetters satisfies influx.New; the test writes nothing invalid.
type nopDeadLetters struct{}

func (nopDeadLetters) AddDeadLetters(context.Context, []hub.DeadLetter) error { return nil }

// TestHistoryHandlerInflux serves real history: points written through the
// Sink come back through the handler.
func TestHistoryHandlerInflux(t *testing.T) {
	db := influxtest.Start(t)
	sink, err := influx.New(influx.Config{URL: db.URL, Bucket: db.Bucket}, nopDeadLetters{}, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	now := time.Now()
	base := now.Add(-20 * time.Minute).UnixMilli()
	b := &hub.IngestBatch{DeviceID: "pi-01", Batch: &protocol.Batch{BaseTime: base}}
	for i := range 10 {
		b.Batch.Points = append(b.Batch.Points, protocol.Point{Name: "cpu.usage_percent", DT: int64(i) * 60_000, Value: float64(i)})
	}
	other := &hub.IngestBatch{DeviceID: "pi-02", Batch: &protocol.Batch{BaseTime: base,
		Points: []protocol.Point{{Name: "cpu.usage_percent", Value: 99.0}}}}
	if err := sink.Write(context.Background(), []*hub.IngestBatch{b, other}); err != nil {
		t.Fatal(err)
	}

	mux := http.NewServeMux()
	mux.Handle("GET /api/v1/devices/{id}/history", NewHistoryHandler(sink, fakeAuth))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	resp, body := getHistory(t, srv.URL, "/api/v1/devices/pi-01/history?metric=cpu.usage_percent&range=1h", "Bearer viewer")
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	var hr HistoryResponse
	if err := json.Unmarshal([]byte(body), &hr); err != nil {
		t.Fatal(err)
	}
	if hr.RangeSeconds != 3600 || hr.EverySeconds != 6 || len(hr.Series) != 1 || len(hr.Series[0].V) != 10 {
		t.Fatalf("%s", body)
	}
	for i, v := range hr.Series[0].V {
		if v != float64(i) || hr.Series[0].T[i] <= base+int64(i)*60_000 || hr.Series[0].T[i] > base+int64(i)*60_000+6000 {
			t.Fatalf("point %d: t=%d v=%g; body %s", i, hr.Series[0].T[i], v, body)
		}
	}
}
