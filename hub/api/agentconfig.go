package api

import "github.com/fleetwire/fleetwire/agent/agentconf"

// DefaultCAFile is where the agent config tells the agent to find the
// hub's CA when no fingerprint is known.
const DefaultCAFile = "/etc/fleetwire/hub-ca.pem"

// agentConfig renders a ready fleetagent YAML config.
func agentConfig(deviceID, token, hubURL, caFingerprint string) string {
	p := agentconf.Params{DeviceID: deviceID, HubURL: hubURL, Token: token, CAFingerprint: caFingerprint}
	if caFingerprint == "" {
		p.CAFile = DefaultCAFile
	}
	return agentconf.Render(p)
}
