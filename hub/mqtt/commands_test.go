package mqtt_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/hub/influx/influxtest"
)

// mqttDevice is a device on the broker that records the commands it gets.
type mqttDevice struct {
	id   string
	c    paho.Client
	mu   sync.Mutex
	cmds []map[string]any
}

func (r *rig) mqttDevice(t *testing.T, id string) *mqttDevice {
	t.Helper()
	d := &mqttDevice{id: id}
	d.c = r.client(id, func(o *paho.ClientOptions) {
		o.SetCleanSession(false).SetWill("fleetwire/"+id+"/status", "offline", 1, true)
	})
	tok := d.c.Subscribe("fleetwire/"+id+"/commands", 1, func(_ paho.Client, m paho.Message) {
		var c map[string]any
		if err := json.Unmarshal(m.Payload(), &c); err != nil {
			t.Errorf("%s: command payload %q: %v", id, m.Payload(), err)
			return
		}
		d.mu.Lock()
		d.cmds = append(d.cmds, c)
		d.mu.Unlock()
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("%s subscribe: %v", id, tok.Error())
	}
	return d
}

// got returns the commands received with id (repeats included).
func (d *mqttDevice) got(id string) []map[string]any {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []map[string]any
	for _, c := range d.cmds {
		if c["id"] == id {
			out = append(out, c)
		}
	}
	return out
}

func (d *mqttDevice) status(t *testing.T, s string) {
	t.Helper()
	tok := d.c.Publish("fleetwire/"+d.id+"/status", 1, true, s)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("%s status: %v", d.id, tok.Error())
	}
}

func (d *mqttDevice) result(t *testing.T, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	publish(t, d.c, "fleetwire/"+d.id+"/results", b)
}

func (r *rig) commandState(t *testing.T, id string, want hub.CommandState) hub.Command {
	t.Helper()
	var c hub.Command
	eventually(t, 20*time.Second, "command "+id+" "+string(want), func() bool {
		var err error
		c, err = r.commands.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		return c.State == want
	})
	return c
}

