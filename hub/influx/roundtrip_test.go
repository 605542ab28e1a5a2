package influx_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"unicode/utf8"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/hub/influx/influxtest"
	"github.com/fleetwire/fleetwire/protocol"
)

// roundTrip writes one string point with label site=label through the sink
// to srv and checks that InfluxDB stores exactly the name, label and value
// written. Inputs line protocol cannot carry must be dead-lettered instead.
func roundTrip(t *testing.T, f *fixture, srv *influxtest.Server, device, name, label, value string) {
	t.Helper()
	b := &hub.IngestBatch{DeviceID: device, Batch: &protocol.Batch{Seq: 1, BaseTime: baseTime,
		Points: []protocol.Point{{Name: name, Value: value}}}}
	if label != "" {
		b.Labels = map[string]string{"site": label}
	}
	deadBefore := len(f.dead.all())
	if err := f.sink.Write(context.Background(), []*hub.IngestBatch{b}); err != nil {
		t.Fatalf("write: %v", err)
	}
	if strings.ContainsFunc(label, func(r rune) bool { return r < 0x20 || r == '\\' }) {
		if dl := f.dead.all(); len(dl) != deadBefore+1 || dl[len(dl)-1].DeviceID != device {
			t.Errorf("label %q: want one dead letter, have %+v", label, dl[deadBefore:])
		}
		return
	}
	measurement, field := protocol.SplitName(name)
	rows := influxQLRows(t, srv, measurement, device)
	if len(rows) != 1 {
		t.Fatalf("name %q label %q value %q: stored %v", name, label, value, rows)
	}
	if got, ok := rows[0][field]; !ok || got != value {
		t.Errorf("value %q stored as %q (row %v)", value, got, rows[0])
	}
	if label != "" && rows[0]["site"] != label {
		t.Errorf("label %q stored as %q", label, rows[0]["site"])
	}
	if len(f.dead.all()) != deadBefore {
		t.Errorf("dead letters %+v", f.dead.all()[deadBefore:])
	}
}

// influxQLRows returns a device's rows of a measurement, read over
// InfluxQL: its JSON carries strings exactly, where Flux's CSV turns "\r\n"
// into "\n" and "" into null.
func influxQLRows(t *testing.T, srv *influxtest.Server, measurement, device string) []map[string]any {
	t.Helper()
	ident := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	q := fmt.Sprintf(`SELECT * FROM "%s" WHERE "device" = '%s'`, ident.Replace(measurement), device)
	resp, err := http.PostForm(srv.URL+"/query", url.Values{"db": {srv.Database}, "q": {q}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Results []struct {
			Error  string
			Series []struct {
				Columns []string
				Values  [][]any
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("query %s: %v", q, err)
	}
	var rows []map[string]any
	for _, r := range out.Results {
		if r.Error != "" {
			t.Fatalf("query %s: %s", q, r.Error)
		}
		for _, s := range r.Series {
			for _, v := range s.Values {
				row := map[string]any{}
				for i, c := range s.Columns {
					if v[i] != nil {
						row[c] = v[i]
					}
				}
				rows = append(rows, row)
			}
		}
	}
	return rows
}

// roundTripCases are values that need escaping, or must not be escaped.
var roundTripCases = []struct{ name, label, value string }{
	{"rt.v", "plain", "plain"},
	{"rt.v", "plant 2, hall=B", `a "quoted" value, with = and \ and \\ and \"`},
	{"rt.v", `"quotes"`, `ends with a backslash \`},
	{"rt.v", "Zürich ✓ 🚀", "two\nlines\r\nand a\ttab"},
	{"rt.v", "x", "\n"},
	{"rt.v", "x", `\n is not a newline`},
	{"rt.v", "x", ""},
	{"rt.v", "#not-a-comment", "ünïcødé ✓ 🚀"},
	{"my m,easure=ment.my fi,eld=", "x", "odd names"},
	{"rt.v", "two\nlines", "label refused"},
	{"rt.v", `back\slash`, "label refused"},
}

func testRoundTrip(t *testing.T, srv *influxtest.Server) {
	f := sinkFor(t, srv)
	for i, c := range roundTripCases {
		roundTrip(t, f, srv, fmt.Sprintf("rt-%d", i), c.name, c.label, c.value)
	}
}

// FuzzLineProtocolRoundTrip checks with a real InfluxDB that what the sink
// renders is stored exactly as given (or refused when line protocol cannot
// carry it). Each input costs a write and a Flux query.
func FuzzLineProtocolRoundTrip(f *testing.F) {
	for _, c := range roundTripCases {
		f.Add(c.label, c.value)
	}
	srv := influxtest.Start(f)
	fx := sinkFor(f, srv)
	var n atomic.Int64
	f.Fuzz(func(t *testing.T, label, value string) {
		// Validate refuses non-UTF-8 and longer strings before the sink:
		// such inputs never reach it, so there is nothing to check.
		if !utf8Valid(label, value) || len(label) > 256 || len(value) > 4096 {
			return
		}
		roundTrip(t, fx, srv, fmt.Sprintf("fz-%d", n.Add(1)), "fz.v", label, value)
	})
}

func utf8Valid(ss ...string) bool {
	for _, s := range ss {
		if !utf8.ValidString(s) {
			return false
		}
	}
	return true
}
