package mqtt_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/hub/influx/influxtest"
	"github.com/fleetwire/fleetwire/hub/mqtt"
	"github.com/fleetwire/fleetwire/hub/mqtt/payload"
	"github.com/fleetwire/fleetwire/protocol"
)

// TestOptions covers the opt-in behaviours on one bridge: northbound
// republishing, auto-creation of devices, and revocation.
func TestOptions(t *testing.T) {
	t.Parallel()
	r := newRig(t, influxtest.Start(t), func(s *rigSetup) {
		s.cfg.Northbound = &mqtt.Northbound{Topic: mqtt.MustTemplate("fleetwire/northbound/{device}/telemetry"), Format: payload.FormatJSON, QoS: 1}
		s.cfg.AutoCreate = true
		s.cfg.AutoCreateLabels = map[string]string{"source": "mqtt"}
	})
	t.Run("Northbound", func(t *testing.T) { testNorthbound(t, r) })
	t.Run("AutoCreate", func(t *testing.T) { testAutoCreate(t, r) })
	t.Run("Revoked", func(t *testing.T) { testRevoked(t, r) })
}

func testNorthbound(t *testing.T, r *rig) {
	var mu sync.Mutex
	got := map[string][][]byte{}
	sub := r.client("northbound-consumer", nil)
	tok := sub.Subscribe("fleetwire/northbound/+/telemetry", 1, func(_ paho.Client, m paho.Message) {
		mu.Lock()
		got[m.Topic()] = append(got[m.Topic()], m.Payload())
		mu.Unlock()
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	messages := func(dev string) [][]byte {
		mu.Lock()
		defer mu.Unlock()
		return got["fleetwire/northbound/"+dev+"/telemetry"]
	}

	// An agent's batch, as a WebSocket session submits it.
	r.device("nb-agent", nil)
	base := time.Now().UnixMilli()
	batch := &protocol.Batch{Seq: 42, BaseTime: base, Tags: map[string]string{"site": "lab"}, Points: []protocol.Point{
		{Name: "cpu.usage_percent", Value: 12.0}, {Name: "mem.used_bytes", DT: 5, Value: int64(1 << 30)}, {Name: "net.up", DT: 5, Value: true},
	}}
	stored := make(chan error, 1)
	if err := r.ingester.Submit(context.Background(), &hub.IngestBatch{DeviceID: "nb-agent", Batch: batch}, func(err error) { stored <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-stored; err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "nb-agent's batch republished", func() bool { return len(messages("nb-agent")) == 1 })
	back, err := payload.Decode(payload.FormatJSON, messages("nb-agent")[0], time.Now(), protocol.Limits{})
	if err != nil {
		t.Fatalf("republished payload does not decode: %v", err)
	}
	if back.Tags["site"] != "lab" || len(back.Points) != 3 {
		t.Fatalf("republished %+v", back)
	}
	for i, p := range back.Points {
		want := batch.Points[i]
		if p.Name != want.Name || p.Value != want.Value || back.BaseTime+p.DT != base+want.DT {
			t.Errorf("point %d republished as %+v at %d, want %+v at %d", i, p, back.BaseTime+p.DT, want, base+want.DT)
		}
	}

	// An MQTT device's telemetry is not sent back to the broker.
	r.device("nb-mqtt", nil)
	pub := r.client("nb-publisher", nil)
	publish(t, pub, "fleetwire/nb-mqtt/telemetry", []byte(`{"temp":1}`))
	eventually(t, 20*time.Second, "nb-mqtt stored", func() bool { return r.count("temp", "value", "nb-mqtt") == 1 })
	// Its write is done; a republish would have been published by now.
	// A second agent batch proves the path is live after it.
	if err := r.ingester.Submit(context.Background(), &hub.IngestBatch{DeviceID: "nb-agent", Batch: batch}, func(err error) { stored <- err }); err != nil {
		t.Fatal(err)
	}
	<-stored
	eventually(t, 10*time.Second, "second agent batch republished", func() bool { return len(messages("nb-agent")) == 2 })
	if n := len(messages("nb-mqtt")); n != 0 {
		t.Errorf("an MQTT device's telemetry was republished %d times", n)
	}
	if n := r.metric("fleethub_mqtt_northbound_total", map[string]string{"outcome": "published"}); n != 2 {
		t.Errorf("northbound published counter %v, want 2", n)
	}
}

func testAutoCreate(t *testing.T, r *rig) {
	pub := r.client("auto-publisher", nil)
	publish(t, pub, "fleetwire/auto-1/telemetry", []byte(`{"room_temp":21.5}`))
	eventually(t, 20*time.Second, "auto-1's reading stored", func() bool { return r.count("room_temp", "value", "auto-1") == 1 })
	d, err := r.store.GetDevice(context.Background(), "auto-1")
	if err != nil || d.Labels["source"] != "mqtt" || d.Transport != "mqtt" {
		t.Errorf("auto-created device %+v, %v", d, err)
	}
	// Neither a result nor an "offline" creates a device.
	before := r.refused("unknown_device")
	publish(t, pub, "fleetwire/auto-2/results", []byte(`{"id":"c_x","state":"succeeded"}`))
	publish(t, pub, "fleetwire/auto-3/status", []byte(`offline`))
	eventually(t, 10*time.Second, "both refused as unknown", func() bool { return r.refused("unknown_device") == before+2 })
	for _, id := range []string{"auto-2", "auto-3"} {
		if _, err := r.store.GetDevice(context.Background(), id); !errors.Is(err, hub.ErrNotFound) {
			t.Errorf("%s: %v, want not created", id, err)
		}
	}
}

func testRevoked(t *testing.T, r *rig) {
	r.device("rev-1", nil)
	pub := r.client("rev-publisher", nil)
	publish(t, pub, "fleetwire/rev-1/status", []byte("online"))
	eventually(t, 10*time.Second, "rev-1 online", func() bool { return r.registry.Online("rev-1") })
	// What the API's revoke does: mark it in the registry, close the session.
	if err := r.store.RevokeDevice(context.Background(), "rev-1"); err != nil {
		t.Fatal(err)
	}
	r.registry.Disconnect("rev-1", "device revoked")
	eventually(t, 10*time.Second, "rev-1 offline once revoked", func() bool { return !r.registry.Online("rev-1") })
	before := r.refused("revoked")
	publish(t, pub, "fleetwire/rev-1/telemetry", []byte(`{"temp":1}`))
	eventually(t, 10*time.Second, "telemetry of a revoked device refused at once", func() bool { return r.refused("revoked") == before+1 })
	if r.registry.Online("rev-1") {
		t.Errorf("revoked device online again")
	}

	// Revoked while offline (no session to close): its "online" is refused
	// at once, not accepted from a cached record.
	r.device("rev-2", nil)
	publish(t, pub, "fleetwire/rev-2/telemetry", []byte(`{"temp":2}`)) // cached as valid
	eventually(t, 20*time.Second, "rev-2 stored", func() bool { return r.count("temp", "value", "rev-2") == 1 })
	publish(t, pub, "fleetwire/rev-2/status", []byte("offline"))
	eventually(t, 10*time.Second, "rev-2 offline", func() bool { return !r.registry.Online("rev-2") })
	if err := r.store.RevokeDevice(context.Background(), "rev-2"); err != nil {
		t.Fatal(err)
	}
	r.registry.Disconnect("rev-2", "device revoked")
	before = r.refused("revoked")
	publish(t, pub, "fleetwire/rev-2/status", []byte("online"))
	eventually(t, 10*time.Second, "rev-2's online refused", func() bool { return r.refused("revoked") == before+1 })
	if r.registry.Online("rev-2") {
		t.Errorf("a device revoked while offline came online")
	}

	// Revoked in the registry only (the hub's cache not told): its own
	// "offline" still ends its session.
	r.device("rev-3", nil)
	publish(t, pub, "fleetwire/rev-3/status", []byte("online"))
	eventually(t, 10*time.Second, "rev-3 online", func() bool { return r.registry.Online("rev-3") })
	if err := r.store.RevokeDevice(context.Background(), "rev-3"); err != nil {
		t.Fatal(err)
	}
	publish(t, pub, "fleetwire/rev-3/status", []byte("offline"))
	eventually(t, 10*time.Second, "rev-3 offline", func() bool { return !r.registry.Online("rev-3") })
}
