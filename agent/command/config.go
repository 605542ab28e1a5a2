package command

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/fleetwire/fleetwire/protocol"
)

// Limits and defaults of the command configuration (doc.go).
const (
	DefaultMaxOutput = 64 << 10         // bytes per stream when max_output is 0
	MaxMaxOutput     = 256 << 10        // largest max_output accepted: both streams fit one 1 MiB message
	DefaultTimeout   = 60 * time.Second // when an allowed command sets no timeout
	MaxTimeout       = 24 * time.Hour   // largest timeout accepted
	MaxParamLen      = 1024             // longest parameter value accepted from the hub
	maxParams        = 32               // parameters per command, so a rule set stays reviewable
)

// Built-in command names. They are reserved: commands.allow must not use them.
const (
	NamePing        = "ping"
	NameInfo        = "agent.info"
	NameSetInterval = "agent.set-interval"
	NameCollectNow  = "collect.now"
	NameRestart     = "agent.restart"
)

var builtinNames = []string{NamePing, NameInfo, NameSetInterval, NameCollectNow, NameRestart}

// Config is the agent's "commands" section: whether remote commands run at
// all, where their ids are remembered, and which programs may run.
type Config struct {
	// Enabled false rejects every command with "commands are disabled on
	// this device".
	Enabled bool `mapstructure:"enabled"`
	// StateDir holds one record per command id (doc.go "State dir").
	// Required when Enabled.
	StateDir string `mapstructure:"state_dir"`
	// MaxOutput caps each of stdout and stderr, in bytes, for commands that
	// set no cap of their own: 0 means DefaultMaxOutput, at most MaxMaxOutput.
	MaxOutput int `mapstructure:"max_output"`
	// Allow lists the commands the hub may run, besides the built-ins.
	Allow []Allowed `mapstructure:"allow"`
}

// Allowed is one command the hub may run: a fixed program with fixed
// arguments, some of which are filled from checked parameters.
type Allowed struct {
	// Name is what the hub asks for, e.g. "service.restart"
	// (protocol.ValidName rules); unique and not a built-in name.
	Name string `mapstructure:"name"`
	// Exec is the absolute path of the program; it is run directly, never
	// through a shell.
	Exec string `mapstructure:"exec"`
	// Args are the fixed arguments; an argument that is exactly "{param}"
	// is replaced by that parameter's value (as one argument, whatever it
	// contains).
	Args []string `mapstructure:"args"`
	// Params declares every parameter the hub may pass.
	Params map[string]Param `mapstructure:"params"`
	// Timeout bounds a run (default DefaultTimeout, at most MaxTimeout); the
	// hub's timeout_ms wins when smaller. On expiry the process group is
	// killed.
	Timeout time.Duration `mapstructure:"timeout"`
	// MaxOutput overrides Config.MaxOutput for this command.
	MaxOutput int `mapstructure:"max_output"`
	// Dir is the working directory (absolute); default the agent's.
	Dir string `mapstructure:"dir"`
	// Env is the whole environment besides PATH=/usr/sbin:/usr/bin:/sbin:/bin
	// and LANG=C (an entry here overrides those two).
	Env map[string]string `mapstructure:"env"`
}

// Param is the rule for one parameter. A value must be in Enum (when set)
// and match Pattern (when set); at least one of the two is required, so no
// parameter accepts arbitrary text.
type Param struct {
	// Enum lists the accepted values.
	Enum []string `mapstructure:"enum"`
	// Pattern is a Go regexp the whole value must match (it is anchored).
	Pattern string `mapstructure:"pattern"`
	// Default is used when the hub omits the parameter; it must obey the
	// rule too. An omitted parameter without a default is the empty value.
	Default string `mapstructure:"default"`
	// Required rejects a command that omits the parameter.
	Required bool `mapstructure:"required"`
}

// Validate checks every key; each message names the key, e.g.
// "commands.allow[2].params.unit.pattern: ...". All problems are reported,
// joined.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Enabled && c.StateDir == "" {
		add("commands.state_dir: required when commands are enabled (ids are remembered there)")
	}
	if c.MaxOutput < 0 || c.MaxOutput > MaxMaxOutput {
		add("commands.max_output: %d not in 0..%d (0 means %d)", c.MaxOutput, MaxMaxOutput, DefaultMaxOutput)
	}
	for i, a := range c.Allow {
		errs = append(errs, a.validate(fmt.Sprintf("commands.allow[%d]", i), c.Allow[:i])...)
	}
	return errors.Join(errs...)
}

