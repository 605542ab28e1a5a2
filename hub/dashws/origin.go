package dashws

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// originSet is the Origin allowlist: exact scheme://host[:port] matches
// after normalising case and default ports (a browser sends
// "https://hub.example", never "https://hub.example:443").
type originSet map[string]bool

func newOriginSet(publicURL string, allowed []string) (originSet, error) {
	set := make(originSet)
	if publicURL != "" {
		o, err := normOrigin(publicURL, true)
		if err != nil {
			return nil, fmt.Errorf("public_url: %w", err)
		}
		set[o] = true
	}
	for _, a := range allowed {
		o, err := normOrigin(a, false)
		if err != nil {
			return nil, fmt.Errorf("allowed_origins %q: %w", a, err)
		}
		set[o] = true
	}
	return set, nil
}

// allows reports whether an Origin header value is on the list. A missing
// or "null" Origin (sandboxed frames, file://) is never allowed: the
// check exists to stop cross-site WebSocket hijacking with the user's cookie.
func (s originSet) allows(origin string) bool {
	if origin == "" {
		return false
	}
	o, err := normOrigin(origin, false)
	return err == nil && s[o]
}

// normOrigin reduces u to scheme://host[:port]. withPath allows (and drops)
// a path, for a public URL; an Origin or allowlist entry must not have one.
func normOrigin(u string, withPath bool) (string, error) {
	p, err := url.Parse(u)
	if err != nil {
		return "", err
	}
	scheme := strings.ToLower(p.Scheme)
	if scheme != "http" && scheme != "https" {
		return "", errors.New("scheme must be http or https")
	}
	if p.Host == "" || p.User != nil || p.RawQuery != "" || p.Fragment != "" || p.Opaque != "" {
		return "", errors.New("want scheme://host[:port]")
	}
	if !withPath && p.Path != "" && p.Path != "/" {
		return "", errors.New("an origin has no path")
	}
	host, port := strings.ToLower(p.Hostname()), p.Port()
	if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
		port = ""
	}
	if port != "" {
		return scheme + "://" + net.JoinHostPort(host, port), nil
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return scheme + "://" + host, nil
}
