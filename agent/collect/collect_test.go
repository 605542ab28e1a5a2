package collect

import (
	"strings"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/protocol"
)

// checkPoints fails unless the hub would accept pts as one batch and every
// point has DT 0 (the batcher sets the time).
func checkPoints(t *testing.T, pts []protocol.Point) {
	t.Helper()
	if len(pts) == 0 {
		return
	}
	b := protocol.Batch{Seq: 1, Points: pts}
	if err := b.Validate(protocol.Limits{}); err != nil {
		t.Fatalf("hub would reject points: %v", err)
	}
	for _, p := range pts {
		if p.DT != 0 {
			t.Errorf("%s: DT = %d, want 0", p.Name, p.DT)
		}
	}
}

func TestValidate(t *testing.T) {
	okExec := ExecConfig{Name: "sensor", Command: []string{"/bin/true"}}
	withExec := func(mod func(e *ExecConfig)) Config {
		e := okExec
		mod(&e)
		return Config{Exec: []ExecConfig{e}}
	}
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings of the error; none means valid
	}{
		{"zero", Config{}, nil},
		{"full", Config{
			Disabled: []string{"temp", "load"}, Disks: []string{"/", "/boot/firmware"},
			Interfaces: []string{"eth0", "wlan0"}, ThermalDir: "/sys/class/thermal",
			Exec: []ExecConfig{okExec, {Name: "ups", Command: []string{"upsc", "x"}, Interval: time.Minute, Timeout: time.Second, MaxOutput: 100}},
		}, nil},
		{"unknown disabled", Config{Disabled: []string{"cpu", "gpu"}}, []string{`collect.disabled[1]: unknown collector "gpu"`}},
		{"relative disk", Config{Disks: []string{"/", "data"}}, []string{`collect.disks[1]: "data" is not an absolute path`}},
		{"disk twice", Config{Disks: []string{"/", "/"}}, []string{`collect.disks[1]: "/" listed twice`}},
		{"disk control char", Config{Disks: []string{"/a\nb"}}, []string{"collect.disks[0]:", "control character"}},
		{"iface 15 bytes", Config{Interfaces: []string{strings.Repeat("e", 15)}}, nil},
		{"iface 16 bytes", Config{Interfaces: []string{strings.Repeat("e", 16)}}, []string{"collect.interfaces[0]:", "not an interface name"}},
		{"iface empty", Config{Interfaces: []string{""}}, []string{"collect.interfaces[0]:"}},
		{"iface slash", Config{Interfaces: []string{"a/b"}}, []string{"collect.interfaces[0]:"}},
		{"iface twice", Config{Interfaces: []string{"eth0", "eth0"}}, []string{`collect.interfaces[1]: "eth0" listed twice`}},
		{"relative thermal", Config{ThermalDir: "sys/class/thermal"}, []string{"collect.thermal_dir:"}},
		{"exec empty command", withExec(func(e *ExecConfig) { e.Command = nil }), []string{"collect.exec[0].command: must not be empty"}},
		{"exec empty argv0", withExec(func(e *ExecConfig) { e.Command = []string{"", "x"} }), []string{"collect.exec[0].command: must not be empty"}},
		{"exec no name", withExec(func(e *ExecConfig) { e.Name = "" }), []string{"collect.exec[0].name:"}},
		{"exec bad name", withExec(func(e *ExecConfig) { e.Name = "9lives" }), []string{"collect.exec[0].name:", "not allowed"}},
		{"exec dotted name", withExec(func(e *ExecConfig) { e.Name = "a.b" }), []string{"collect.exec[0].name:", "'.'"}},
		{"exec name 64", withExec(func(e *ExecConfig) { e.Name = strings.Repeat("n", 64) }), nil},
		{"exec name 65", withExec(func(e *ExecConfig) { e.Name = strings.Repeat("n", 65) }), []string{"collect.exec[0].name:", "length 65"}},
		{"exec builtin name", withExec(func(e *ExecConfig) { e.Name = "system" }), []string{`collect.exec[0].name: "system" is a built-in measurement`}},
		{"exec interval 0", withExec(func(e *ExecConfig) { e.Interval = 0 }), nil},
		{"exec interval min", withExec(func(e *ExecConfig) { e.Interval = MinExecInterval }), nil},
		{"exec interval below min", withExec(func(e *ExecConfig) { e.Interval = MinExecInterval - time.Nanosecond }), []string{"collect.exec[0].interval:"}},
		{"exec interval negative", withExec(func(e *ExecConfig) { e.Interval = -time.Second }), []string{"collect.exec[0].interval:"}},
		{"exec timeout negative", withExec(func(e *ExecConfig) { e.Timeout = -1 }), []string{"collect.exec[0].timeout:"}},
		{"exec max_output max", withExec(func(e *ExecConfig) { e.MaxOutput = MaxMaxOutput }), nil},
		{"exec max_output over", withExec(func(e *ExecConfig) { e.MaxOutput = MaxMaxOutput + 1 }), []string{"collect.exec[0].max_output:"}},
		{"exec max_output negative", withExec(func(e *ExecConfig) { e.MaxOutput = -1 }), []string{"collect.exec[0].max_output:"}},
		{"exec duplicate", Config{Exec: []ExecConfig{okExec, okExec}}, []string{`collect.exec[1].name: "sensor" used by another exec collector`}},
		{"several at once", Config{Disabled: []string{"x"}, Exec: []ExecConfig{{}}}, []string{
			"collect.disabled[0]:", "collect.exec[0].name:", "collect.exec[0].command:",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want error with %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestNewOrderAndDisabled(t *testing.T) {
	cs, err := New(Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := names(cs), "cpu mem disk net load uptime temp"; got != want {
		t.Errorf("New(zero) = %q, want %q", got, want)
	}
	cs, err = New(Config{
		Disabled: []string{"cpu", "temp", "net"},
		Exec:     []ExecConfig{{Name: "a", Command: []string{"/bin/true"}}, {Name: "b", Command: []string{"/bin/true"}}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeAll(cs) })
	if got, want := names(cs), "mem disk load uptime exec:a exec:b"; got != want {
		t.Errorf("New = %q, want %q", got, want)
	}
	if _, err := New(Config{Disabled: []string{"nope"}}, nil); err == nil || !strings.Contains(err.Error(), "collect.disabled[0]") {
		t.Errorf("New(bad config) error = %v, want the Validate error", err)
	}
}

func names(cs []Collector) string {
	var n []string
	for _, c := range cs {
		n = append(n, c.Name())
	}
	return strings.Join(n, " ")
}

func closeAll(cs []Collector) {
	for _, c := range cs {
		if cl, ok := c.(interface{ Close() error }); ok {
			cl.Close()
		}
	}
}