func (a Allowed) validate(key string, before []Allowed) []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(key+"."+format, args...)) }
	switch err := protocol.ValidName(a.Name, protocol.DefaultLimits.MaxNameLen); {
	case err != nil:
		add("name: %v", err)
	case slices.Contains(builtinNames, a.Name):
		add("name: %q is a built-in command", a.Name)
	case slices.ContainsFunc(before, func(o Allowed) bool { return o.Name == a.Name }):
		add("name: %q used by another command", a.Name)
	}
	if !filepath.IsAbs(a.Exec) || filepath.Clean(a.Exec) != a.Exec {
		add("exec: %q is not a clean absolute path", a.Exec)
	}
	errs = append(errs, a.validateArgs(key)...)
	if len(a.Params) > maxParams {
		add("params: %d parameters > limit %d", len(a.Params), maxParams)
	}
	for _, name := range sortedKeys(a.Params) {
		errs = append(errs, a.Params[name].validate(key+".params."+name, name)...)
	}
	if a.Timeout < 0 || a.Timeout > MaxTimeout {
		add("timeout: %s not in 0..%s (0 means %s)", a.Timeout, MaxTimeout, DefaultTimeout)
	}
	if a.MaxOutput < 0 || a.MaxOutput > MaxMaxOutput {
		add("max_output: %d not in 0..%d (0 means commands.max_output)", a.MaxOutput, MaxMaxOutput)
	}
	if a.Dir != "" && !filepath.IsAbs(a.Dir) {
		add("dir: %q is not an absolute path", a.Dir)
	}
	for _, k := range sortedKeys(a.Env) {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.Contains(a.Env[k], "\x00") {
			add("env.%s: name must be non-empty without '=' or NUL, value without NUL", k)
		}
	}
	return errs
}

// validateArgs checks that placeholders and declared parameters match one
// to one: an unused parameter or a typo in an argument is a config mistake
// that would otherwise surface only when the hub sends the command.
func (a Allowed) validateArgs(key string) []error {
	var errs []error
	used := map[string]bool{}
	for i, arg := range a.Args {
		switch name, ok := placeholder(arg); {
		case strings.Contains(arg, "\x00"):
			errs = append(errs, fmt.Errorf("%s.args[%d]: contains NUL", key, i))
		case !ok:
		case !a.hasParam(name):
			errs = append(errs, fmt.Errorf("%s.args[%d]: %q uses undeclared parameter %q", key, i, arg, name))
		default:
			used[name] = true
		}
	}
	for _, name := range sortedKeys(a.Params) {
		if !used[name] {
			errs = append(errs, fmt.Errorf("%s.params.%s: declared but no argument is \"{%s}\"", key, name, name))
		}
	}
	return errs
}

func (a Allowed) hasParam(name string) bool {
	_, ok := a.Params[name]
	return ok
}

func (p Param) validate(key, name string) []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(key+"."+format, args...)) }
	if !validParamName(name) {
		errs = append(errs, fmt.Errorf("%s: parameter name must be letters, digits or '_' (not first a digit), 1..64 bytes", key))
	}
	if len(p.Enum) == 0 && p.Pattern == "" {
		errs = append(errs, fmt.Errorf("%s: needs an enum or a pattern (no parameter accepts arbitrary text)", key))
	}
	for i, v := range p.Enum {
		if len(v) > MaxParamLen {
			add("enum[%d]: %d bytes > limit %d", i, len(v), MaxParamLen)
		}
	}
	re, err := compilePattern(p.Pattern)
	if err != nil {
		add("pattern: %v", err)
	}
	if p.Default != "" && err == nil {
		if err := checkValue(p.Default, p.Enum, re); err != nil {
			add("default: %v", err)
		}
	}
	if p.Required && p.Default != "" {
		add("default: a required parameter never uses its default")
	}
	return errs
}

// compilePattern anchors the pattern, so "[0-9]+" cannot match inside
// "5; rm". An empty pattern yields nil (no pattern rule).
func compilePattern(p string) (*regexp.Regexp, error) {
	if p == "" {
		return nil, nil
	}
	re, err := regexp.Compile("^(?:" + p + ")$")
	if err != nil {
		return nil, fmt.Errorf("compile: %w", err)
	}
	return re, nil
}

// checkValue applies a parameter's rules to one value.
func checkValue(v string, enum []string, re *regexp.Regexp) error {
	switch {
	case len(v) > MaxParamLen:
		return fmt.Errorf("value is %d bytes, longer than %d", len(v), MaxParamLen)
	case strings.Contains(v, "\x00"):
		return errors.New("value contains NUL")
	case len(enum) > 0 && !slices.Contains(enum, v):
		return fmt.Errorf("value %q is not one of %s", clip(v), strings.Join(enum, ", "))
	case re != nil && !re.MatchString(v):
		return fmt.Errorf("value %q does not match pattern %s", clip(v), re)
	}
	return nil
}

// placeholder reports whether arg is exactly "{name}".
func placeholder(arg string) (string, bool) {
	if len(arg) < 3 || arg[0] != '{' || arg[len(arg)-1] != '}' {
		return "", false
	}
	return arg[1 : len(arg)-1], true
}

func validParamName(s string) bool {
	if len(s) == 0 || len(s) > 64 || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '_' && (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// clip shortens a value quoted in an error: a rejected value may be 1 KiB.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
