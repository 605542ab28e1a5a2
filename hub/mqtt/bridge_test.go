package mqtt_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/hub/influx/influxtest"
	"github.com/fleetwire/fleetwire/hub/mqtt"
	"github.com/fleetwire/fleetwire/hub/mqtt/payload"
	"github.com/fleetwire/fleetwire/hub/store"
	"github.com/fleetwire/fleetwire/protocol"
)

// TestBridge runs the tests that can share one influxd and one bridge;
// each uses its own device ids.
func TestBridge(t *testing.T) {
	t.Parallel()
	db := influxtest.Start(t)
	r := newRig(t, db, func(s *rigSetup) {
		s.cfg.Telemetry = []mqtt.Route{{Topic: mqtt.DefaultTelemetry, Format: payload.FormatAuto}}
		for _, f := range []payload.Format{payload.FormatCBOR, payload.FormatJSON, payload.FormatLine, payload.FormatSenMLJSON, payload.FormatSenMLCBOR} {
			s.cfg.Telemetry = append(s.cfg.Telemetry, mqtt.Route{Topic: mqtt.MustTemplate("fmt/{device}/" + formatLevel(f)), Format: f})
		}
		s.cfg.MaxPayloadBytes = 4096
		s.cfg.PresenceTimeout = 4 * time.Second // checked every second
	})
	t.Run("EachFormat", func(t *testing.T) { testEachFormat(t, r) })
	t.Run("Refused", func(t *testing.T) { testRefused(t, r) })
	t.Run("Presence", func(t *testing.T) { testPresence(t, r) })
}

// testEachFormat publishes every payload format, on the default topic
// (format detected) and on a topic whose format is configured; the
// points land in InfluxDB with the agents' schema and on the live stream.
func testEachFormat(t *testing.T, r *rig) {
	cbor, err := protocol.Encode(&protocol.Batch{Seq: 7, BaseTime: time.Now().UnixMilli(), Tags: map[string]string{"site": "lab"},
		Points: []protocol.Point{{Name: "env.temp_c", Value: 21.5}, {Name: "env.door_open", DT: 1, Value: true}}})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		format payload.Format
		data   []byte
		fields map[string]string // measurement -> field
	}{
		{payload.FormatCBOR, cbor, map[string]string{"env": "temp_c"}},
		{payload.FormatJSON, []byte(`{"points":[{"name":"env.temp_c","value":21.5},{"name":"env.rssi","value":-61}]}`), map[string]string{"env": "rssi"}},
		{payload.FormatJSON, []byte(`{"ENERGY":{"Power":12.5,"Today":0.3},"Temperature":22}`), map[string]string{"ENERGY": "Power", "Temperature": "value"}},
		{payload.FormatLine, []byte("env,sensor=bme280 temp_c=21.5,humidity=40i\nenv pressure=1013.2"), map[string]string{"env": "humidity"}},
		{payload.FormatSenMLJSON, []byte(`[{"bn":"env.","n":"temp_c","v":21.5,"u":"Cel"},{"n":"lux","v":300}]`), map[string]string{"env": "lux"}},
		{payload.FormatSenMLCBOR, senmlPack(t), map[string]string{"env": "co2_ppm"}},
	}
	pub := r.client("publisher-formats", nil)
	for i, c := range cases {
		for _, explicit := range []bool{false, true} {
			dev := fmt.Sprintf("fmt-%d-auto", i)
			topic := "fleetwire/" + dev + "/telemetry"
			if explicit {
				dev = fmt.Sprintf("fmt-%d-%s", i, formatLevel(c.format))
				topic = "fmt/" + dev + "/" + formatLevel(c.format)
			}
			t.Run(dev, func(t *testing.T) {
				r.device(dev, map[string]string{"room": "a"})
				seen := r.liveWatch(dev)
				publish(t, pub, topic, c.data)
				for m, f := range c.fields {
					eventually(t, 20*time.Second, fmt.Sprintf("%s.%s of %s in InfluxDB", m, f, dev), func() bool { return r.count(m, f, dev) == 1 })
					name := m + "." + f
					if f == "value" {
						name = m
					}
					eventually(t, 5*time.Second, name+" on the live stream", func() bool { return seen(name) })
				}
				d, err := r.store.GetDevice(context.Background(), dev)
				if err != nil || d.Transport != store.TransportMQTT || d.LastSeen == nil {
					t.Errorf("registry after first message: %+v, %v (want transport mqtt, last seen set)", d, err)
				}
			})
		}
	}
}

// formatLevel is a format's name as a topic level ('+' is a wildcard).
func formatLevel(f payload.Format) string { return strings.ReplaceAll(string(f), "+", "-") }

// senmlPack is a SenML CBOR pack: [{-2 (bn): "env.", 0 (n): "co2_ppm", 2 (v): 412}].
func senmlPack(t *testing.T) []byte {
	t.Helper()
	b, err := hex.DecodeString("81" + "a3" + "21" + "64656e762e" + "00" + "67636f325f70706d" + "02" + "19019c")
	if err != nil {
		t.Fatal(err)
	}
	return b
}
