package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/hub/mqtt"
	"github.com/fleetwire/fleetwire/hub/mqtt/payload"
)

func TestMQTTConfigDefaultIsValid(t *testing.T) {
	c := defaultMQTTConfig()
	bc, err := c.bridgeConfig()
	if err != nil {
		t.Fatalf("default mqtt config: %v", err)
	}
	if len(bc.Telemetry) != 1 || bc.Telemetry[0].Topic.String() != mqtt.DefaultTelemetry.String() || bc.Telemetry[0].Format != payload.FormatAuto {
		t.Errorf("telemetry routes %+v", bc.Telemetry)
	}
	if bc.StatusTopic.String() != mqtt.DefaultStatus.String() || bc.CommandTopic.String() != mqtt.DefaultCommands.String() ||
		bc.ResultTopic.String() != mqtt.DefaultResults.String() {
		t.Errorf("topics %s %s %s", bc.StatusTopic, bc.CommandTopic, bc.ResultTopic)
	}
	if bc.Northbound != nil || bc.TLS != nil {
		t.Errorf("northbound %+v, tls %v: want both off by default", bc.Northbound, bc.TLS)
	}
	// The default northbound settings are valid once enabled.
	c.Northbound.Enabled = true
	bc, err = c.bridgeConfig()
	if err != nil {
		t.Fatalf("default mqtt config with northbound: %v", err)
	}
	if bc.Northbound == nil || bc.Northbound.QoS != 1 || bc.Northbound.Format != payload.FormatJSON {
		t.Errorf("northbound %+v", bc.Northbound)
	}
	// ssl:// without a CA file: the system roots.
	c.Brokers = []string{"ssl://broker.example:8883", "tcp://127.0.0.1:1883"}
	bc, err = c.bridgeConfig()
	if err != nil || bc.TLS == nil {
		t.Errorf("ssl:// broker: TLS %v, error %v", bc.TLS, err)
	}
}

