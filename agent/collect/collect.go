package collect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/fleetwire/fleetwire/protocol"
)

// Collector gathers one group of metrics. Collect is called once per
// interval by one goroutine.
type Collector interface {
	// Name is the collector's name for logs ("cpu", "exec:sensor").
	Name() string
	// Collect returns points with DT=0; the batcher sets the time. It may
	// return some points together with an error (one mount of several
	// failed, bad lines in a script's output). The points' Tags maps may
	// be shared with other points and later collections: never modify
	// them.
	Collect(ctx context.Context) ([]protocol.Point, error)
}

// Built-in collector names, as used in Config.Disabled.
const (
	NameCPU    = "cpu"
	NameMem    = "mem"
	NameDisk   = "disk"
	NameNet    = "net"
	NameLoad   = "load"
	NameUptime = "uptime"
	NameTemp   = "temp"
)

// builtinNames lists the built-in collectors in the order New returns them.
var builtinNames = []string{NameCPU, NameMem, NameDisk, NameNet, NameLoad, NameUptime, NameTemp}

// reservedMeasurements are the measurements the built-in collectors write;
// an exec collector may not use them, or its fields would mix with (and
// could conflict in type with) the built-in ones.
var reservedMeasurements = []string{"cpu", "mem", "disk", "net", "load", "system", "temp"}

// Defaults and limits.
const (
	DefaultThermalDir  = "/sys/class/thermal"
	DefaultExecTimeout = 10 * time.Second
	DefaultMaxOutput   = 64 << 10
	// MaxMaxOutput bounds ExecConfig.MaxOutput: the agent's whole RSS
	// budget is 12 MiB.
	MaxMaxOutput = 1 << 20
	// MinExecInterval is the shortest non-zero ExecConfig.Interval, the
	// same floor as the agent's own interval.
	MinExecInterval = 100 * time.Millisecond
	// maxIfaceLen is IFNAMSIZ-1 on Linux.
	maxIfaceLen = 15
)

// Config selects and configures the collectors. The zero value enables
// every built-in collector with its defaults.
type Config struct {
	Disabled   []string     // collector names to turn off: cpu, mem, disk, net, load, uptime, temp
	Disks      []string     // mount points for the disk collector (default ["/"])
	Interfaces []string     // network interfaces (default: all except loopback)
	ThermalDir string       // default /sys/class/thermal (tests point it at a fake tree)
	Exec       []ExecConfig // programs whose output becomes points (doc.go "Exec output format")
}

// ExecConfig is one program run by an exec collector.
type ExecConfig struct {
	// Name is the measurement of every point: line "t 1" becomes point
	// "<Name>.t". Must be a valid name without '.', unique among exec
	// collectors, and not a built-in measurement.
	Name string `mapstructure:"name"`
	// Command is the argv; it is run directly, never through a shell.
	// Command[0] is looked up in PATH when it has no '/'.
	Command []string `mapstructure:"command"`
	// Interval is how often the program runs. 0 means at every collection
	// (the agent's interval).
	Interval time.Duration `mapstructure:"interval"`
	// Timeout bounds one run (default 10s); on expiry the whole process
	// group is killed.
	Timeout time.Duration `mapstructure:"timeout"`
	// MaxOutput is how many bytes of stdout are read (default 64 KiB, at
	// most 1 MiB); more is an error and the run yields no points.
	MaxOutput int `mapstructure:"max_output"`
}

// Validate checks every key; each message names the key, e.g.
// "collect.exec[0].command: must not be empty". All problems are reported,
// joined.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	for i, n := range c.Disabled {
		if !slices.Contains(builtinNames, n) {
			add("collect.disabled[%d]: unknown collector %q (known: %s)", i, n, strings.Join(builtinNames, ", "))
		}
	}
	for i, d := range c.Disks {
		switch {
		case !filepath.IsAbs(d):
			add("collect.disks[%d]: %q is not an absolute path", i, d)
		case validTagValue(d) != nil:
			add("collect.disks[%d]: %v", i, validTagValue(d))
		case slices.Contains(c.Disks[:i], d):
			add("collect.disks[%d]: %q listed twice", i, d)
		}
	}
	for i, n := range c.Interfaces {
		switch {
		case n == "" || len(n) > maxIfaceLen || strings.ContainsAny(n, "/ \t") || validTagValue(n) != nil:
			add("collect.interfaces[%d]: %q is not an interface name (1..%d bytes, no '/', space or control character)", i, n, maxIfaceLen)
		case slices.Contains(c.Interfaces[:i], n):
			add("collect.interfaces[%d]: %q listed twice", i, n)
		}
	}
	if c.ThermalDir != "" && !filepath.IsAbs(c.ThermalDir) {
		add("collect.thermal_dir: %q is not an absolute path", c.ThermalDir)
	}
	for i, e := range c.Exec {
		errs = append(errs, e.validate(fmt.Sprintf("collect.exec[%d]", i), c.Exec[:i])...)
	}
	return errors.Join(errs...)
}

