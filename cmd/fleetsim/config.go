package main

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/fleetwire/fleetwire/protocol"
)

// Command answer modes (--commands).
const (
	ModeEcho  = "echo"  // succeed, stdout = the command's args
	ModeSleep = "sleep" // wait args["duration"], then succeed
	ModeFail  = "fail"  // fail with exit code 1
)

// Config is everything one fleetsim process needs. A parent process hands
// its children the same Config (JSON, in the environment) with Slice set.
type Config struct {
	Hub           string            `json:"hub"` // wss://HOST:PORT/v1/device
	CAFile        string            `json:"ca_file,omitempty"`
	CAFingerprint string            `json:"ca_fingerprint,omitempty"`
	AllowInsecure bool              `json:"allow_insecure,omitempty"` // ws:// (tests and local development)
	Devices       int               `json:"devices"`
	IDPrefix      string            `json:"id_prefix"`
	TokensFile    string            `json:"tokens_file,omitempty"`
	Create        bool              `json:"create,omitempty"`
	APIURL        string            `json:"api_url,omitempty"`
	AdminToken    string            `json:"-"` // never passed on: children read the tokens file
	Labels        map[string]string `json:"labels,omitempty"`
	Metrics       int               `json:"metrics"`  // points per batch
	Interval      time.Duration     `json:"interval"` // between batches of one device
	Jitter        time.Duration     `json:"jitter"`   // devices' start offsets spread over [0, Jitter)
	Ramp          float64           `json:"ramp"`     // connections started per second
	Commands      string            `json:"commands"`
	Procs         int               `json:"procs"` // 0 = automatic
	Duration      time.Duration     `json:"duration"`
	Compress      bool              `json:"compress"`
	Sources       []netip.Addr      `json:"sources,omitempty"` // local addresses, round-robin by device index
	WorkDir       string            `json:"work_dir,omitempty"`
	SpoolBytes    int64             `json:"spool_bytes"`

	// Slice is the part of the fleet this process runs: devices
	// [First, First+Count) of the global numbering. Set for children.
	First int `json:"first,omitempty"`
	Count int `json:"count,omitempty"`
}

func defaultConfig() Config {
	return Config{
		IDPrefix: "sim-", Metrics: 12, Interval: 10 * time.Second, Jitter: -1,
		Ramp: 500, Commands: ModeEcho, Compress: true, SpoolBytes: 1 << 20,
	}
}

// Validate checks the config; messages name the flag.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.Hub == "" {
		add("--hub: required (wss://HOST:8443/v1/device)")
	} else if u, err := url.Parse(c.Hub); err != nil || u.Host == "" || (u.Scheme != "wss" && u.Scheme != "ws") {
		add("--hub: %q is not a wss:// URL", c.Hub)
	} else if u.Scheme == "ws" && !c.AllowInsecure {
		add("--hub: ws:// is refused unless --allow-insecure is set (local development only)")
	}
	if c.Devices < 1 {
		add("--devices: must be at least 1, got %d", c.Devices)
	}
	if err := protocol.ValidName(c.IDPrefix+"0", 128); c.IDPrefix == "" || err != nil {
		add("--id-prefix: %q does not make valid device IDs", c.IDPrefix)
	}
	if c.Create {
		if c.APIURL == "" {
			add("--api-url: required with --create (https://HOST:8443)")
		} else if u, err := url.Parse(c.APIURL); err != nil || u.Scheme != "https" || u.Host == "" {
			add("--api-url: %q must be an https:// URL", c.APIURL)
		}
		if c.AdminToken == "" {
			add("--admin-token: required with --create (or FLEETSIM_ADMIN_TOKEN)")
		}
		if c.TokensFile == "" {
			add("--tokens: required with --create (the created tokens are written there)")
		}
	} else if c.TokensFile == "" {
		add("--tokens: required (a file of \"id token\" lines), or use --create")
	}
	if c.Metrics < 1 || c.Metrics > protocol.DefaultLimits.MaxPoints {
		add("--metrics: must be 1..%d, got %d", protocol.DefaultLimits.MaxPoints, c.Metrics)
	}
	if c.Interval < 100*time.Millisecond {
		add("--interval: %s is below the 100ms minimum", c.Interval)
	}
	if c.Jitter > c.Interval {
		add("--jitter: %s is longer than --interval %s", c.Jitter, c.Interval)
	}
	if c.Ramp <= 0 || math.IsInf(c.Ramp, 0) || math.IsNaN(c.Ramp) {
		add("--ramp: must be a positive number of connections per second")
	}
	switch c.Commands {
	case ModeEcho, ModeSleep, ModeFail:
	default:
		add("--commands: %q must be echo, sleep or fail", c.Commands)
	}
	if c.Procs < 0 || c.Procs > c.Devices && c.Devices > 0 {
		add("--procs: must be 0 (automatic) or 1..--devices, got %d", c.Procs)
	}
	if c.Duration < 0 {
		add("--duration: must not be negative")
	}
	return errors.Join(errs...)
}

// parseJitter reads --jitter: a fraction of the interval ("0.5", "1") or a
// duration ("3s").
func parseJitter(s string, interval time.Duration) (time.Duration, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if f < 0 || f > 1 {
			return 0, fmt.Errorf("--jitter: fraction %s must be in 0..1", s)
		}
		return time.Duration(f * float64(interval)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("--jitter: %q is neither a fraction of --interval (0..1) nor a duration", s)
	}
	return d, nil
}

// parseRamp reads --ramp: "500" or "500/s".
func parseRamp(s string) (float64, error) {
	f, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(s), "/s"), 64)
	if err != nil || f <= 0 {
		return 0, fmt.Errorf("--ramp: %q is not a positive rate (connections per second, e.g. 500 or 500/s)", s)
	}
	return f, nil
}

// parseLabels reads "k=v,k2=v2".
func parseLabels(s string) (map[string]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	m := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--labels: %q is not key=value", kv)
		}
		m[k] = v
	}
	return m, nil
}

// maxSources bounds --source ranges: more addresses than this is a typo.
const maxSources = 1024

// parseSources reads "127.0.0.2-127.0.0.9,127.0.1.1": IPv4 addresses and
// inclusive ranges of them.
func parseSources(s string) ([]netip.Addr, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []netip.Addr
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := netip.ParseAddr(lo)
		if err != nil {
			return nil, fmt.Errorf("--source: %q is not an IP address", lo)
		}
		b := a
		if isRange {
			if b, err = netip.ParseAddr(hi); err != nil || b.Less(a) || a.Is4() != b.Is4() {
				return nil, fmt.Errorf("--source: %q is not a range LOW-HIGH", part)
			}
		}
		for x := a; ; x = x.Next() {
			if len(out) == maxSources {
				return nil, fmt.Errorf("--source: more than %d addresses", maxSources)
			}
			out = append(out, x)
			if x == b {
				break
			}
		}
	}
	return out, nil
}

// checkSources fails early when a source address is not local: binding to
// it would fail for every device.
func checkSources(addrs []netip.Addr) error {
	for _, a := range addrs {
		l, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(a, 0)))
		if err != nil {
			return fmt.Errorf("--source: cannot use %s: %w", a, err)
		}
		l.Close()
	}
	return nil
}

// deviceID is the ID of device i of the fleet.
func (c *Config) deviceID(i int) string {
	width := len(strconv.Itoa(c.Devices - 1))
	width = max(width, 4)
	return fmt.Sprintf("%s%0*d", c.IDPrefix, width, i)
}
