package hub

import (
	"strings"

	"golang.org/x/mod/semver"
)

// agentSemver returns v as a canonical semantic version ("1.2.3",
// "v1.2.3", "v1.2.3-4-gabcdef" all work), or "" if v is not one (a
// development build such as "dev").
func agentSemver(v string) string {
	v = strings.TrimSpace(v)
	if v == "" {
		return ""
	}
	if !strings.HasPrefix(v, "v") {
		v = "v" + v
	}
	if !semver.IsValid(v) {
		return ""
	}
	return v
}

// MarkAgentVersions finds the newest agent version among devices and sets
// AgentBehind on each device whose agent is older. Versions that are not
// semantic versions (development builds) neither count as newest nor are
// marked behind. It returns the newest version as the devices report it.
func MarkAgentVersions(devices []Device) (newest string) {
	best := ""
	for _, d := range devices {
		if sv := agentSemver(d.AgentVersion); sv != "" && (best == "" || semver.Compare(sv, best) > 0) {
			best, newest = sv, d.AgentVersion
		}
	}
	for i := range devices {
		sv := agentSemver(devices[i].AgentVersion)
		devices[i].AgentBehind = sv != "" && semver.Compare(sv, best) < 0
	}
	return newest
}
