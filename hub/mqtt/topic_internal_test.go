package mqtt

import (
	"errors"
	"strings"
	"testing"
)

func TestTemplateParse(t *testing.T) {
	for _, tc := range []struct {
		in      string
		wantErr string // "" = valid
	}{
		{"fleetwire/{device}/telemetry", ""},
		{"{device}", ""},
		{"{device}/t", ""},
		{"a/b/c/{device}", ""},
		{"a b/{device}/x-y_z.w", ""},
		{"", "empty topic template"},
		{"fleetwire/telemetry", "no {device} level"},
		{"{device}/x/{device}", "appears twice"},
		{"fleetwire/+/{device}", "wildcard"},
		{"fleetwire/{device}/#", "wildcard"},
		{"fleetwire/a+b/{device}", "wildcard"},
		{"fleetwire//{device}", "empty level"},
		{"/{device}", "empty level"},
		{"{device}/", "empty level"},
		{"$SYS/{device}", "starting with $"},
		{"$share/{device}/t", "starting with $"},
		{"fleet\x00wire/{device}", "NUL"},
		{"fleetwire/{device}x/t", "brace"},
		{"fleetwire/{dev}/t", "brace"},
		{"fleetwire/{/{device}", "brace"},
		{"fleetwire/}/{device}", "brace"},
		{"{DEVICE}/t", "brace"},
		{strings.Repeat("a/", 600) + "{device}", "longer than 1024"},
	} {
		tpl, err := ParseTemplate(tc.in)
		if tc.wantErr == "" {
			if err != nil {
				t.Errorf("ParseTemplate(%q): %v", tc.in, err)
			} else if tpl.String() != tc.in {
				t.Errorf("ParseTemplate(%q).String() = %q", tc.in, tpl.String())
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("ParseTemplate(%q) error %v, want one containing %q", tc.in, err, tc.wantErr)
		}
	}
}

func TestTemplateMustPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("MustTemplate of an invalid template did not panic")
		}
	}()
	MustTemplate("no/device")
}

func TestTemplateFilterTopic(t *testing.T) {
	for _, tc := range []struct {
		tpl, filter, topic string
	}{
		{"fleetwire/{device}/telemetry", "fleetwire/+/telemetry", "fleetwire/pi-1/telemetry"},
		{"{device}", "+", "pi-1"},
		{"a/b/{device}", "a/b/+", "a/b/pi-1"},
		{"{device}/x", "+/x", "pi-1/x"},
	} {
		tpl := MustTemplate(tc.tpl)
		if got := tpl.Filter(); got != tc.filter {
			t.Errorf("%s.Filter() = %q, want %q", tc.tpl, got, tc.filter)
		}
		if got := tpl.Topic("pi-1"); got != tc.topic {
			t.Errorf("%s.Topic(pi-1) = %q, want %q", tc.tpl, got, tc.topic)
		}
		// Filter and Topic must not change the template (with copies levels).
		if tpl.String() != tc.tpl || tpl.Filter() != tc.filter {
			t.Errorf("%s changed by Filter/Topic: %q", tc.tpl, tpl.String())
		}
		if dev, ok := tpl.Match(tpl.Topic("pi-1")); !ok || dev != "pi-1" {
			t.Errorf("%s: Match(Topic(pi-1)) = %q, %v", tc.tpl, dev, ok)
		}
	}
}

func TestTemplateMatch(t *testing.T) {
	tpl := MustTemplate("fleetwire/{device}/telemetry")
	for _, tc := range []struct {
		topic string
		dev   string
		ok    bool
	}{
		{"fleetwire/pi-1/telemetry", "pi-1", true},
		{"fleetwire/PI/telemetry", "PI", true}, // unchecked: deviceOf refuses it
		{"fleetwire//telemetry", "", true},     // empty device level: matches, deviceOf refuses
		{"fleetwire/pi-1", "", false},          // too few levels
		{"fleetwire/pi-1/telemetry/x", "", false},
		{"fleetwire/pi-1/telemetry/", "", false},
		{"/fleetwire/pi-1/telemetry", "", false},
		{"", "", false},
		{"fleetwire/pi-1/status", "", false}, // literal mismatch
		{"Fleetwire/pi-1/telemetry", "", false},
		{"other/pi-1/telemetry", "", false},
		{"fleetwire/a/b/telemetry", "", false},
	} {
		dev, ok := tpl.Match(tc.topic)
		if ok != tc.ok || dev != tc.dev {
			t.Errorf("Match(%q) = %q, %v; want %q, %v", tc.topic, dev, ok, tc.dev, tc.ok)
		}
	}
	if dev, ok := MustTemplate("{device}").Match(""); !ok || dev != "" {
		t.Errorf("{device}.Match(\"\") = %q, %v; want \"\", true", dev, ok)
	}
}

