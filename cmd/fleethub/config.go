package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"
	"unicode/utf8"

	"github.com/fleetwire/fleetwire/cmd/internal/config"
	"github.com/fleetwire/fleetwire/hub/api"
	"github.com/fleetwire/fleetwire/hub/store"
)

// Config is the hub's configuration (YAML file, FLEETHUB_* environment,
// flags). deploy/fleethub.yaml documents every key.
type Config struct {
	DataDir         string          `mapstructure:"data_dir"`
	Listen          string          `mapstructure:"listen"`
	PublicURL       string          `mapstructure:"public_url"`
	ShutdownTimeout time.Duration   `mapstructure:"shutdown_timeout"`
	TLS             TLSConfig       `mapstructure:"tls"`
	Influx          InfluxConfig    `mapstructure:"influx"`
	HTTP            HTTPConfig      `mapstructure:"http"`
	Device          DeviceConfig    `mapstructure:"device"`
	Ingest          IngestConfig    `mapstructure:"ingest"`
	Log             LogConfig       `mapstructure:"log"`
	Dashboard       DashboardConfig `mapstructure:"dashboard"`
	MQTT            MQTTConfig      `mapstructure:"mqtt"`
}

// DashboardConfig sets dashboard sign-in.
type DashboardConfig struct {
	// AdminPassword is the first admin user's password; empty: the hub
	// makes one up on first start. Ignored once any user exists.
	AdminPassword string        `mapstructure:"admin_password" secret:"true"`
	SessionIdle   time.Duration `mapstructure:"session_idle"`
	SessionMax    time.Duration `mapstructure:"session_max"`
	// Origins may open the live WebSocket besides public_url's origin
	// (exactly scheme://host[:port], e.g. a reverse proxy's name).
	Origins []string `mapstructure:"origins"`
	// LiveFlush: each browser gets a device topic's points at most this
	// often (updates in between are merged); 0 means the default, 15ms.
	// The fleet summary goes at most every 250ms.
	LiveFlush time.Duration `mapstructure:"live_flush"`
	// Per browser (live socket): device topics it may subscribe to, device
	// points buffered for it before the oldest are dropped (counted), and
	// how long its queue may stay full before it is disconnected as too
	// slow (ingest never waits for a browser).
	MaxDeviceTopics  int           `mapstructure:"max_device_topics"`
	MaxPendingPoints int           `mapstructure:"max_pending_points"`
	SlowAfter        time.Duration `mapstructure:"slow_after"`
}

// TLSConfig selects the server certificate.
type TLSConfig struct {
	Cert     string   `mapstructure:"cert"`
	Key      string   `mapstructure:"key"`
	Hosts    []string `mapstructure:"hosts"`
	Insecure bool     `mapstructure:"insecure"`
}

// InfluxConfig points at InfluxDB.
type InfluxConfig struct {
	URL     string        `mapstructure:"url"`
	Token   string        `mapstructure:"token" secret:"true"`
	Org     string        `mapstructure:"org"`
	Bucket  string        `mapstructure:"bucket"`
	Timeout time.Duration `mapstructure:"timeout"`
}

// DeviceConfig limits device sessions.
type DeviceConfig struct {
	MaxMessageBytes config.ByteSize `mapstructure:"max_message_bytes"`
	MaxPoints       int             `mapstructure:"max_points_per_batch"`
	MaxInflight     int             `mapstructure:"max_inflight"`
	PingInterval    time.Duration   `mapstructure:"ping_interval"`
	HelloTimeout    time.Duration   `mapstructure:"hello_timeout"`
	// AcceptRate: device connections admitted per second (past it: 503 +
	// Retry-After, before the token check); 0 disables. AcceptBurst: at once.
	AcceptRate  float64 `mapstructure:"accept_rate"`
	AcceptBurst int     `mapstructure:"accept_burst"`
	// MaxConnsPerAddr: concurrent device connections per source address
	// (IPv6: per /64), checked before the token; 0 disables.
	MaxConnsPerAddr int `mapstructure:"max_conns_per_addr"`
	// Per-device rates (0 disables each) and bursts; a device throttled
	// without a break for ThrottleCloseAfter is closed (ClosePolicy).
	MaxMsgsPerSec      float64       `mapstructure:"max_msgs_per_sec"`
	MsgsBurst          int           `mapstructure:"msgs_burst"`
	MaxPointsPerSec    float64       `mapstructure:"max_points_per_sec"`
	PointsBurst        int           `mapstructure:"points_burst"`
	ThrottleCloseAfter time.Duration `mapstructure:"throttle_close_after"`
	// FlapMax: connects per device per minute before it is held off for
	// FlapHold; 0 disables.
	FlapMax  int           `mapstructure:"flap_max"`
	FlapHold time.Duration `mapstructure:"flap_hold"`
}

