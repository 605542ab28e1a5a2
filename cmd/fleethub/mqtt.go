package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"

	"github.com/fleetwire/fleetwire/cmd/internal/config"
	"github.com/fleetwire/fleetwire/hub/mqtt"
	"github.com/fleetwire/fleetwire/hub/mqtt/payload"
)

// MQTTConfig configures the MQTT bridge (hub/mqtt; protocol/MQTT.md is the
// device-facing contract).
type MQTTConfig struct {
	Enabled  bool     `mapstructure:"enabled"`
	Brokers  []string `mapstructure:"brokers"`
	ClientID string   `mapstructure:"client_id"`
	Username string   `mapstructure:"username"`
	Password string   `mapstructure:"password" secret:"true"`
	TLS      struct {
		CAFile   string `mapstructure:"ca_file"`
		CertFile string `mapstructure:"cert_file"`
		KeyFile  string `mapstructure:"key_file"`
		// ServerName overrides the name checked in the broker's certificate.
		ServerName string `mapstructure:"server_name"`
	} `mapstructure:"tls"`
	KeepAlive time.Duration `mapstructure:"keep_alive"`

	Telemetry []MQTTRoute `mapstructure:"telemetry"`
	Topics    struct {
		Status   string `mapstructure:"status"`
		Commands string `mapstructure:"commands"`
		Results  string `mapstructure:"results"`
	} `mapstructure:"topics"`
	CommandFormat string `mapstructure:"command_format"`

	AutoCreate       bool              `mapstructure:"auto_create"`
	AutoCreateLabels map[string]string `mapstructure:"auto_create_labels"`
	PresenceTimeout  time.Duration     `mapstructure:"presence_timeout"`
	MaxPayloadBytes  config.ByteSize   `mapstructure:"max_payload_bytes"`
	// RateLimit holds MQTT devices to the device.* rate budget, refusing
	// (dropping) telemetry over it. Off by default: a broker's backlog
	// after a long outage can exceed the budget's burst and would be lost.
	RateLimit       bool            `mapstructure:"rate_limit"`
	MaxPending      int             `mapstructure:"max_pending"`
	MaxPendingBytes config.ByteSize `mapstructure:"max_pending_bytes"`
	Workers         int             `mapstructure:"workers"`

	Northbound struct {
		Enabled bool   `mapstructure:"enabled"`
		Topic   string `mapstructure:"topic"`
		Format  string `mapstructure:"format"`
		QoS     int    `mapstructure:"qos"`
	} `mapstructure:"northbound"`
}

// MQTTRoute is one telemetry topic template and its payload format.
type MQTTRoute struct {
	Topic  string `mapstructure:"topic"`
	Format string `mapstructure:"format"`
}

func defaultMQTTConfig() MQTTConfig {
	c := MQTTConfig{
		Brokers: []string{"tcp://127.0.0.1:1883"}, ClientID: "fleethub",
		Telemetry:     []MQTTRoute{{Topic: mqtt.DefaultTelemetry.String(), Format: string(payload.FormatAuto)}},
		CommandFormat: string(payload.FormatJSON), KeepAlive: 30 * time.Second, PresenceTimeout: 5 * time.Minute,
		MaxPayloadBytes: payload.MaxPayloadBytes, MaxPending: 10_000, MaxPendingBytes: 64 << 20, Workers: 4,
	}
	c.Topics.Status, c.Topics.Commands, c.Topics.Results = mqtt.DefaultStatus.String(), mqtt.DefaultCommands.String(), mqtt.DefaultResults.String()
	c.Northbound.Topic, c.Northbound.Format, c.Northbound.QoS = "fleetwire/northbound/{device}/telemetry", string(payload.FormatJSON), 1
	return c
}

