package mqtt_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/hub/influx"
	"github.com/fleetwire/fleetwire/hub/influx/influxtest"
	"github.com/fleetwire/fleetwire/hub/live"
	"github.com/fleetwire/fleetwire/hub/mqtt"
	"github.com/fleetwire/fleetwire/hub/mqtt/mqtttest"
	"github.com/fleetwire/fleetwire/hub/store"
)

// rig is a bridge wired to the real parts: Mosquitto, SQLite, InfluxDB
// (shared between a test's subtests, devices kept apart by id), the hub's
// ingester, registry, command service and live broker.
type rig struct {
	t        testing.TB
	broker   *mqtttest.Broker
	db       *influxtest.Server
	store    *store.Store
	registry *hub.Registry
	commands *hub.CommandService
	live     *live.Broker
	ingester *hub.Ingester
	bridge   *mqtt.Bridge
	reg      *prometheus.Registry
	clock    *clock
	cfg      mqtt.Config
}

// clock is the command service's and bridge's time; tests move it on to
// reach TTLs and timeouts without waiting for them.
type clock struct{ off atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) advance(d time.Duration) { c.off.Add(int64(d)) }

// rigOption adjusts the bridge config or the sink before start.
type rigOption func(*rigSetup)

type rigSetup struct {
	broker []mqtttest.Option
	cfg    mqtt.Config
	sink   func(hub.TelemetrySink) hub.TelemetrySink
}

func newRig(t testing.TB, db *influxtest.Server, opts ...rigOption) *rig {
	t.Helper()
	r := &rig{t: t, db: db, reg: prometheus.NewRegistry(), clock: &clock{}}
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "fleethub.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r.store = st
	log := testLogger(t)
	m := hub.NewMetrics(nil)
	r.registry = hub.NewRegistry(m)
	r.commands = hub.NewCommandService(st, r.registry, hub.NewCommandMetrics(nil), log)
	r.commands.SetClock(r.clock.now)
	r.live = live.New(live.Config{FlushInterval: 10 * time.Millisecond})
	r.registry.OnPresence(r.live.DeviceState)
	sink, err := influx.New(influx.Config{URL: db.URL, Bucket: db.Bucket, MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second}, st, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sink.Close)
	setup := rigSetup{cfg: mqtt.Config{
		ClientID: "fleethub-test", MaxReconnect: time.Second,
		Store: st, Registry: r.registry, Commands: r.commands, Live: r.live, DeadLetters: st,
		Registerer: r.reg, Logger: log, Clock: r.clock.now,
	}, sink: func(s hub.TelemetrySink) hub.TelemetrySink { return s }}
	for _, o := range opts {
		o(&setup)
	}
	r.broker = mqtttest.Start(t, setup.broker...)
	setup.cfg.Brokers = []string{r.broker.URL}
	late := &lateIngester{}
	setup.cfg.Ingester = late
	r.bridge, err = mqtt.New(setup.cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.cfg = setup.cfg
	r.ingester = hub.NewIngester(hub.IngestConfig{}, setup.sink(r.bridge.Sink(sink)), m, log)
	late.in = r.ingester
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		go r.live.Run(ctx)
		r.commands.Run(ctx)
	}()
	r.bridge.Start()
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		if err := r.bridge.Close(sctx); err != nil {
			t.Errorf("bridge close: %v", err)
		}
		cancel()
		<-done
		r.ingester.Close(sctx)
	})
	r.waitConnected()
	return r
}

type lateIngester struct{ in *hub.Ingester }

