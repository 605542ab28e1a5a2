package influx_test

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/influxdata/influxdb-client-go/v2/api/write"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/hub/influx"
	"github.com/fleetwire/fleetwire/protocol"
)

// baseTime is a fixed, recent Unix-ms timestamp with a non-zero ms part, so
// a precision mistake shows up.
const baseTime int64 = 1_763_900_000_123

// sampleBatch is a batch like an agent sends: dotted and plain names, every
// value type, batch tags and one point with its own tags.
func sampleBatch(device string) *hub.IngestBatch {
	return &hub.IngestBatch{
		DeviceID: device,
		Labels:   map[string]string{"site": "lab", "rack": "r1"},
		Batch: &protocol.Batch{
			Seq:      7,
			BaseTime: baseTime,
			Tags:     map[string]string{"host": "pi-1", "rack": "batch-rack"},
			Points: []protocol.Point{
				{Name: "cpu.usage_percent", DT: 0, Value: 12.5},
				{Name: "mem.used_bytes", DT: 1, Value: int64(123456789)},
				{Name: "disk.free_bytes", DT: 2, Value: uint64(42)},
				{Name: "uptime", DT: 3, Value: int64(3600)},
				{Name: "net.up", DT: 4, Value: true},
				{Name: "os.release", DT: 5, Value: `bookworm "12", a\b`},
				{Name: "temp.cpu", DT: 1500, Value: -3.25,
					Tags: map[string]string{"sensor": "t0", "host": "point-host", "site": "point-site"}},
			},
		},
	}
}

func TestPoints(t *testing.T) {
	pts := influx.Points(sampleBatch("dev-1"))
	want := []string{
		`cpu,device=dev-1,host=pi-1,rack=r1,site=lab usage_percent=12.5 1763900000123`,
		`mem,device=dev-1,host=pi-1,rack=r1,site=lab used_bytes=123456789i 1763900000124`,
		`disk,device=dev-1,host=pi-1,rack=r1,site=lab free_bytes=42i 1763900000125`,
		`uptime,device=dev-1,host=pi-1,rack=r1,site=lab value=3600i 1763900000126`,
		`net,device=dev-1,host=pi-1,rack=r1,site=lab up=true 1763900000127`,
		`os,device=dev-1,host=pi-1,rack=r1,site=lab release="bookworm \"12\", a\\b" 1763900000128`,
		// point tags override batch tags; labels override point tags.
		`temp,device=dev-1,host=point-host,rack=r1,sensor=t0,site=lab cpu=-3.25 1763900001623`,
	}
	if len(pts) != len(want) {
		t.Fatalf("got %d points, want %d", len(pts), len(want))
	}
	for i, p := range pts {
		got := strings.TrimSuffix(write.PointToLineProtocol(p, time.Millisecond), "\n")
		if got != want[i] {
			t.Errorf("point %d:\n got %s\nwant %s", i, got, want[i])
		}
	}
}

func TestPointsDeviceTagWins(t *testing.T) {
	b := &hub.IngestBatch{
		DeviceID: "real",
		Labels:   map[string]string{"device": "label-says"},
		Batch: &protocol.Batch{Seq: 1, BaseTime: 1000, Tags: map[string]string{"device": "batch-says"},
			Points: []protocol.Point{{Name: "x", Value: 1.0, Tags: map[string]string{"device": "point-says"}}}},
	}
	got := write.PointToLineProtocol(influx.Points(b)[0], time.Millisecond)
	if want := "x,device=real value=1 1000\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestPointsValueTypes(t *testing.T) {
	cases := []struct {
		in   any
		want any
	}{
		{1.5, 1.5},
		{int64(-7), int64(-7)},
		{uint64(7), int64(7)},
		{uint64(math.MaxInt64), int64(math.MaxInt64)},
		{uint64(math.MaxUint64), float64(math.MaxUint64)},
		{true, true},
		{"s", "s"},
	}
	for _, c := range cases {
		b := &hub.IngestBatch{DeviceID: "d", Batch: &protocol.Batch{Seq: 1, BaseTime: 1,
			Points: []protocol.Point{{Name: "m.f", Value: c.in}}}}
		p := influx.Points(b)[0]
		fields := p.FieldList()
		if len(fields) != 1 || fields[0].Key != "f" || fields[0].Value != c.want {
			t.Errorf("value %T(%v): fields %+v, want f=%T(%v)", c.in, c.in, fields[0], c.want, c.want)
		}
	}
}