// bridgeConfig checks the section and turns it into the bridge's settings
// (without the hub's parts, which the server adds). Errors name the key.
func (c MQTTConfig) bridgeConfig() (mqtt.Config, error) {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	out := mqtt.Config{
		Brokers: c.Brokers, ClientID: c.ClientID, Username: c.Username, Password: c.Password,
		KeepAlive: c.KeepAlive, CommandFormat: payload.Format(c.CommandFormat),
		AutoCreate: c.AutoCreate, AutoCreateLabels: c.AutoCreateLabels, PresenceTimeout: c.PresenceTimeout,
		MaxPayloadBytes: int(c.MaxPayloadBytes), MaxPending: c.MaxPending, MaxPendingBytes: int(c.MaxPendingBytes), Workers: c.Workers,
	}
	if len(c.Brokers) == 0 {
		add("mqtt.brokers: at least one broker URL, e.g. tcp://127.0.0.1:1883")
	}
	secure := false
	for _, b := range c.Brokers {
		u, err := url.Parse(b)
		switch {
		case err != nil || u.Host == "":
			add("mqtt.brokers: %q is not a URL like tcp://host:1883", b)
		case u.Scheme == "ssl" || u.Scheme == "tls" || u.Scheme == "mqtts" || u.Scheme == "wss":
			secure = true
		case u.Scheme != "tcp" && u.Scheme != "mqtt" && u.Scheme != "ws":
			add("mqtt.brokers: %q: scheme %q (want tcp or mqtt; ssl, tls or mqtts; ws; wss)", b, u.Scheme)
		}
	}
	if c.ClientID == "" {
		add("mqtt.client_id: required (the broker keeps the bridge's session under it)")
	}
	if c.KeepAlive < time.Second {
		add("mqtt.keep_alive: at least 1s")
	}
	if c.PresenceTimeout < time.Second {
		add("mqtt.presence_timeout: at least 1s")
	}
	if c.MaxPayloadBytes < 64 || c.MaxPayloadBytes > payload.MaxPayloadBytes {
		add("mqtt.max_payload_bytes: must be 64B..%s", config.ByteSize(payload.MaxPayloadBytes))
	}
	if c.MaxPending < 1 || c.MaxPending > 1_000_000 {
		add("mqtt.max_pending: must be 1..1000000")
	}
	if c.MaxPendingBytes < 1<<20 || c.MaxPendingBytes > 16<<30 {
		add("mqtt.max_pending_bytes: must be 1MiB..16GiB")
	}
	if c.Workers < 1 || c.Workers > 256 {
		add("mqtt.workers: must be 1..256")
	}
	if len(c.Telemetry) == 0 {
		add("mqtt.telemetry: at least one topic")
	}
	for i, r := range c.Telemetry {
		t, err := mqtt.ParseTemplate(r.Topic)
		if err != nil {
			add("mqtt.telemetry[%d].topic: %v", i, err)
		}
		f, err := payload.ParseFormat(r.Format)
		if err != nil {
			add("mqtt.telemetry[%d].format: %v (want auto, cbor, json, line, senml+json or senml+cbor)", i, err)
		}
		out.Telemetry = append(out.Telemetry, mqtt.Route{Topic: t, Format: f})
	}
	for _, x := range []struct {
		key, val string
		dst      *mqtt.Template
	}{
		{"mqtt.topics.status", c.Topics.Status, &out.StatusTopic},
		{"mqtt.topics.commands", c.Topics.Commands, &out.CommandTopic},
		{"mqtt.topics.results", c.Topics.Results, &out.ResultTopic},
	} {
		t, err := mqtt.ParseTemplate(x.val)
		if err != nil {
			add("%s: %v", x.key, err)
		}
		*x.dst = t
	}
	if c.CommandFormat != "json" && c.CommandFormat != "cbor" {
		add("mqtt.command_format: %q (want json or cbor)", c.CommandFormat)
	}
	if n := c.Northbound; n.Enabled {
		t, err := mqtt.ParseTemplate(n.Topic)
		if err != nil {
			add("mqtt.northbound.topic: %v", err)
		}
		if n.Format != "json" && n.Format != "cbor" {
			add("mqtt.northbound.format: %q (want json or cbor)", n.Format)
		}
		if n.QoS != 0 && n.QoS != 1 {
			add("mqtt.northbound.qos: %d (want 0 or 1)", n.QoS)
		}
		out.Northbound = &mqtt.Northbound{Topic: t, Format: payload.Format(n.Format), QoS: byte(max(0, min(n.QoS, 1)))}
	}
	tlsCfg, err := c.tlsConfig(secure)
	if err != nil {
		errs = append(errs, err)
	}
	out.TLS = tlsCfg
	if len(errs) > 0 {
		return out, errors.Join(errs...)
	}
	// What only the assembled config can tell (topics that overlap).
	if err := mqtt.CheckConfig(out); err != nil {
		return out, fmt.Errorf("mqtt.telemetry, mqtt.topics, mqtt.northbound.topic: %w", err)
	}
	return out, nil
}

// tlsConfig builds the client TLS settings for ssl:// and wss:// brokers.
func (c MQTTConfig) tlsConfig(secure bool) (*tls.Config, error) {
	t := c.TLS
	if !secure {
		if t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != "" {
			return nil, errors.New("mqtt.tls: set, but no broker uses ssl:// or wss://")
		}
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt.tls.ca_file: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("mqtt.tls.ca_file: %s holds no PEM certificate", t.CAFile)
		}
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, errors.New("mqtt.tls.cert_file, mqtt.tls.key_file: set both or neither")
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt.tls.cert_file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
