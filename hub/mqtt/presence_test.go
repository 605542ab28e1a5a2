package mqtt_test

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for a process's writes and our reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testPresence: a status topic and a last will decide online/offline; a
// device without one is online while it sends and offline after the
// presence timeout.
func testPresence(t *testing.T, r *rig) {
	pub := r.client("publisher-presence", nil)
	r.device("pres-a", nil)
	r.device("pres-lwt", nil)
	r.device("pres-quiet", nil)

	publish(t, pub, "fleetwire/pres-a/status", []byte(" Online\n"))
	eventually(t, 10*time.Second, "pres-a online", func() bool { return r.registry.Online("pres-a") })
	publish(t, pub, "fleetwire/pres-a/status", []byte("offline"))
	eventually(t, 10*time.Second, "pres-a offline", func() bool { return !r.registry.Online("pres-a") })
	if d, err := r.store.GetDevice(context.Background(), "pres-a"); err != nil || d.LastSeen == nil {
		t.Errorf("pres-a last seen not recorded: %+v, %v", d, err)
	}

	// A device whose connection dies: the broker publishes its last will.
	host, port, _ := strings.Cut(r.broker.Addr, ":")
	sub := exec.Command("mosquitto_sub", "-h", host, "-p", port, "-i", "pres-lwt", "-t", "fleetwire/pres-lwt/commands", "-q", "1",
		"--will-topic", "fleetwire/pres-lwt/status", "--will-payload", "offline", "--will-qos", "1", "--will-retain")
	var out syncBuffer
	sub.Stdout = &out
	if err := sub.Start(); err != nil {
		t.Fatalf("mosquitto_sub (Debian package mosquitto-clients: run `make tools`): %v", err)
	}
	t.Cleanup(func() { sub.Process.Kill(); sub.Wait() })
	publish(t, pub, "fleetwire/pres-lwt/status", []byte("online"))
	eventually(t, 10*time.Second, "pres-lwt online", func() bool { return r.registry.Online("pres-lwt") })
	// Kill it once it is subscribed (its will is registered at connect).
	eventually(t, 10*time.Second, "mosquitto_sub subscribed", func() bool {
		publish(t, pub, "fleetwire/pres-lwt/commands", []byte("ping"))
		return strings.Contains(out.String(), "ping")
	})
	sub.Process.Kill()
	sub.Wait()
	eventually(t, 10*time.Second, "pres-lwt offline by its last will", func() bool { return !r.registry.Online("pres-lwt") })

	// No status topic: online while sending, offline after the timeout.
	publish(t, pub, "fleetwire/pres-quiet/telemetry", []byte(`{"temp":20}`))
	eventually(t, 10*time.Second, "pres-quiet online after telemetry", func() bool { return r.registry.Online("pres-quiet") })
	r.clock.advance(5 * time.Second) // past the 4 s presence timeout
	eventually(t, 10*time.Second, "pres-quiet offline after the presence timeout", func() bool { return !r.registry.Online("pres-quiet") })
}
