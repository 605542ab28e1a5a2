package influx_test

import (
	"context"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
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

// render returns b's lines without their '\n'.
func render(t testing.TB, b *hub.IngestBatch) []string {
	t.Helper()
	out, err := influx.AppendLineProtocol(nil, b)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	return strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
}

func TestLineProtocol(t *testing.T) {
	got := render(t, sampleBatch("dev-1"))
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
	if len(got) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("point %d:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
}

func TestLineProtocolDeviceTagWins(t *testing.T) {
	b := &hub.IngestBatch{
		DeviceID: "real",
		Labels:   map[string]string{"device": "label-says"},
		Batch: &protocol.Batch{Seq: 1, BaseTime: 1000, Tags: map[string]string{"device": "batch-says"},
			Points: []protocol.Point{{Name: "x", Value: 1.0, Tags: map[string]string{"device": "point-says"}}}},
	}
	if got, want := render(t, b)[0], "x,device=real value=1 1000"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestLineProtocolValueTypes(t *testing.T) {
	cases := []struct {
		in   any
		want string
	}{
		{1.5, "1.5"},
		{5.0, "5"},
		{1e21, "1000000000000000000000"},
		{-0.000001, "-0.000001"},
		{int64(-7), "-7i"},
		{uint64(7), "7i"},
		{uint64(math.MaxInt64), "9223372036854775807i"},
		{uint64(math.MaxUint64), "18446744073709552000"},
		{true, "true"},
		{false, "false"},
		{"s", `"s"`},
		{"", `""`},
	}
	for _, c := range cases {
		b := &hub.IngestBatch{DeviceID: "d", Batch: &protocol.Batch{Seq: 1, BaseTime: 1,
			Points: []protocol.Point{{Name: "m.f", Value: c.in}}}}
		if got, want := render(t, b)[0], "m,device=d f="+c.want+" 1"; got != want {
			t.Errorf("value %T(%v): got %s, want %s", c.in, c.in, got, want)
		}
	}
}

// TestLineProtocolEscaping covers what line protocol must escape and what
// it cannot carry. Metric names and tag keys that reach the sink are
// ValidName (protocol and store validation), but the sink does not rely on
// it; device labels can hold any UTF-8.
func TestLineProtocolEscaping(t *testing.T) {
	cases := []struct {
		name   string
		tags   map[string]string // labels
		value  any
		want   string // the line without its timestamp; "" when refused
		reason string // part of the refusal
	}{
		{name: "m.f", value: `a "quoted" \ back\\slash`, want: `m,device=d f="a \"quoted\" \\ back\\\\slash"`},
		{name: "m.f", value: "new\nline\r\ttab", want: "m,device=d f=\"new\nline\r\ttab\""},
		{name: "m.f", value: `ends with \`, want: `m,device=d f="ends with \\"`},
		{name: "m.f", value: "ünïcødé ✓ 🚀", want: `m,device=d f="ünïcødé ✓ 🚀"`},
		{name: "m.f", value: "comma, equals= space", want: `m,device=d f="comma, equals= space"`},
		{name: "m.f", tags: map[string]string{"site": "plant 2, hall=B"}, value: 1.0, want: `m,device=d,site=plant\ 2\,\ hall\=B f=1`},
		{name: "m.f", tags: map[string]string{"site": "Zürich ✓"}, value: 1.0, want: `m,device=d,site=Zürich\ ✓ f=1`},
		{name: "m.f", tags: map[string]string{"site": `"quoted"`}, value: 1.0, want: `m,device=d,site="quoted" f=1`},
		{name: "m.f", tags: map[string]string{"k y": "v"}, value: 1.0, want: `m,device=d,k\ y=v f=1`},
		{name: "m e,a=s.f i=e,ld", value: 1.0, want: `m\ e\,a=s,device=d f\ i\=e\,ld=1`},
		{name: "m.f", tags: map[string]string{"site": "two\nlines"}, value: 1.0, reason: "not representable"},
		{name: "m.f", tags: map[string]string{"site": "tab\there"}, value: 1.0, reason: "not representable"},
		{name: "m.f", tags: map[string]string{"site": `back\slash`}, value: 1.0, reason: "not representable"},
		{name: "m.f", tags: map[string]string{"site": `trailing\`}, value: 1.0, reason: "not representable"},
		{name: "m\n.f", value: 1.0, reason: "not representable"},
		{name: "m.f\n", value: 1.0, reason: "not representable"},
		{name: `m\.f`, value: 1.0, reason: "not representable"},
		{name: "#m.f", value: 1.0, reason: "not representable"},
		{name: ".f", value: 1.0, reason: "not representable"},
		{name: "m.f", value: math.NaN(), reason: "not representable"},
		{name: "m.f", value: math.Inf(-1), reason: "not representable"},
		{name: "m.f", value: nil, reason: "not representable"},
		{name: "m.f", value: []byte("x"), reason: "not representable"},
	}
	for _, c := range cases {
		b := &hub.IngestBatch{DeviceID: "d", Labels: c.tags, Batch: &protocol.Batch{Seq: 1, BaseTime: 7,
			Points: []protocol.Point{{Name: c.name, Value: c.value}}}}
		out, err := influx.AppendLineProtocol(nil, b)
		if c.reason != "" {
			if err == nil || !strings.Contains(err.Error(), c.reason) || len(out) != 0 {
				t.Errorf("%q %v %#v: rendered %q, err %v; want refused (%s)", c.name, c.tags, c.value, out, err, c.reason)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q %v %#v: %v", c.name, c.tags, c.value, err)
			continue
		}
		if want := c.want + " 7\n"; string(out) != want {
			t.Errorf("%q %v %#v:\n got %q\nwant %q", c.name, c.tags, c.value, out, want)
		}
	}
}

// TestLineProtocolRefusesOnlyBadPoints: a refused point leaves its batch's
// other points alone.
func TestLineProtocolRefusesOnlyBadPoints(t *testing.T) {
	b := numbered("d", "m.f", 5, 100)
	b.Batch.Points[2].Value = math.NaN()
	out, err := influx.AppendLineProtocol(nil, b)
	if err == nil || !strings.Contains(err.Error(), "point 2") {
		t.Errorf("err %v, want point 2 refused", err)
	}
	if got, want := string(out), "m,device=d f=0 100\nm,device=d f=1 101\nm,device=d f=3 103\nm,device=d f=4 104\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// referencePoints is the sink's former conversion through the InfluxDB
// client's write.Point: the reference AppendLineProtocol must match.
func referencePoints(b *hub.IngestBatch) []*write.Point {
	batch := b.Batch
	out := make([]*write.Point, 0, len(batch.Points))
	for i := range batch.Points {
		p := &batch.Points[i]
		tags := protocol.StoredTags(batch.Tags, p.Tags, b.Labels, b.DeviceID)
		measurement, field := protocol.SplitName(p.Name)
		var v any = p.Value
		if u, ok := v.(uint64); ok {
			if u > math.MaxInt64 {
				v = float64(u)
			} else {
				v = int64(u)
			}
		}
		out = append(out, write.NewPoint(measurement, tags, map[string]any{field: v}, time.UnixMilli(batch.BaseTime+p.DT)))
	}
	return out
}

// clientEncoder captures what the InfluxDB client sends for write.Points:
// the body of the sink's former write path.
type clientEncoder struct {
	mu     sync.Mutex
	body   string
	client influxdb2.Client
}

func newClientEncoder(t testing.TB) *clientEncoder {
	c := &clientEncoder{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		c.mu.Lock()
		c.body = string(body)
		c.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	c.client = influxdb2.NewClientWithOptions(srv.URL, "", influxdb2.DefaultOptions().SetPrecision(time.Millisecond))
	t.Cleanup(c.client.Close)
	return c
}

func (c *clientEncoder) encode(t testing.TB, points []*write.Point) string {
	t.Helper()
	if err := c.client.WriteAPIBlocking("", "b").WritePoint(context.Background(), points...); err != nil {
		t.Fatalf("client write: %v", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.body
}

// TestLineProtocolMatchesClient: for what the old path encoded correctly,
// the rendered body is byte for byte the InfluxDB client's.
func TestLineProtocolMatchesClient(t *testing.T) {
	enc := newClientEncoder(t)
	batches := []*hub.IngestBatch{sampleBatch("dev-1"), {DeviceID: "pi-0001", Labels: map[string]string{"site": "plant 2,hall=B"},
		Batch: protocol.SampleBatch(3, 100)}}
	batches = append(batches, benchBatches(baseTime)...)
	// Decoded points with equal tags share one map (rendered once).
	data, err := protocol.Encode(protocol.SampleBatch(5, 200))
	if err != nil {
		t.Fatal(err)
	}
	msg, err := protocol.Decode(data, 0)
	if err != nil {
		t.Fatal(err)
	}
	batches = append(batches, &hub.IngestBatch{DeviceID: "decoded", Batch: msg.(*protocol.Batch)})
	for _, b := range batches {
		got, err := influx.AppendLineProtocol(nil, b)
		if err != nil {
			t.Fatal(err)
		}
		if want := enc.encode(t, referencePoints(b)); string(got) != want {
			t.Errorf("device %s:\n got %q\nwant %q", b.DeviceID, got, want)
		}
	}
}

// FuzzLineProtocolMatchesClient compares with the client's encoding for
// arbitrary names, label values and string values. Where they differ by
// design the renderer must refuse (keys and tag values with control
// characters or backslashes), or the old path was wrong (it rewrote control
// characters in string values; InfluxDB does not unescape them:
// TestLineProtocolRoundTrip checks what InfluxDB stores).
func FuzzLineProtocolMatchesClient(f *testing.F) {
	f.Add("cpu.usage", "plant-2", "text", 1.5)
	f.Add("a b,c=d.e f", "x y,z=w", `q"u\o`, -0.0)
	f.Add("m", "ü ✓", "🚀\x00", 1e300)
	enc := newClientEncoder(f)
	f.Fuzz(func(t *testing.T, name, label, s string, fl float64) {
		b := &hub.IngestBatch{DeviceID: "d", Labels: map[string]string{"site": label}, Batch: &protocol.Batch{Seq: 1, BaseTime: baseTime,
			Points: []protocol.Point{{Name: name, Value: s}, {Name: name, DT: 1, Value: fl}}}}
		got, err := influx.AppendLineProtocol(nil, b)
		measurement, field := protocol.SplitName(name)
		bad := func(s string) bool {
			return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == '\\' })
		}
		refuse := bad(name) || bad(label) || measurement == "" || field == "" || strings.HasPrefix(name, "#")
		if refuse {
			if err == nil || len(got) != 0 {
				t.Fatalf("%q %q: rendered %q, err %v; want both points refused", name, label, got, err)
			}
			return
		}
		if math.IsNaN(fl) || math.IsInf(fl, 0) {
			b.Batch.Points = b.Batch.Points[:1]
			got, err = influx.AppendLineProtocol(nil, b)
		}
		if err != nil {
			t.Fatalf("%q %q %q: %v", name, label, s, err)
		}
		if strings.ContainsAny(s, "\t\n\f\r") {
			b.Batch.Points[0].Value = strings.Map(func(r rune) rune {
				if strings.ContainsRune("\t\n\f\r", r) {
					return -1
				}
				return r
			}, s)
			if got, err = influx.AppendLineProtocol(nil, b); err != nil {
				t.Fatal(err)
			}
		}
		if want := enc.encode(t, referencePoints(b)); string(got) != want {
			t.Fatalf("\n got %q\nwant %q", got, want)
		}
	})
}
