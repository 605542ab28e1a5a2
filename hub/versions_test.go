package hub

import "testing"

func TestMarkAgentVersions(t *testing.T) {
	devs := []Device{
		{ID: "a", AgentVersion: "v1.2.3"},
		{ID: "b", AgentVersion: "1.10.0"},
		{ID: "c", AgentVersion: "v1.10.0-rc.1"},
		{ID: "d", AgentVersion: "dev"},
		{ID: "e", AgentVersion: ""},
		{ID: "f", AgentVersion: "v1.9.9-3-gabcdef0"},
		{ID: "g", AgentVersion: "1.10.0"},
	}
	if newest := MarkAgentVersions(devs); newest != "1.10.0" {
		t.Errorf("newest %q, want 1.10.0", newest)
	}
	want := map[string]bool{"a": true, "b": false, "c": true, "d": false, "e": false, "f": true, "g": false}
	for _, d := range devs {
		if d.AgentBehind != want[d.ID] {
			t.Errorf("%s (%s): behind %v, want %v", d.ID, d.AgentVersion, d.AgentBehind, want[d.ID])
		}
	}
	if newest := MarkAgentVersions([]Device{{AgentVersion: "dev"}}); newest != "" {
		t.Errorf("only dev builds: newest %q", newest)
	}
}

func TestAgentVersionBehind(t *testing.T) {
	for _, c := range []struct {
		v, newest string
		want      bool
	}{
		{"1.2.3", "v1.10.0", true},
		{"v1.10.0", "1.10.0", false},
		{"dev", "1.10.0", false},
		{"1.2.3", "", false}, // no semantic version in the fleet
		{"", "1.0.0", false},
	} {
		if got := AgentVersionBehind(c.v, c.newest); got != c.want {
			t.Errorf("AgentVersionBehind(%q, %q) = %v, want %v", c.v, c.newest, got, c.want)
		}
	}
}