// HTTPConfig bounds what a peer may do before its request reaches a
// handler (TLS handshake and request header).
type HTTPConfig struct {
	// ReadHeaderTimeout bounds the TLS handshake and the request header
	// together: a peer trickling its header is cut off after it.
	ReadHeaderTimeout time.Duration   `mapstructure:"read_header_timeout"`
	MaxHeaderBytes    config.ByteSize `mapstructure:"max_header_bytes"`
	// MaxConnsPerAddr caps the TCP connections of every kind (devices,
	// API, dashboard, and sockets still in their handshake) one source
	// address may hold open; further ones are closed at accept. 0 (the
	// default): four times device.max_conns_per_addr, so off when that
	// is off.
	MaxConnsPerAddr int `mapstructure:"max_conns_per_addr"`
}

// connsPerAddr is the effective http.max_conns_per_addr (0: no cap).
func (c HTTPConfig) connsPerAddr(d DeviceConfig) int {
	if c.MaxConnsPerAddr > 0 {
		return c.MaxConnsPerAddr
	}
	return 4 * d.MaxConnsPerAddr
}

// IngestConfig sizes the ingest pipeline.
type IngestConfig struct {
	QueuePoints    int `mapstructure:"queue_points"`
	Workers        int `mapstructure:"workers"`
	MaxWritePoints int `mapstructure:"max_write_points"`
}

// LogConfig sets logging.
type LogConfig struct {
	Level  string `mapstructure:"level"`
	Format string `mapstructure:"format"`
}

func defaultConfig() Config {
	return Config{
		DataDir:         "./fleethub-data",
		Listen:          ":8443",
		ShutdownTimeout: 15 * time.Second,
		Influx:          InfluxConfig{URL: "http://127.0.0.1:8086", Bucket: "fleet/autogen", Timeout: 10 * time.Second},
		Device: DeviceConfig{
			MaxMessageBytes: 1 << 20, MaxPoints: 5000, MaxInflight: 64,
			PingInterval: 20 * time.Second, HelloTimeout: 10 * time.Second,
			AcceptRate: 1500, AcceptBurst: 400,
			MaxConnsPerAddr: 64,
			MaxMsgsPerSec:   50, MsgsBurst: 200, MaxPointsPerSec: 20_000, PointsBurst: 50_000,
			ThrottleCloseAfter: 2 * time.Minute,
			FlapMax:            10, FlapHold: 5 * time.Minute,
		},
		HTTP:   HTTPConfig{ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 16 << 10},
		Ingest: IngestConfig{QueuePoints: 250_000, Workers: 2, MaxWritePoints: 5000},
		Log:    LogConfig{Level: "info", Format: "text"},
		Dashboard: DashboardConfig{
			SessionIdle: api.DefaultSessionIdle, SessionMax: api.DefaultSessionMax,
			LiveFlush: 15 * time.Millisecond, MaxDeviceTopics: 64, MaxPendingPoints: 10_000, SlowAfter: 5 * time.Second,
		},
		MQTT: defaultMQTTConfig(),
	}
}

