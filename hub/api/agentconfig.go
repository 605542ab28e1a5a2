package api

import (
	"encoding/json"
	"fmt"
	"strings"
)

// DefaultCAFile is where the agent config tells the agent to find the
// hub's CA when no fingerprint is known.
const DefaultCAFile = "/etc/fleetwire/hub-ca.pem"

// placeholderHubURL stands in when the hub does not know its public
// address; the operator must edit it.
const placeholderHubURL = "wss://HOST:8443/v1/device"

// agentConfig renders a ready fleetagent YAML config. Keys follow
// cmd/fleetagent's Config. Strings are written as JSON strings, which are
// valid YAML double-quoted scalars, so no value can break the document.
func agentConfig(deviceID, token, hubURL, caFingerprint string) string {
	var b strings.Builder
	b.WriteString("# fleetagent config for " + deviceID + "; keep it private: it holds the device token.\n")
	fmt.Fprintf(&b, "device_id: %s\n", yamlString(deviceID))
	b.WriteString("hub:\n")
	if hubURL == "" {
		b.WriteString("  # set to the address agents use to reach the hub\n")
		hubURL = placeholderHubURL
	}
	fmt.Fprintf(&b, "  url: %s\n", yamlString(hubURL))
	fmt.Fprintf(&b, "  token: %s\n", yamlString(token))
	if caFingerprint != "" {
		fmt.Fprintf(&b, "  ca_fingerprint: %s\n", yamlString(caFingerprint))
	} else {
		fmt.Fprintf(&b, "  ca_file: %s\n", yamlString(DefaultCAFile))
	}
	b.WriteString("interval: 10s\n")
	b.WriteString("spool:\n")
	b.WriteString("  dir: /var/lib/fleetagent/spool\n")
	b.WriteString("  max_bytes: 64MiB\n")
	return b.String()
}

func yamlString(s string) string {
	q, _ := json.Marshal(s) // a string always marshals
	return string(q)
}
