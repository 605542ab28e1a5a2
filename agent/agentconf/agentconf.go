// Package agentconf renders a ready fleetagent config file. The hub uses
// it when an operator adds a device (the config is shown to copy) and the
// agent when it enrolls (the config is written for it); both give the same
// file. Keys follow cmd/fleetagent's Config.
package agentconf

import (
	"encoding/json"
	"fmt"
	"strings"
)

// PlaceholderHubURL stands in when the hub does not know its public
// address; the operator must edit it.
const PlaceholderHubURL = "wss://HOST:8443/v1/device"

// Params are a device's settings.
type Params struct {
	DeviceID string
	HubURL   string // wss://host:port/v1/device; empty: PlaceholderHubURL
	Token    string
	// How the agent trusts the hub: a pinned fingerprint, else a CA file.
	CAFingerprint string
	CAFile        string
	SpoolDir      string // default /var/lib/fleetagent/spool
}

// Render returns the config as YAML. Strings are written as JSON strings,
// which are valid YAML double-quoted scalars, so no value can break the
// document.
func Render(p Params) string {
	var b strings.Builder
	b.WriteString("# fleetagent config for " + p.DeviceID + "; keep it private: it holds the device token.\n")
	fmt.Fprintf(&b, "device_id: %s\n", quote(p.DeviceID))
	b.WriteString("hub:\n")
	if p.HubURL == "" {
		b.WriteString("  # set to the address agents use to reach the hub\n")
		p.HubURL = PlaceholderHubURL
	}
	fmt.Fprintf(&b, "  url: %s\n", quote(p.HubURL))
	fmt.Fprintf(&b, "  token: %s\n", quote(p.Token))
	switch {
	case p.CAFingerprint != "":
		fmt.Fprintf(&b, "  ca_fingerprint: %s\n", quote(p.CAFingerprint))
	case p.CAFile != "":
		fmt.Fprintf(&b, "  ca_file: %s\n", quote(p.CAFile))
	}
	if p.SpoolDir == "" {
		p.SpoolDir = "/var/lib/fleetagent/spool"
	}
	b.WriteString("interval: 10s\n")
	b.WriteString("spool:\n")
	fmt.Fprintf(&b, "  dir: %s\n", quote(p.SpoolDir))
	b.WriteString("  max_bytes: 64MiB\n")
	return b.String()
}

func quote(s string) string {
	q, _ := json.Marshal(s) // a string always marshals
	return string(q)
}