func TestTemplateOverlap(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"fleetwire/{device}/telemetry", "fleetwire/{device}/telemetry", true},
		{"fleetwire/{device}/telemetry", "fleetwire/{device}/status", false},
		{"fleetwire/{device}/telemetry", "other/{device}/telemetry", false},
		// Device levels at different places: "a/x/t" matches both.
		{"a/{device}/t", "{device}/x/t", true},
		{"a/{device}/t", "{device}/x/u", false},
		{"{device}/a", "b/{device}", true}, // "b/a"
		// Different lengths never overlap (no '#' in templates).
		{"fleetwire/{device}/telemetry", "fleetwire/{device}/telemetry/x", false},
		{"fleetwire/northbound/{device}/telemetry", "fleetwire/{device}/telemetry", false},
		{"{device}", "a/{device}", false},
		{"{device}", "{device}", true},
		{"fleetwire/northbound/{device}/telemetry", "fleetwire/{device}/northbound/telemetry", true}, // device "northbound" in both
		{"fleetwire/northbound/{device}/telemetry", "fleetwire/{device}/x/telemetry", true},
		{"fleetwire/northbound/{device}/telemetry", "fleetwire/{device}/x/status", false},
	} {
		a, b := MustTemplate(tc.a), MustTemplate(tc.b)
		if got := a.Overlaps(b); got != tc.want {
			t.Errorf("%s.Overlaps(%s) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
		if got := b.Overlaps(a); got != tc.want {
			t.Errorf("%s.Overlaps(%s) = %v, want %v (not symmetric)", tc.b, tc.a, got, tc.want)
		}
	}
}

func TestTemplateDeviceOf(t *testing.T) {
	tpl := MustTemplate("fleetwire/{device}/telemetry")
	for _, tc := range []struct {
		topic   string
		dev     string
		ok      bool
		badDev  bool
		comment string
	}{
		{"fleetwire/pi-1/telemetry", "pi-1", true, false, "valid"},
		{"fleetwire/a.b_c-d/telemetry", "a.b_c-d", true, false, "valid with . _ -"},
		{"fleetwire/0/telemetry", "0", true, false, "digit"},
		{"fleetwire/../telemetry", "", true, true, ".."},
		{"fleetwire/./telemetry", "", true, true, "."},
		{"fleetwire/A/telemetry", "", true, true, "upper case"},
		{"fleetwire//telemetry", "", true, true, "empty"},
		{"fleetwire/-x/telemetry", "", true, true, "leading -"},
		{"fleetwire/a b/telemetry", "", true, true, "space"},
		{"fleetwire/" + strings.Repeat("a", 1000) + "/telemetry", "", true, true, "too long"},
		{"fleetwire/pi-1/status", "", false, false, "no match"},
		{"fleetwire/pi-1", "", false, false, "no match"},
	} {
		dev, ok, err := deviceOf(tpl, tc.topic)
		if ok != tc.ok || dev != tc.dev {
			t.Errorf("%s: deviceOf(%q) = %q, %v, %v; want %q, %v", tc.comment, tc.topic, dev, ok, err, tc.dev, tc.ok)
		}
		if tc.badDev != errors.Is(err, errBadDevice) {
			t.Errorf("%s: deviceOf(%q) error %v, want errBadDevice: %v", tc.comment, tc.topic, err, tc.badDev)
		}
		if !tc.badDev && err != nil {
			t.Errorf("%s: deviceOf(%q) unexpected error %v", tc.comment, tc.topic, err)
		}
	}
}