func TestMQTTConfigErrorsNameTheKey(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.pem")
	for _, tc := range []struct {
		name string
		edit func(*MQTTConfig)
		want string
	}{
		{"no brokers", func(c *MQTTConfig) { c.Brokers = nil }, "mqtt.brokers"},
		{"broker not a URL", func(c *MQTTConfig) { c.Brokers = []string{"127.0.0.1:1883"} }, "mqtt.brokers"},
		{"broker without host", func(c *MQTTConfig) { c.Brokers = []string{"tcp://"} }, "mqtt.brokers"},
		{"broker host:port only", func(c *MQTTConfig) { c.Brokers = []string{"localhost:1883"} }, "mqtt.brokers"},
		{"broker bad scheme", func(c *MQTTConfig) { c.Brokers = []string{"http://broker:1883"} }, "scheme"},
		{"second broker bad", func(c *MQTTConfig) { c.Brokers = []string{"tcp://a:1883", "%zz"} }, "mqtt.brokers"},
		{"client id empty", func(c *MQTTConfig) { c.ClientID = "" }, "mqtt.client_id"},
		{"keep alive 0", func(c *MQTTConfig) { c.KeepAlive = 0 }, "mqtt.keep_alive"},
		{"keep alive < 1s", func(c *MQTTConfig) { c.KeepAlive = 999 * time.Millisecond }, "mqtt.keep_alive"},
		{"presence timeout 0", func(c *MQTTConfig) { c.PresenceTimeout = 0 }, "mqtt.presence_timeout"},
		{"presence timeout < 1s", func(c *MQTTConfig) { c.PresenceTimeout = time.Millisecond }, "mqtt.presence_timeout"},
		{"max payload 0", func(c *MQTTConfig) { c.MaxPayloadBytes = 0 }, "mqtt.max_payload_bytes"},
		{"max payload 63", func(c *MQTTConfig) { c.MaxPayloadBytes = 63 }, "mqtt.max_payload_bytes"},
		{"max payload too big", func(c *MQTTConfig) { c.MaxPayloadBytes = payload.MaxPayloadBytes + 1 }, "mqtt.max_payload_bytes"},
		{"max pending 0", func(c *MQTTConfig) { c.MaxPending = 0 }, "mqtt.max_pending"},
		{"max pending too big", func(c *MQTTConfig) { c.MaxPending = 1_000_001 }, "mqtt.max_pending"},
		{"workers 0", func(c *MQTTConfig) { c.Workers = 0 }, "mqtt.workers"},
		{"workers 257", func(c *MQTTConfig) { c.Workers = 257 }, "mqtt.workers"},
		{"telemetry empty", func(c *MQTTConfig) { c.Telemetry = nil }, "mqtt.telemetry"},
		{"telemetry bad topic", func(c *MQTTConfig) { c.Telemetry = []MQTTRoute{{Topic: "x/+/t", Format: "json"}} }, "mqtt.telemetry[0].topic"},
		{"telemetry second topic bad", func(c *MQTTConfig) {
			c.Telemetry = append(c.Telemetry, MQTTRoute{Topic: "no/device", Format: "json"})
		}, "mqtt.telemetry[1].topic"},
		{"telemetry bad format", func(c *MQTTConfig) { c.Telemetry[0].Format = "xml" }, "mqtt.telemetry[0].format"},
		{"telemetry empty format", func(c *MQTTConfig) { c.Telemetry[0].Format = "" }, "mqtt.telemetry[0].format"},
		{"status without device", func(c *MQTTConfig) { c.Topics.Status = "fleetwire/status" }, "mqtt.topics.status"},
		{"commands empty", func(c *MQTTConfig) { c.Topics.Commands = "" }, "mqtt.topics.commands"},
		{"results wildcard", func(c *MQTTConfig) { c.Topics.Results = "fleetwire/{device}/#" }, "mqtt.topics.results"},
		{"status overlaps telemetry", func(c *MQTTConfig) { c.Topics.Status = c.Telemetry[0].Topic }, "overlap"},
		{"two telemetry routes overlap", func(c *MQTTConfig) {
			c.Telemetry = []MQTTRoute{{Topic: "a/{device}/t", Format: "json"}, {Topic: "{device}/x/t", Format: "line"}}
		}, "overlap"},
		{"command format xml", func(c *MQTTConfig) { c.CommandFormat = "xml" }, "mqtt.command_format"},
		{"command format auto", func(c *MQTTConfig) { c.CommandFormat = "auto" }, "mqtt.command_format"},
		{"northbound overlaps telemetry", func(c *MQTTConfig) {
			c.Northbound.Enabled, c.Northbound.Topic = true, c.Telemetry[0].Topic
		}, "northbound"},
		{"northbound bad topic", func(c *MQTTConfig) { c.Northbound.Enabled, c.Northbound.Topic = true, "north" }, "mqtt.northbound.topic"},
		{"northbound format xml", func(c *MQTTConfig) { c.Northbound.Enabled, c.Northbound.Format = true, "xml" }, "mqtt.northbound.format"},
		{"northbound qos 2", func(c *MQTTConfig) { c.Northbound.Enabled, c.Northbound.QoS = true, 2 }, "mqtt.northbound.qos"},
		{"northbound qos -1", func(c *MQTTConfig) { c.Northbound.Enabled, c.Northbound.QoS = true, -1 }, "mqtt.northbound.qos"},
		{"tls ca with tcp broker", func(c *MQTTConfig) { c.TLS.CAFile = missing }, "mqtt.tls: set, but no broker uses ssl"},
		{"tls cert with tcp broker", func(c *MQTTConfig) { c.TLS.CertFile = missing }, "mqtt.tls: set, but no broker uses ssl"},
		{"ssl broker, missing ca file", func(c *MQTTConfig) {
			c.Brokers, c.TLS.CAFile = []string{"ssl://broker:8883"}, missing
		}, "mqtt.tls.ca_file"},
		{"ssl broker, ca file without PEM", func(c *MQTTConfig) {
			p := filepath.Join(t.TempDir(), "ca.pem")
			os.WriteFile(p, []byte("not a certificate\n"), 0o600)
			c.Brokers, c.TLS.CAFile = []string{"ssl://broker:8883"}, p
		}, "mqtt.tls.ca_file"},
		{"cert without key", func(c *MQTTConfig) {
			c.Brokers, c.TLS.CertFile = []string{"ssl://broker:8883"}, missing
		}, "mqtt.tls.cert_file"},
		{"key without cert", func(c *MQTTConfig) {
			c.Brokers, c.TLS.KeyFile = []string{"wss://broker:443/mqtt"}, missing
		}, "mqtt.tls.key_file"},
		{"cert and key missing", func(c *MQTTConfig) {
			c.Brokers, c.TLS.CertFile, c.TLS.KeyFile = []string{"mqtts://broker:8883"}, missing, missing
		}, "mqtt.tls.cert_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := defaultMQTTConfig()
			tc.edit(&c)
			_, err := c.bridgeConfig()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("bridgeConfig error %v, want one naming %q", err, tc.want)
			}
		})
	}
}

