package mqtt

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/hub/mqtt/mqtttest"
	"github.com/fleetwire/fleetwire/protocol"
)

// nopStore and friends stand in for the hub's parts this test never
// reaches (it sends no device message).
type nopStore struct{}

func (nopStore) GetDevice(context.Context, string) (hub.Device, error) {
	return hub.Device{}, hub.ErrNotFound
}
func (nopStore) CreateDevice(context.Context, string, map[string]string) (hub.Device, string, error) {
	return hub.Device{}, "", hub.ErrNotFound
}
func (nopStore) TouchDevice(context.Context, string, time.Time, string) error { return nil }
func (nopStore) SetDeviceTransport(context.Context, string, string) error     { return nil }

type nopIngester struct{}

func (nopIngester) Submit(context.Context, *hub.IngestBatch, func(error)) error { return nil }

type nopCommands struct{}

func (nopCommands) HandleResult(context.Context, string, *protocol.CommandResult) error { return nil }
func (nopCommands) DeviceConnected(string)                                              {}

// TestReconnectWhileBrokerDown: the bridge's own reconnect (after an
// overflow, a failed subscribe or a registry error) can come while paho is
// still retrying a lost connection; the bridge must connect again once the
// broker is back.
func TestReconnectWhileBrokerDown(t *testing.T) {
	broker := mqtttest.Start(t)
	b, err := New(Config{
		Brokers: []string{broker.URL}, ClientID: "reconnect-test", MaxReconnect: time.Second,
		Store: nopStore{}, Registry: hub.NewRegistry(hub.NewMetrics(nil)), Ingester: nopIngester{}, Commands: nopCommands{},
	})
	if err != nil {
		t.Fatal(err)
	}
	b.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		b.Close(ctx)
	})
	connected := func() bool { return testutil.ToFloat64(b.metrics.connected) == 1 }
	Eventually(t, 20*time.Second, "connected", connected)
	broker.Stop()
	Eventually(t, 20*time.Second, "connection lost", func() bool { return !connected() })
	b.linkMu.Lock()
	gen := b.gen
	b.linkMu.Unlock()
	b.reconnect(gen) // while paho retries the lost connection
	broker.Restart()
	Eventually(t, 30*time.Second, "connected again once the broker is back", connected)
	if !b.current(gen + 1) {
		t.Errorf("reconnect did not make a new client generation")
	}
}

// Eventually polls cond until it holds or the deadline passes; exported
// for the package's external tests too (this is a _test.go file).
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: not %s", within, what)
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}
