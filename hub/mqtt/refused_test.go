package mqtt_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/hub"
)

// testRefused sends what the bridge must refuse; each is counted under its
// reason, none is stored, and the bridge goes on storing good messages.
func testRefused(t *testing.T, r *rig) {
	r.device("ref-a", nil)
	r.device("ref-b", nil)
	r.device("ref-gone", nil)
	if err := r.store.RevokeDevice(context.Background(), "ref-gone"); err != nil {
		t.Fatal(err)
	}
	cmd, err := r.commands.Send(context.Background(), hub.SendRequest{DeviceID: "ref-b", Name: "reboot"})
	if err != nil {
		t.Fatal(err)
	}
	pub := r.client("publisher-refused", nil)
	cases := []struct {
		name, topic, payload, reason string
	}{
		{"not json", "fleetwire/ref-a/telemetry", `{"temp": `, "malformed"},
		{"bad metric name", "fleetwire/ref-a/telemetry", `{"points":[{"name":"9lives","value":1}]}`, "malformed"},
		{"not a number", "fmt/ref-a/line", "env temp=hot", "malformed"},
		{"empty", "fleetwire/ref-a/telemetry", "", "malformed"},
		{"oversize", "fleetwire/ref-a/telemetry", `{"x":"` + strings.Repeat("a", 4096) + `"}`, "oversize"},
		{"unknown device", "fleetwire/ref-nobody/telemetry", `{"temp":1}`, "unknown_device"},
		{"revoked device", "fleetwire/ref-gone/telemetry", `{"temp":1}`, "revoked"},
		{"device id not an id", "fleetwire/REF-A/telemetry", `{"temp":1}`, "bad_topic"},
		{"dot-dot device", "fleetwire/../telemetry", `{"temp":1}`, "bad_topic"},
		{"device tag in batch", "fleetwire/ref-a/telemetry", `{"tags":{"device":"ref-b"},"points":[{"name":"temp","value":1}]}`, "injection"},
		{"device tag in line", "fmt/ref-a/line", "temp,device=ref-b value=1", "injection"},
		{"result for another device's command", "fleetwire/ref-a/results", `{"id":"` + cmd.ID + `","state":"succeeded"}`, "injection"},
		{"result for no command", "fleetwire/ref-a/results", `{"id":"c_nope","state":"succeeded"}`, "unknown_command"},
		{"result not json", "fleetwire/ref-a/results", `{"id":`, "bad_result"},
		{"result unknown field", "fleetwire/ref-a/results", `{"id":"x","state":"succeeded","exitcode":1}`, "bad_result"},
		{"status gibberish", "fleetwire/ref-a/status", "maybe", "bad_status"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := r.refused(c.reason)
			publish(t, pub, c.topic, []byte(c.payload))
			eventually(t, 10*time.Second, "refusal counted as "+c.reason, func() bool { return r.refused(c.reason) == before+1 })
		})
	}
	if got, err := r.commands.Get(context.Background(), cmd.ID); err != nil || got.State.Terminal() {
		t.Errorf("ref-b's command after ref-a answered for it: %+v, %v (want still open)", got, err)
	}
	for _, dev := range []string{"ref-a", "ref-nobody", "ref-gone"} {
		for _, m := range []string{"temp", "env", "x", "9lives"} {
			if n := r.count(m, "value", dev) + r.count(m, "temp", dev); n != 0 {
				t.Errorf("%d refused points of %s stored under %s", n, dev, m)
			}
		}
	}
	// Still running: a good message is stored.
	publish(t, pub, "fleetwire/ref-a/telemetry", []byte(`{"after":1}`))
	eventually(t, 20*time.Second, "a good message stored after the refusals", func() bool { return r.count("after", "value", "ref-a") == 1 })
	eventually(t, 5*time.Second, "no message pending", func() bool { return r.metric("fleethub_mqtt_pending_messages", nil) == 0 })
}
