package live

import (
	"testing"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/protocol"
)

type nopSession struct{}

func (nopSession) Close(protocol.CloseCode, string) {}

// The registry hook: first session online, replacement silent, last
// session gone offline.
func TestRegistryPresenceHook(t *testing.T) {
	b := New(Config{})
	reg := hub.NewRegistry(hub.NewMetrics(nil))
	reg.OnPresence(b.DeviceState)
	s := b.Subscribe(t.Context())
	defer s.Close()
	if err := s.SubscribeDevice("pi-01"); err != nil {
		t.Fatal(err)
	}
	s1, s2 := &nopSession{}, &nopSession{}
	reg.Register("pi-01", s1)
	if m := recv(t, s); m["type"] != "device_state" || m["online"] != true {
		t.Fatalf("register: %v", m)
	}
	reg.Register("pi-01", s2) // replaces s1: still online, no event
	reg.Unregister("pi-01", s1)
	reg.Unregister("pi-01", s2)
	if m := recv(t, s); m["type"] != "device_state" || m["online"] != false {
		t.Fatalf("unregister: %v", m)
	}
	b.winMu.Lock()
	online := b.devices["pi-01"].online
	b.winMu.Unlock()
	if online {
		t.Fatal("device still online")
	}
}
