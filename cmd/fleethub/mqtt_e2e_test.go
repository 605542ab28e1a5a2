package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/hub/certs"
	"github.com/fleetwire/fleetwire/hub/influx/influxtest"
	"github.com/fleetwire/fleetwire/hub/mqtt/mqtttest"
	"github.com/fleetwire/fleetwire/hub/store"
)

// docBlocks returns the ```sh blocks of protocol/MQTT.md that run
// mosquitto_pub, in document order.
func docBlocks(t *testing.T) []string {
	t.Helper()
	doc, err := os.ReadFile("../../protocol/MQTT.md")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(string(doc), -1) {
		if strings.Contains(m[1], "mosquitto_pub") {
			out = append(out, m[1])
		}
	}
	return out
}

// TestMQTTDocExamples runs the whole hub with the bridge enabled (config
// file, as an operator would) against real Mosquitto and InfluxDB, and
// runs every mosquitto_pub example of protocol/MQTT.md against it: each
// telemetry example is stored, the status example brings the device
// online, and nothing is refused.
func TestMQTTDocExamples(t *testing.T) {
	t.Parallel()
	ix := influxtest.Start(t)
	broker := mqtttest.Start(t)
	dir := t.TempDir()
	st, err := store.Open(context.Background(), filepath.Join(dir, "fleethub.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.CreateDevice(context.Background(), "esp32-kitchen", map[string]string{"room": "kitchen"}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	conf := writeConfig(t, fmt.Sprintf("mqtt:\n  enabled: true\n  brokers: [%q]\n  client_id: fleethub-doc\n", broker.URL))
	srv, logs := runHub(t, "--config", conf, "--data_dir", dir, "--influx.url", ix.URL, "--influx.bucket", ix.Bucket)
	metric := func(name string) float64 { return gatherSum(t, srv, name) }
	waitFor(t, 20*time.Second, "bridge connected", func() bool { return metric("fleethub_mqtt_connected") == 1 })

	_, port, _ := strings.Cut(broker.Addr, ":")
	work := t.TempDir()
	blocks := docBlocks(t)
	if len(blocks) < 7 {
		t.Fatalf("found %d mosquitto_pub examples in protocol/MQTT.md, want one per format, status and result", len(blocks))
	}
	for i, block := range blocks {
		if strings.Contains(block, "/results") {
			continue // answers a command id of the document's own; covered by hub/mqtt's command tests
		}
		script := strings.ReplaceAll(block, "-p 1883", "-p "+port)
		before := metric("fleethub_mqtt_points_stored_total")
		// Its own process group: an example may leave a device's
		// connection running in the background, killed below.
		cmd := exec.Command("sh", "-ec", script)
		cmd.Dir = work
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		outPath := filepath.Join(work, fmt.Sprintf("example-%d.out", i))
		f, err := os.Create(outPath)
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = f, f
		err = cmd.Run()
		f.Close()
		pgid := cmd.Process.Pid
		t.Cleanup(func() { syscall.Kill(-pgid, syscall.SIGKILL) })
		if err != nil {
			b, _ := os.ReadFile(outPath)
			t.Fatalf("example %d failed: %v\n%s\n%s", i, err, script, b)
		}
		switch {
		case strings.Contains(block, "/telemetry"):
			waitFor(t, 20*time.Second, fmt.Sprintf("example %d's points stored", i), func() bool { return metric("fleethub_mqtt_points_stored_total") > before })
		case strings.Contains(block, "/status"):
			waitFor(t, 10*time.Second, "esp32-kitchen online", func() bool { return srv.registry.Online("esp32-kitchen") })
			// The device's connection dies: its last will takes it offline.
			syscall.Kill(-pgid, syscall.SIGKILL)
			waitFor(t, 10*time.Second, "esp32-kitchen offline by its last will", func() bool { return !srv.registry.Online("esp32-kitchen") })
		}
		if n := metric("fleethub_mqtt_refused_total"); n != 0 {
			t.Fatalf("example %d refused (%v refusals):\n%s\nhub log:\n%s", i, n, block, logs.String())
		}
	}
	d, err := srv.store.GetDevice(context.Background(), "esp32-kitchen")
	if err != nil || d.Transport != store.TransportMQTT || d.LastSeen == nil {
		t.Errorf("esp32-kitchen after the examples: %+v, %v", d, err)
	}
	if n := ix.CountPoints(t, "env", "temperature_c", "esp32-kitchen"); n == 0 {
		t.Errorf("no env.temperature_c of esp32-kitchen in InfluxDB")
	}
}

// runHub runs the whole hub in-process on a free loopback port with args
// until the test ends, and returns it once it listens, with its log.
func runHub(t *testing.T, args ...string) (*Server, *syncBuf) {
	t.Helper()
	var out, logs syncBuf
	m := NewMain(&out, &logs)
	if err := m.ParseFlags(append([]string{"--listen", "127.0.0.1:0"}, args...)); err != nil {
		t.Fatal(err)
	}
	started := make(chan *Server, 1)
	m.Started = func(s *Server) { started <- s }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case srv := <-started:
		return srv, &logs
	case err := <-done:
		t.Fatalf("hub exited: %v\n%s", err, logs.String())
		return nil, nil
	}
}

// gatherSum sums every series of a metric on the hub's registry.
func gatherSum(t *testing.T, s *Server, name string) float64 {
	t.Helper()
	mfs, err := s.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: not %s", within, what)
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}

// TestMQTTOverTLS: the bridge reaches an ssl:// broker trusting the CA
// in mqtt.tls.ca_file, and refuses one whose certificate it cannot verify.
func TestMQTTOverTLS(t *testing.T) {
	t.Parallel()
	pki := t.TempDir()
	if _, _, err := certs.Load(pki, "", "", []string{"127.0.0.1"}, nil); err != nil {
		t.Fatal(err)
	}
	other := t.TempDir() // a CA that did not sign the broker's certificate
	if _, _, err := certs.Load(other, "", "", []string{"127.0.0.1"}, nil); err != nil {
		t.Fatal(err)
	}
	ix := influxtest.Start(t)
	broker := mqtttest.Start(t, mqtttest.TLS(pki))
	for _, tc := range []struct {
		name, ca string
		connect  bool
	}{{"trusted", pki, true}, {"untrusted", other, false}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			conf := writeConfig(t, fmt.Sprintf("mqtt:\n  enabled: true\n  brokers: [%q]\n  client_id: fleethub-tls-%s\n  tls:\n    ca_file: %q\n",
				broker.TLSURL, tc.name, filepath.Join(tc.ca, certs.CAFileName)))
			srv, logs := runHub(t, "--config", conf, "--data_dir", dir, "--influx.url", ix.URL, "--influx.bucket", ix.Bucket)
			if tc.connect {
				waitFor(t, 20*time.Second, "bridge connected over TLS", func() bool { return gatherSum(t, srv, "fleethub_mqtt_connected") == 1 })
				return
			}
			// paho reports each failed attempt through the bridge's log.
			waitFor(t, 20*time.Second, "a certificate error logged", func() bool {
				return strings.Contains(logs.String(), "certificate signed by unknown authority")
			})
			if gatherSum(t, srv, "fleethub_mqtt_connected") != 0 || gatherSum(t, srv, "fleethub_mqtt_connects_total") != 0 {
				t.Errorf("bridge connected to a broker it cannot verify")
			}
		})
	}
}