// Validate checks every key; messages name the key.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.DataDir == "" {
		add("data_dir: required")
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		add("listen: %q is not host:port", c.Listen)
	}
	if c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			add("public_url: %q must look like https://hub.example:8443", c.PublicURL)
		}
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		add("tls.cert, tls.key: set both or neither")
	}
	if u, err := url.Parse(c.Influx.URL); err != nil || u.Host == "" {
		add("influx.url: %q is not a URL", c.Influx.URL)
	}
	if c.Influx.Bucket == "" {
		add("influx.bucket: required (on InfluxDB 1.8: database/retention-policy, e.g. fleet/autogen)")
	}
	if c.Device.MaxMessageBytes < 4<<10 || c.Device.MaxMessageBytes > 64<<20 {
		add("device.max_message_bytes: must be 4KiB..64MiB")
	}
	if c.Device.MaxPoints < 1 || c.Device.MaxPoints > 100_000 {
		add("device.max_points_per_batch: must be 1..100000")
	}
	if c.Device.MaxInflight < 1 || c.Device.MaxInflight > 4096 {
		add("device.max_inflight: must be 1..4096")
	}
	if c.Device.PingInterval < 100*time.Millisecond {
		add("device.ping_interval: must be at least 100ms")
	}
	if c.Ingest.QueuePoints < 1 || c.Ingest.Workers < 1 || c.Ingest.MaxWritePoints < 1 {
		add("ingest: queue_points, workers and max_write_points must be >= 1")
	}
	if pw := c.Dashboard.AdminPassword; pw != "" && (utf8.RuneCountInString(pw) < store.MinPasswordLen || len(pw) > store.MaxPasswordLen) {
		add("dashboard.admin_password: must be %d..%d characters", store.MinPasswordLen, store.MaxPasswordLen)
	}
	if c.Device.AcceptRate < 0 || c.Device.AcceptBurst < 0 {
		add("device.accept_rate, device.accept_burst: must not be negative (0 disables the limit)")
	}
	c.validateAbuseLimits(add)
	if c.Dashboard.LiveFlush < 0 || c.Dashboard.LiveFlush > 10*time.Second {
		add("dashboard.live_flush: %s is outside 0..10s", c.Dashboard.LiveFlush)
	}
	if c.Dashboard.MaxDeviceTopics < 1 || c.Dashboard.MaxDeviceTopics > 10_000 {
		add("dashboard.max_device_topics: must be 1..10000")
	}
	if c.Dashboard.MaxPendingPoints < 100 || c.Dashboard.MaxPendingPoints > 10_000_000 {
		add("dashboard.max_pending_points: must be 100..10000000")
	}
	if c.Dashboard.SlowAfter < 100*time.Millisecond || c.Dashboard.SlowAfter > 10*time.Minute {
		add("dashboard.slow_after: must be 100ms..10m")
	}
	if c.Dashboard.SessionIdle < time.Minute {
		add("dashboard.session_idle: must be at least 1m")
	}
	if c.Dashboard.SessionMax < c.Dashboard.SessionIdle {
		add("dashboard.session_max: must be at least dashboard.session_idle")
	}
	if c.ShutdownTimeout <= 0 {
		add("shutdown_timeout: must be > 0")
	}
	if c.MQTT.Enabled {
		if _, err := c.MQTT.bridgeConfig(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// validateAbuseLimits checks the http.* and device.* abuse limits.
func (c *Config) validateAbuseLimits(add func(string, ...any)) {
	d := c.Device
	if d.MaxConnsPerAddr < 0 {
		add("device.max_conns_per_addr: must not be negative (0 disables the cap)")
	}
	if d.MaxMsgsPerSec < 0 || d.MsgsBurst < 0 {
		add("device.max_msgs_per_sec, device.msgs_burst: must not be negative (0 disables the limit)")
	}
	if d.MaxPointsPerSec < 0 || d.PointsBurst < 0 {
		add("device.max_points_per_sec, device.points_burst: must not be negative (0 disables the limit)")
	}
	if d.ThrottleCloseAfter < time.Second {
		add("device.throttle_close_after: must be at least 1s")
	}
	if d.FlapMax < 0 {
		add("device.flap_max: must not be negative (0 disables the hold-off)")
	}
	// Agents ignore a Retry-After over one day (protocol/SPEC.md §6).
	if d.FlapHold < time.Second || d.FlapHold > 24*time.Hour {
		add("device.flap_hold: %s is outside 1s..24h", d.FlapHold)
	}
	if t := c.HTTP.ReadHeaderTimeout; t < 100*time.Millisecond || t > 10*time.Minute {
		add("http.read_header_timeout: %s is outside 100ms..10m", t)
	}
	if b := c.HTTP.MaxHeaderBytes; b < 1<<10 || b > 1<<20 {
		add("http.max_header_bytes: must be 1KiB..1MiB")
	}
	switch n, dev := c.HTTP.MaxConnsPerAddr, c.Device.MaxConnsPerAddr; {
	case n < 0:
		add("http.max_conns_per_addr: must not be negative (0: four times device.max_conns_per_addr)")
	case n > 0 && (dev == 0 || dev > n):
		add("http.max_conns_per_addr: %d is below device.max_conns_per_addr (%d, 0 being no cap): devices from one address could never reach their own cap", n, dev)
	}
}
