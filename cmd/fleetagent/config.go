package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/fleetwire/fleetwire/agent/collect"
	"github.com/fleetwire/fleetwire/agent/command"
	"github.com/fleetwire/fleetwire/cmd/internal/config"
	"github.com/fleetwire/fleetwire/protocol"
)

// Config is the agent's configuration (YAML file, FLEETAGENT_* environment,
// flags). deploy/fleetagent.yaml documents every key.
type Config struct {
	DeviceID string         `mapstructure:"device_id"`
	Hub      HubConfig      `mapstructure:"hub"`
	Interval time.Duration  `mapstructure:"interval"`
	Spool    SpoolConfig    `mapstructure:"spool"`
	Collect  CollectConfig  `mapstructure:"collect"`
	Commands command.Config `mapstructure:"commands"`
	Log      LogConfig      `mapstructure:"log"`
}

// HubConfig says where the hub is and how to trust it.
type HubConfig struct {
	URL           string `mapstructure:"url"`
	Token         string `mapstructure:"token" secret:"true"`
	CAFile        string `mapstructure:"ca_file"`
	CAFingerprint string `mapstructure:"ca_fingerprint"`
	AllowInsecure bool   `mapstructure:"allow_insecure"`
	// TokenFile keeps a rotated token (it then replaces Token); default
	// device.token next to the spool directory.
	TokenFile string `mapstructure:"token_file"`
	Compress  bool   `mapstructure:"compress"`
}

// SpoolConfig bounds the on-disk buffer.
type SpoolConfig struct {
	Dir      string          `mapstructure:"dir"`
	MaxBytes config.ByteSize `mapstructure:"max_bytes"`
}

// CollectConfig selects collectors.
type CollectConfig struct {
	Disabled   []string             `mapstructure:"disabled"`
	Disks      []string             `mapstructure:"disks"`
	Interfaces []string             `mapstructure:"interfaces"`
	ThermalDir string               `mapstructure:"thermal_dir"`
	MaxPoints  int                  `mapstructure:"max_points_per_batch"`
	Exec       []collect.ExecConfig `mapstructure:"exec"`
}

// LogConfig sets logging.
type LogConfig struct {
	Level  string `mapstructure:"level"`
	Format string `mapstructure:"format"`
}

func defaultConfig() Config {
	return Config{
		Hub:      HubConfig{Compress: true},
		Interval: 10 * time.Second,
		Spool:    SpoolConfig{Dir: "/var/lib/fleetagent/spool", MaxBytes: 64 << 20},
		Collect:  CollectConfig{Disks: []string{"/"}, ThermalDir: "/sys/class/thermal", MaxPoints: 1000},
		Commands: command.Config{Enabled: true},
		Log:      LogConfig{Level: "info", Format: "text"},
	}
}

// Validate checks every key; messages name the key.
func (c *Config) Validate() error {
	var errs []error
	if c.Hub.URL == "" {
		errs = append(errs, errors.New("hub.url: required (wss://HOST:8443/v1/device)"))
	}
	if c.Hub.Token == "" {
		errs = append(errs, errors.New("hub.token: required (from `fleetctl device add`)"))
	}
	if c.Interval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("interval: %s is below the 100ms minimum", c.Interval))
	}
	if c.Spool.Dir == "" {
		errs = append(errs, errors.New("spool.dir: required"))
	}
	if c.Spool.MaxBytes < 64<<10 {
		errs = append(errs, fmt.Errorf("spool.max_bytes: %d is below the 64KiB minimum", c.Spool.MaxBytes))
	}
	if c.Collect.MaxPoints < 1 || c.Collect.MaxPoints > protocol.DefaultLimits.MaxPoints {
		errs = append(errs, fmt.Errorf("collect.max_points_per_batch: must be 1..%d", protocol.DefaultLimits.MaxPoints))
	}
	if err := c.collectConfig().Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.commandConfig().Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (c *Config) collectConfig() collect.Config {
	return collect.Config{
		Disabled:   c.Collect.Disabled,
		Disks:      c.Collect.Disks,
		Interfaces: c.Collect.Interfaces,
		ThermalDir: c.Collect.ThermalDir,
		Exec:       c.Collect.Exec,
	}
}