func (e ExecConfig) validate(key string, before []ExecConfig) []error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(key+"."+format, args...))
	}
	switch {
	case protocol.ValidName(e.Name, protocol.DefaultLimits.MaxNameLen/2) != nil:
		add("name: %v", protocol.ValidName(e.Name, protocol.DefaultLimits.MaxNameLen/2))
	case strings.Contains(e.Name, "."):
		add("name: %q must not contain '.' (it is the measurement)", e.Name)
	case slices.Contains(reservedMeasurements, e.Name):
		add("name: %q is a built-in measurement", e.Name)
	case slices.ContainsFunc(before, func(o ExecConfig) bool { return o.Name == e.Name }):
		add("name: %q used by another exec collector", e.Name)
	}
	if len(e.Command) == 0 || e.Command[0] == "" {
		add("command: must not be empty")
	}
	if e.Interval < 0 || (e.Interval > 0 && e.Interval < MinExecInterval) {
		add("interval: %s must be 0 (every collection) or at least %s", e.Interval, MinExecInterval)
	}
	if e.Timeout < 0 {
		add("timeout: %s must not be negative", e.Timeout)
	}
	if e.MaxOutput < 0 || e.MaxOutput > MaxMaxOutput {
		add("max_output: %d not in 0..%d (0 means %d)", e.MaxOutput, MaxMaxOutput, DefaultMaxOutput)
	}
	return errs
}

// withDefaults fills the zero fields.
func (e ExecConfig) withDefaults() ExecConfig {
	if e.Timeout == 0 {
		e.Timeout = DefaultExecTimeout
	}
	if e.MaxOutput == 0 {
		e.MaxOutput = DefaultMaxOutput
	}
	return e
}

// New validates cfg and returns the enabled collectors: the built-in ones
// in the order cpu, mem, disk, net, load, uptime, temp, then one per exec
// entry. Exec collectors come last so that a slow program eats into the
// collection deadline only after the cheap collectors are done. Exec
// collectors implement io.Closer; Close stops a run in progress.
func New(cfg Config, log *slog.Logger) ([]Collector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	disks := cfg.Disks
	if len(disks) == 0 {
		disks = []string{"/"}
	}
	thermal := cfg.ThermalDir
	if thermal == "" {
		thermal = DefaultThermalDir
	}
	var out []Collector
	for _, name := range builtinNames {
		if slices.Contains(cfg.Disabled, name) {
			continue
		}
		switch name {
		case NameCPU:
			out = append(out, newCPU())
		case NameMem:
			out = append(out, newMem())
		case NameDisk:
			out = append(out, newDisk(disks))
		case NameNet:
			out = append(out, newNet(cfg.Interfaces))
		case NameLoad:
			out = append(out, newLoad())
		case NameUptime:
			out = append(out, newUptime())
		case NameTemp:
			out = append(out, newTemp(thermal))
		}
	}
	for _, e := range cfg.Exec {
		out = append(out, newExec(e.withDefaults(), log))
	}
	return out, nil
}

// validTagValue applies the hub's tag value rules (protocol Batch.Validate)
// so a collector never builds a point the hub would reject.
func validTagValue(v string) error {
	if len(v) == 0 || len(v) > protocol.DefaultLimits.MaxTagValueLen {
		return fmt.Errorf("tag value length %d not in 1..%d", len(v), protocol.DefaultLimits.MaxTagValueLen)
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return fmt.Errorf("tag value %q: byte %d is a control character or backslash", v, i)
		}
	}
	if !utf8.ValidString(v) {
		return fmt.Errorf("tag value %q is not UTF-8", v)
	}
	return nil
}