// TestMQTTRateLimitOptIn: with mqtt.rate_limit the device.* budget holds
// MQTT devices too. With 0.01 messages/s, a burst of 1 and
// throttle_close_after 1s (which earns less than 1), a device's first of
// three messages is stored and the other two refused as "rate"; off (the
// default), all three of another hub's are stored.
func TestMQTTRateLimitOptIn(t *testing.T) {
	t.Parallel()
	pub, err := exec.LookPath("mosquitto_pub")
	if err != nil {
		t.Fatalf("mosquitto_pub (Debian package mosquitto-clients; make tools installs it): %v", err)
	}
	ix := influxtest.Start(t)
	broker := mqtttest.Start(t)
	_, port, _ := strings.Cut(broker.Addr, ":")
	for _, limited := range []bool{true, false} {
		dir := t.TempDir()
		yaml := fmt.Sprintf("mqtt:\n  enabled: true\n  brokers: [%q]\n  client_id: fleethub-rate-%v\n  auto_create: true\n  rate_limit: %v\n"+
			"device:\n  max_msgs_per_sec: 0.01\n  msgs_burst: 1\n  throttle_close_after: 1s\n", broker.URL, limited, limited)
		srv, _ := runHub(t, "--config", writeConfig(t, yaml), "--data_dir", dir, "--influx.url", ix.URL, "--influx.bucket", ix.Bucket)
		metric := func(name string) float64 { return gatherSum(t, srv, name) }
		waitFor(t, 20*time.Second, "bridge connected", func() bool { return metric("fleethub_mqtt_connected") == 1 })
		topic := fmt.Sprintf("fleetwire/rate-%v/telemetry", limited)
		for i := range 3 {
			out, err := exec.Command(pub, "-h", "127.0.0.1", "-p", port, "-q", "1", "-t", topic,
				"-m", fmt.Sprintf(`{"temperature_c": %d}`, 20+i)).CombinedOutput()
			if err != nil {
				t.Fatalf("mosquitto_pub: %v\n%s", err, out)
			}
		}
		stored, refused := 3.0, 0.0
		if limited {
			stored, refused = 1, 2
		}
		waitFor(t, 20*time.Second, fmt.Sprintf("rate_limit %v: %v stored, %v refused", limited, stored, refused), func() bool {
			return metric("fleethub_mqtt_points_stored_total") == stored && metric("fleethub_mqtt_refused_total") == refused
		})
	}
}