func (l *lateIngester) Submit(ctx context.Context, b *hub.IngestBatch, done func(error)) error {
	return l.in.Submit(ctx, b, done)
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("FLEETWIRE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// restartBridge closes the bridge as a hub shutdown does and starts a new
// one with the same config (and session), with fresh metrics.
func (r *rig) restartBridge() {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := r.bridge.Close(ctx); err != nil {
		r.t.Fatalf("bridge close: %v", err)
	}
	r.reg = prometheus.NewRegistry()
	cfg := r.cfg
	cfg.Registerer = r.reg
	b, err := mqtt.New(cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	r.bridge = b
	b.Start()
	r.waitConnected()
}

func (r *rig) waitConnected() {
	r.t.Helper()
	eventually(r.t, 20*time.Second, "bridge connected", func() bool { return r.metric("fleethub_mqtt_connected", nil) == 1 })
}

// device registers id in the registry.
func (r *rig) device(id string, labels map[string]string) {
	r.t.Helper()
	if _, _, err := r.store.CreateDevice(context.Background(), id, labels); err != nil {
		r.t.Fatal(err)
	}
}

// metric reads a counter or gauge of the bridge; labels select one series.
func (r *rig) metric(name string, labels map[string]string) float64 {
	r.t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		r.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		sum := 0.0
		for _, m := range mf.GetMetric() {
			if !labelsMatch(m, labels) {
				continue
			}
			if c := m.GetCounter(); c != nil {
				sum += c.GetValue()
			}
			if g := m.GetGauge(); g != nil {
				sum += g.GetValue()
			}
		}
		return sum
	}
	return 0
}

func labelsMatch(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, lp := range m.GetLabel() {
		if v, ok := want[lp.GetName()]; ok {
			if v != lp.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}

func (r *rig) refused(reason string) float64 {
	return r.metric("fleethub_mqtt_refused_total", map[string]string{"reason": reason})
}

// client connects a paho client (a device or a test publisher) to the
// rig's broker.
func (r *rig) client(id string, setup func(*paho.ClientOptions)) paho.Client {
	r.t.Helper()
	o := paho.NewClientOptions().AddBroker(r.broker.URL).SetClientID(id).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(100 * time.Millisecond).
		SetMaxReconnectInterval(time.Second)
	if setup != nil {
		setup(o)
	}
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		r.t.Fatalf("client %s connect: %v", id, tok.Error())
	}
	r.t.Cleanup(func() { c.Disconnect(100) })
	return c
}

// publish sends one QoS 1 message and waits for the broker's ack.
func publish(t testing.TB, c paho.Client, topic string, data []byte) {
	t.Helper()
	tok := c.Publish(topic, 1, false, data)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	mqtt.Eventually(t, within, what, cond)
}

// count is the number of values of field in measurement stored for dev.
func (r *rig) count(measurement, field, dev string) int {
	return r.db.CountPoints(r.t, measurement, field, dev)
}

// values returns every stored value of measurement/field for dev.
func (r *rig) values(measurement, field, dev string) []any {
	r.t.Helper()
	q := fmt.Sprintf(`from(bucket: %s) |> range(start: 1970-01-01T00:00:00Z, stop: 2200-01-01T00:00:00Z)
  |> filter(fn: (r) => r._measurement == %s and r._field == %s and r.device == %s)`,
		influxtest.FluxString(r.db.Bucket), influxtest.FluxString(measurement), influxtest.FluxString(field), influxtest.FluxString(dev))
	var out []any
	for _, rec := range r.db.Query(r.t, q) {
		out = append(out, rec["_value"])
	}
	return out
}

// liveWatch subscribes to dev's live topic and returns a function that
// reports whether a message naming metric arrived so far.
func (r *rig) liveWatch(dev string) func(metric string) bool {
	r.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r.t.Cleanup(cancel)
	sub := r.live.Subscribe(ctx)
	if err := sub.SubscribeDevice(dev); err != nil {
		r.t.Fatal(err)
	}
	var seen atomic.Value
	seen.Store("")
	go func() {
		for {
			select {
			case msg := <-sub.Out():
				seen.Store(seen.Load().(string) + string(msg))
			case <-sub.Done():
				return
			}
		}
	}()
	return func(metric string) bool { return strings.Contains(seen.Load().(string), `"`+metric+`"`) }
}
