package command

import (
	"strings"
	"testing"
	"time"
)

func validAllowed() Allowed {
	return Allowed{
		Name: "service.restart", Exec: "/usr/bin/systemctl", Args: []string{"restart", "{unit}"},
		Params: map[string]Param{"unit": {Enum: []string{"nginx"}, Required: true}},
	}
}

func TestValidate(t *testing.T) {
	with := func(f func(a *Allowed)) Config {
		a := validAllowed()
		f(&a)
		return Config{Enabled: true, StateDir: "/var/lib/fleetagent/commands", Allow: []Allowed{{Name: "ok", Exec: "/bin/true"}, a}}
	}
	cases := []struct {
		name string
		cfg  Config
		want string // "" means valid
	}{
		{"valid", with(func(a *Allowed) {}), ""},
		{"disabled needs no state dir", Config{}, ""},
		{"state dir", Config{Enabled: true}, "commands.state_dir: required"},
		{"max_output at limit", Config{MaxOutput: MaxMaxOutput}, ""},
		{"max_output past limit", Config{MaxOutput: MaxMaxOutput + 1}, "commands.max_output: 262145 not in 0..262144"},
		{"max_output negative", Config{MaxOutput: -1}, "commands.max_output:"},
		{"bad name", with(func(a *Allowed) { a.Name = "9x" }), "commands.allow[1].name:"},
		{"builtin name", with(func(a *Allowed) { a.Name = "ping" }), `commands.allow[1].name: "ping" is a built-in`},
		{"duplicate name", with(func(a *Allowed) { a.Name = "ok" }), `commands.allow[1].name: "ok" used by another`},
		{"relative exec", with(func(a *Allowed) { a.Exec = "systemctl" }), "commands.allow[1].exec:"},
		{"undeclared placeholder", with(func(a *Allowed) { a.Args = []string{"{unit}", "{unti}"} }), `commands.allow[1].args[1]: "{unti}" uses undeclared parameter "unti"`},
		{"unused param", with(func(a *Allowed) { a.Args = []string{"restart"} }), `commands.allow[1].params.unit: declared but no argument`},
		{"no rule", with(func(a *Allowed) { a.Params["unit"] = Param{} }), "commands.allow[1].params.unit: needs an enum or a pattern"},
		{"bad pattern", with(func(a *Allowed) { a.Params["unit"] = Param{Pattern: "[a-"} }), "commands.allow[1].params.unit.pattern: compile:"},
		{"bad default", with(func(a *Allowed) { a.Params["unit"] = Param{Pattern: "[a-z]+", Default: "X1"} }), "commands.allow[1].params.unit.default: value \"X1\" does not match"},
		{"long enum", with(func(a *Allowed) { a.Params["unit"] = Param{Enum: []string{strings.Repeat("a", MaxParamLen+1)}} }), "commands.allow[1].params.unit.enum[0]: 1025 bytes"},
		{"enum at limit", with(func(a *Allowed) { a.Params["unit"] = Param{Enum: []string{strings.Repeat("a", MaxParamLen)}} }), ""},
		{"bad param name", with(func(a *Allowed) {
			a.Params = map[string]Param{"u-nit": {Enum: []string{"x"}}}
			a.Args = []string{"{u-nit}"}
		}), "commands.allow[1].params.u-nit: parameter name"},
		{"timeout at limit", with(func(a *Allowed) { a.Timeout = MaxTimeout }), ""},
		{"timeout past limit", with(func(a *Allowed) { a.Timeout = MaxTimeout + time.Second }), "commands.allow[1].timeout:"},
		{"per-command max_output", with(func(a *Allowed) { a.MaxOutput = MaxMaxOutput + 1 }), "commands.allow[1].max_output:"},
		{"relative dir", with(func(a *Allowed) { a.Dir = "tmp" }), "commands.allow[1].dir:"},
		{"bad env", with(func(a *Allowed) { a.Env = map[string]string{"A=B": "1"} }), "commands.allow[1].env.A=B:"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Validate()
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("error %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	if _, err := New(Config{Enabled: true}, Builtins{}, nil, nil); err == nil || !strings.Contains(err.Error(), "commands.state_dir") {
		t.Fatalf("New: %v", err)
	}
}

// TestDocExamples keeps the three examples of doc.go valid.
func TestDocExamples(t *testing.T) {
	cfg := Config{Enabled: true, StateDir: "/var/lib/fleetagent/commands", Allow: []Allowed{
		{Name: "device.reboot", Exec: "/usr/bin/systemctl", Args: []string{"reboot"}, Timeout: 30 * time.Second},
		{Name: "log.tail", Exec: "/usr/bin/tail", Args: []string{"-n", "{lines}", "/var/log/syslog"},
			Params: map[string]Param{"lines": {Pattern: "[0-9]{1,4}", Default: "100"}}, MaxOutput: 262144},
		{Name: "service.restart", Exec: "/usr/bin/systemctl", Args: []string{"restart", "{unit}"},
			Params:  map[string]Param{"unit": {Enum: []string{"nginx.service", "mosquitto.service", "fleetagent-sensors.service"}, Required: true}},
			Timeout: 2 * time.Minute},
	}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}
