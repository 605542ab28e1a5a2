package mqtttest

import (
	"fmt"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

func connect(t *testing.T, b *Broker, id string, clean bool, onMsg paho.MessageHandler) paho.Client {
	t.Helper()
	o := paho.NewClientOptions().AddBroker(b.URL).SetClientID(id).SetCleanSession(clean).
		SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).SetDefaultPublishHandler(onMsg)
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", id, tok.Error())
	}
	return c
}

func wait(t *testing.T, tok paho.Token, what string) {
	t.Helper()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("%s: %v", what, tok.Error())
	}
}

// The broker is real: QoS 1 messages published while a persistent-session
// subscriber is away are kept across a broker restart and delivered when
// it comes back — what the bridge's no-loss tests rely on.
func TestPersistentSessionSurvivesRestart(t *testing.T) {
	b := Start(t)
	got := make(chan string, 16)
	onMsg := func(_ paho.Client, m paho.Message) { got <- string(m.Payload()) }

	sub := connect(t, b, "sub-1", false, onMsg)
	wait(t, sub.Subscribe("fleetwire/+/telemetry", 1, nil), "subscribe")
	pub := connect(t, b, "pub-1", true, nil)
	wait(t, pub.Publish("fleetwire/pi-01/telemetry", 1, false, "m0"), "publish m0")
	select {
	case m := <-got:
		if m != "m0" {
			t.Fatalf("got %q, want m0", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("m0 not delivered")
	}

	sub.Disconnect(100)
	for i := 1; i <= 3; i++ {
		wait(t, pub.Publish("fleetwire/pi-01/telemetry", 1, false, fmt.Sprintf("m%d", i)), "publish")
	}
	pub.Disconnect(100)
	b.Restart()

	sub = connect(t, b, "sub-1", false, onMsg)
	defer sub.Disconnect(100)
	for i := 1; i <= 3; i++ {
		select {
		case m := <-got:
			if m != fmt.Sprintf("m%d", i) {
				t.Fatalf("after restart got %q, want m%d", m, i)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("m%d not delivered after the restart; broker log:\n%s", i, b.Log())
		}
	}
}

func TestStopIsIdempotentAndKillLosesNothingSaved(t *testing.T) {
	b := Start(t)
	if !b.Running() {
		t.Fatal("not running after Start")
	}
	b.Kill()
	b.Kill()
	b.Stop()
	if b.Running() {
		t.Fatal("running after Kill")
	}
}