// TestCommands: commands reach MQTT devices on their command topic, their
// results complete them with the agents' states, and TTL and timeout
// apply.
func TestCommands(t *testing.T) {
	t.Parallel()
	r := newRig(t, influxtest.Start(t))
	ctx := context.Background()
	r.device("cmd-a", map[string]string{"group": "relays"})
	r.device("cmd-b", map[string]string{"group": "relays"})
	r.device("cmd-off", nil)
	a, b := r.mqttDevice(t, "cmd-a"), r.mqttDevice(t, "cmd-b")
	a.status(t, "online")
	b.status(t, "online")
	eventually(t, 10*time.Second, "cmd-a and cmd-b online", func() bool { return r.registry.Online("cmd-a") && r.registry.Online("cmd-b") })

	t.Run("DeliveredAndCompleted", func(t *testing.T) {
		c, err := r.commands.Send(ctx, hub.SendRequest{DeviceID: "cmd-a", Name: "relay.set", Args: map[string]string{"state": "on"}, Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "cmd-a got the command", func() bool { return len(a.got(c.ID)) > 0 })
		got := a.got(c.ID)[0]
		if got["name"] != "relay.set" || got["args"].(map[string]any)["state"] != "on" || got["timeout_ms"] != 5000.0 {
			t.Errorf("command on the wire = %v", got)
		}
		r.commandState(t, c.ID, hub.StateReceived) // the broker took it
		a.result(t, map[string]any{"id": c.ID, "state": "succeeded", "exit_code": 0, "stdout": "relay on\n", "duration_ms": 12})
		done := r.commandState(t, c.ID, hub.StateSucceeded)
		if done.Stdout != "relay on\n" || done.ExitCode == nil || *done.ExitCode != 0 || done.DurationMs != 12 || done.FinishedAt == nil {
			t.Errorf("finished command = %+v", done)
		}
		// A repeated result (QoS 1 may deliver twice) changes nothing.
		a.result(t, map[string]any{"id": c.ID, "state": "failed", "exit_code": 3})
		eventually(t, 5*time.Second, "repeat handled", func() bool { return r.metric("fleethub_mqtt_pending_messages", nil) == 0 })
		if again, _ := r.commands.Get(ctx, c.ID); again.State != hub.StateSucceeded {
			t.Errorf("a second result changed the command to %s", again.State)
		}
	})

	t.Run("Failed", func(t *testing.T) {
		c, err := r.commands.Send(ctx, hub.SendRequest{DeviceID: "cmd-b", Name: "relay.set"})
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "cmd-b got the command", func() bool { return len(b.got(c.ID)) > 0 })
		b.result(t, map[string]any{"id": c.ID, "state": "failed", "exit_code": 2, "stderr": "no relay"})
		done := r.commandState(t, c.ID, hub.StateFailed)
		if done.Stderr != "no relay" || done.ExitCode == nil || *done.ExitCode != 2 {
			t.Errorf("failed command = %+v", done)
		}
	})

	t.Run("Bulk", func(t *testing.T) {
		bs, err := r.commands.SendBulk(ctx, hub.SendRequest{Selector: map[string]string{"group": "relays"}, Name: "relay.toggle"})
		if err != nil {
			t.Fatal(err)
		}
		if bs.Total != 2 {
			t.Fatalf("bulk to %d devices, want 2", bs.Total)
		}
		for _, c := range bs.Commands {
			d := map[string]*mqttDevice{"cmd-a": a, "cmd-b": b}[c.DeviceID]
			eventually(t, 10*time.Second, c.DeviceID+" got the bulk command", func() bool { return len(d.got(c.ID)) > 0 })
			d.result(t, map[string]any{"id": c.ID, "state": "succeeded"})
			r.commandState(t, c.ID, hub.StateSucceeded)
		}
		st, err := r.commands.Bulk(ctx, bs.BulkID)
		if err != nil || !st.Done || st.ByState[hub.StateSucceeded] != 2 {
			t.Errorf("bulk status %+v, %v", st, err)
		}
	})

	t.Run("OfflineQueuedUntilOnline", func(t *testing.T) {
		c, err := r.commands.Send(ctx, hub.SendRequest{DeviceID: "cmd-off", Name: "reboot"})
		if err != nil {
			t.Fatal(err)
		}
		if c.State != hub.StateQueued {
			t.Fatalf("command to an offline device is %s, want queued", c.State)
		}
		off := r.mqttDevice(t, "cmd-off")
		off.status(t, "online")
		eventually(t, 10*time.Second, "cmd-off got the queued command once online", func() bool { return len(off.got(c.ID)) > 0 })
		r.commandState(t, c.ID, hub.StateReceived)
	})

	t.Run("NoResultTimesOut", func(t *testing.T) {
		c, err := r.commands.Send(ctx, hub.SendRequest{DeviceID: "cmd-a", Name: "firmware.update", Timeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		r.commandState(t, c.ID, hub.StateReceived)
		r.clock.advance(40 * time.Second) // past the timeout and the hub's 30 s grace
		done := r.commandState(t, c.ID, hub.StateTimedOut)
		if done.Error == "" || done.FinishedAt == nil {
			t.Errorf("timed out command = %+v", done)
		}
	})

	t.Run("TTLExpiresWhileOffline", func(t *testing.T) {
		a.status(t, "offline")
		eventually(t, 10*time.Second, "cmd-a offline", func() bool { return !r.registry.Online("cmd-a") })
		c, err := r.commands.Send(ctx, hub.SendRequest{DeviceID: "cmd-a", Name: "relay.set", TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		r.clock.advance(2 * time.Minute)
		r.commandState(t, c.ID, hub.StateExpired)
		if n := len(a.got(c.ID)); n != 0 {
			t.Errorf("an expired command reached the device %d times", n)
		}
	})
}
