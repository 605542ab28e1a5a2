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

// NewestAgentVersion returns the newest of versions as given, or "" if
// none is a semantic version. Versions that are not (development builds)
// never count as newest.
func NewestAgentVersion(versions []string) string {
	best, newest := "", ""
	for _, v := range versions {
		if sv := agentSemver(v); sv != "" && (best == "" || semver.Compare(sv, best) > 0) {
			best, newest = sv, v
		}
	}
	return newest
}

// AgentVersionBehind reports whether agent version v is older than
// newest (as NewestAgentVersion returns it). A version that is not a
// semantic version is never behind.
func AgentVersionBehind(v, newest string) bool {
	sv, best := agentSemver(v), agentSemver(newest)
	return sv != "" && best != "" && semver.Compare(sv, best) < 0
}

// MarkAgentVersions finds the newest agent version among devices and sets
// AgentBehind on each device whose agent is older. It returns the newest
// version as the devices report it.
func MarkAgentVersions(devices []Device) (newest string) {
	versions := make([]string, len(devices))
	for i, d := range devices {
		versions[i] = d.AgentVersion
	}
	newest = NewestAgentVersion(versions)
	for i := range devices {
		devices[i].AgentBehind = AgentVersionBehind(devices[i].AgentVersion, newest)
	}
	return newest
}
