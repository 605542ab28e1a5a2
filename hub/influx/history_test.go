package influx_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"

	"github.com/fleetwire/fleetwire/hub/influx"
	"github.com/fleetwire/fleetwire/hub/influx/influxtest"
)

// writeLines writes line protocol with millisecond timestamps.
func writeLines(t *testing.T, srv *influxtest.Server, lines []string) {
	t.Helper()
	c := influxdb2.NewClientWithOptions(srv.URL, "", influxdb2.DefaultOptions().SetPrecision(time.Millisecond))
	defer c.Close()
	if err := c.WriteAPIBlocking("", srv.Bucket).WriteRecord(context.Background(), lines...); err != nil {
		t.Fatalf("write: %v", err)
	}
}

type histPoint struct {
	device, path string
	t            time.Time
	v            float64
}

func TestHistory(t *testing.T) {
	srv := influxtest.Start(t)
	f := sinkFor(t, srv)
	ctx := context.Background()
	now := time.Now()

	// disk.used_percent every 10 s over the last 2 hours for two devices
	// and two paths each; cpu.usage_percent for dev-a as another metric.
	var pts []histPoint
	var lines []string
	for i := range 720 {
		ts := now.Add(-time.Duration(i)*10*time.Second - time.Second)
		for di, dev := range []string{"dev-a", "dev-b"} {
			for pi, path := range []string{"/", "/data"} {
				v := float64(i%13) + float64(pi)*100 + float64(di)*1000
				pts = append(pts, histPoint{dev, path, ts, v})
				lines = append(lines, fmt.Sprintf(`disk,device=%s,path=%s,site=lab used_percent=%g %d`, dev, path, v, ts.UnixMilli()))
			}
		}
		lines = append(lines, fmt.Sprintf(`cpu,device=dev-a usage_percent=%d %d`, 5000+i, ts.UnixMilli()))
	}
	// An integer field with three points in one known 6 s window
	// (1h range: 3600 s / 600 = 6 s windows, aligned to the epoch):
	// 10, 20, 60 -> mean 30.
	w0 := now.Add(-30 * time.Minute).Truncate(6 * time.Second)
	for i, v := range []int{10, 20, 60} {
		lines = append(lines, fmt.Sprintf(`temp,device=dev-a celsius=%di %d`, v, w0.Add(time.Duration(i+1)*time.Second).UnixMilli()))
	}
	lines = append(lines,
		fmt.Sprintf(`power,device=dev-a on=true %d`, now.Add(-time.Minute).UnixMilli()),
		fmt.Sprintf(`agent,device=dev-a status="ok" %d`, now.Add(-time.Minute).UnixMilli()))
	writeLines(t, srv, lines)

	// expected mean of dev-a path=/ points in [from, to).
	meanOf := func(dev, path string, from, to time.Time) (float64, int) {
		sum, n := 0.0, 0
		for _, p := range pts {
			if p.device == dev && p.path == path && !p.t.Before(from) && p.t.Before(to) {
				sum += p.v
				n++
			}
		}
		return sum / float64(n), n
	}

	for _, tc := range []struct {
		rng   time.Duration
		every time.Duration
	}{{influx.Range1h, 6 * time.Second}, {influx.Range24h, 144 * time.Second}} {
		t.Run(tc.rng.String(), func(t *testing.T) {
			q := influx.HistoryQuery{Device: "dev-a", Metric: "disk.used_percent", Range: tc.rng}
			if got := q.Every(); got != tc.every {
				t.Fatalf("every = %s, want %s", got, tc.every)
			}
			series, err := f.sink.History(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			if len(series) != 2 {
				t.Fatalf("got %d series, want 2 (one per path): %+v", len(series), series)
			}
			for i, path := range []string{"/", "/data"} {
				s := series[i]
				if s.Tags["path"] != path || s.Tags["site"] != "lab" || len(s.Tags) != 2 {
					t.Fatalf("series %d tags = %v, want path=%s site=lab", i, s.Tags, path)
				}
				if len(s.T) == 0 || len(s.T) != len(s.V) || len(s.T) > influx.DefaultMaxPoints {
					t.Fatalf("series %d: %d times, %d values", i, len(s.T), len(s.V))
				}
				oldest := time.UnixMilli(s.T[0])
				if oldest.Before(now.Add(-tc.rng)) {
					t.Errorf("series %d starts at %s, before the range", i, oldest)
				}
				for j, v := range s.V {
					// dev-a values: path / in 0..12, /data in 100..112; dev-b is 1000+.
					if lo := float64(i * 100); v < lo || v > lo+12 {
						t.Fatalf("series %d value %d = %g: not dev-a's %s", i, j, v, path)
					}
					if j > 0 && s.T[j] <= s.T[j-1] {
						t.Fatalf("series %d times not increasing at %d", i, j)
					}
				}
				// Check every full window's mean (the last one ends at now).
				checked := 0
				for j := range s.T[:len(s.T)-1] {
					end := time.UnixMilli(s.T[j])
					if end.UnixMilli()%tc.every.Milliseconds() != 0 {
						t.Fatalf("window end %s not aligned to %s", end, tc.every)
					}
					want, n := meanOf("dev-a", path, end.Add(-tc.every), end)
					if n == 0 || math.Abs(s.V[j]-want) > 1e-9 {
						t.Fatalf("series %d window ending %s: mean %g, want %g of %d points", i, end, s.V[j], want, n)
					}
					checked++
				}
				if tc.rng == influx.Range1h && (len(s.T) < 350 || len(s.T) > 362) {
					t.Errorf("1h: %d windows, want ~360 (one point per 10 s, 6 s windows)", len(s.T))
				}
				if tc.rng == influx.Range24h && (len(s.T) < 49 || len(s.T) > 52) {
					t.Errorf("24h: %d windows, want ~51 (2 h of data, 144 s windows)", len(s.T))
				}
			}
		})
	}

	t.Run("MaxPoints", func(t *testing.T) {
		q := influx.HistoryQuery{Device: "dev-a", Metric: "cpu.usage_percent", Range: influx.Range1h, MaxPoints: 7}
		if got := q.Every(); got != 515*time.Second { // ceil(3600/7)
			t.Fatalf("every = %s", got)
		}
		series, err := f.sink.History(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(series) != 1 || len(series[0].Tags) != 0 || len(series[0].T) > 7 || len(series[0].T) < 6 {
			t.Fatalf("got %+v", series)
		}
		for _, v := range series[0].V {
			if v < 5000 || v > 5360 {
				t.Fatalf("cpu mean %g out of the last hour's values", v)
			}
		}
	})

	t.Run("KnownWindow", func(t *testing.T) {
		series, err := f.sink.History(ctx, influx.HistoryQuery{Device: "dev-a", Metric: "temp.celsius", Range: influx.Range1h})
		if err != nil {
			t.Fatal(err)
		}
		if len(series) != 1 || len(series[0].V) != 1 || series[0].V[0] != 30 || series[0].T[0] != w0.Add(6*time.Second).UnixMilli() {
			t.Fatalf("got %+v, want one window ending %d with mean 30", series, w0.Add(6*time.Second).UnixMilli())
		}
	})

	t.Run("OtherDeviceAndEmpty", func(t *testing.T) {
		series, err := f.sink.History(ctx, influx.HistoryQuery{Device: "dev-b", Metric: "disk.used_percent", Range: influx.Range1h})
		if err != nil || len(series) != 2 || series[0].V[0] < 1000 {
			t.Fatalf("dev-b: %v %+v", err, series)
		}
		series, err = f.sink.History(ctx, influx.HistoryQuery{Device: "dev-b", Metric: "cpu.usage_percent", Range: influx.Range1h})
		if err != nil || series == nil || len(series) != 0 {
			t.Fatalf("dev-b cpu: %v %+v, want empty non-nil", err, series)
		}
	})

	t.Run("NotNumeric", func(t *testing.T) {
		for _, m := range []string{"power.on", "agent.status"} {
			_, err := f.sink.History(ctx, influx.HistoryQuery{Device: "dev-a", Metric: m, Range: influx.Range1h})
			if !errors.Is(err, influx.ErrNotNumeric) {
				t.Errorf("%s: err = %v, want ErrNotNumeric", m, err)
			}
		}
	})

	t.Run("Invalid", func(t *testing.T) {
		for name, q := range map[string]influx.HistoryQuery{
			"range 2h":     {Device: "dev-a", Metric: "cpu.usage_percent", Range: 2 * time.Hour},
			"range 0":      {Device: "dev-a", Metric: "cpu.usage_percent"},
			"metric quote": {Device: "dev-a", Metric: `cpu") |> drop(`, Range: influx.Range1h},
			"metric empty": {Device: "dev-a", Range: influx.Range1h},
			"device":       {Device: `a"b`, Metric: "cpu.usage_percent", Range: influx.Range1h},
			"max points":   {Device: "dev-a", Metric: "cpu.usage_percent", Range: influx.Range1h, MaxPoints: -1},
		} {
			if _, err := f.sink.History(ctx, q); !errors.Is(err, influx.ErrInvalidQuery) {
				t.Errorf("%s: err = %v, want ErrInvalidQuery", name, err)
			}
		}
		for _, s := range []string{"1h", "24h", "7d"} {
			if _, err := influx.ParseRange(s); err != nil {
				t.Errorf("ParseRange(%q): %v", s, err)
			}
		}
		for _, s := range []string{"", "2h", "1d", "60m", "7D"} {
			if _, err := influx.ParseRange(s); !errors.Is(err, influx.ErrInvalidQuery) {
				t.Errorf("ParseRange(%q) accepted", s)
			}
		}
	})
}

func TestHistorySpan(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 600_000_000, time.UTC)
	for _, r := range []time.Duration{influx.Range1h, influx.Range24h, influx.Range7d} {
		for _, mp := range []int{1, 7, 600, 10000} {
			q := influx.HistoryQuery{Device: "d", Metric: "m", Range: r, MaxPoints: mp}
			start, every := influx.HistorySpan(q, now)
			if every%time.Second != 0 || every < time.Second {
				t.Fatalf("%s/%d: every %s", r, mp, every)
			}
			if start.Before(now.Add(-r)) || start.UnixNano()%every.Nanoseconds() != 0 {
				t.Fatalf("%s/%d: start %s", r, mp, start)
			}
			windows := int(math.Ceil(float64(now.Sub(start)) / float64(every)))
			if windows > mp {
				t.Fatalf("%s/%d: %d windows", r, mp, windows)
			}
		}
	}
}