func TestMQTTConfigValidateOnlyWhenEnabled(t *testing.T) {
	c := defaultConfig()
	c.MQTT.Brokers, c.MQTT.Workers = nil, 0
	if err := c.Validate(); err != nil {
		t.Fatalf("mqtt disabled: Validate checked the mqtt section: %v", err)
	}
	c.MQTT.Enabled = true
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "mqtt.brokers") || !strings.Contains(err.Error(), "mqtt.workers") {
		t.Fatalf("mqtt enabled: Validate error %v, want it to name mqtt.brokers and mqtt.workers", err)
	}
	c = defaultConfig()
	c.MQTT.Enabled = true
	if err := c.Validate(); err != nil {
		t.Fatalf("default config with mqtt enabled: %v", err)
	}
}

func TestMQTTConfigLoadsFromFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "fleethub.yaml")
	yaml := "mqtt: {enabled: true, telemetry: [{topic: \"x/{device}/t\", format: json}]}\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	m := NewMain(&bytes.Buffer{}, &bytes.Buffer{})
	if err := m.ParseFlags([]string{"--config", path, "--data_dir", dir}); err != nil {
		t.Fatalf("ParseFlags: %v", err)
	}
	mc := m.Config.MQTT
	if !mc.Enabled {
		t.Error("mqtt.enabled not loaded")
	}
	if want := []MQTTRoute{{Topic: "x/{device}/t", Format: "json"}}; !reflect.DeepEqual(mc.Telemetry, want) {
		t.Errorf("mqtt.telemetry = %+v, want %+v (the file's list replaces the default)", mc.Telemetry, want)
	}
	// Keys the file leaves out keep their defaults.
	def := defaultMQTTConfig()
	if !reflect.DeepEqual(mc.Brokers, def.Brokers) || mc.ClientID != def.ClientID || mc.Topics != def.Topics || mc.Workers != def.Workers {
		t.Errorf("defaults lost: %+v", mc)
	}
	bc, err := mc.bridgeConfig()
	if err != nil {
		t.Fatal(err)
	}
	if len(bc.Telemetry) != 1 || bc.Telemetry[0].Topic.Filter() != "x/+/t" || bc.Telemetry[0].Format != payload.FormatJSON {
		t.Errorf("bridge telemetry %+v", bc.Telemetry)
	}
}

func TestMQTTConfigBadFileNamesTheKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "fleethub.yaml")
	yaml := "mqtt: {enabled: true, telemetry: [{topic: \"x/t\", format: json}]}\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	m := NewMain(&bytes.Buffer{}, &bytes.Buffer{})
	err := m.ParseFlags([]string{"--config", path, "--data_dir", dir})
	if err == nil || !strings.Contains(err.Error(), "mqtt.telemetry[0].topic") {
		t.Fatalf("ParseFlags error %v, want it to name mqtt.telemetry[0].topic", err)
	}
}

func TestMQTTConfigBrokersFromEnv(t *testing.T) {
	t.Setenv("FLEETHUB_MQTT_BROKERS", "tcp://a:1883,tcp://b:1883")
	t.Setenv("FLEETHUB_MQTT_ENABLED", "true")
	m := NewMain(&bytes.Buffer{}, &bytes.Buffer{})
	if err := m.ParseFlags([]string{"--data_dir", t.TempDir()}); err != nil {
		t.Fatalf("ParseFlags: %v", err)
	}
	if want := []string{"tcp://a:1883", "tcp://b:1883"}; !reflect.DeepEqual(m.Config.MQTT.Brokers, want) {
		t.Fatalf("mqtt.brokers = %q, want %q", m.Config.MQTT.Brokers, want)
	}
	if !m.Config.MQTT.Enabled {
		t.Error("FLEETHUB_MQTT_ENABLED not read")
	}
}
