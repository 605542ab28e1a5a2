package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/fleetwire/fleetwire/agent/agentconf"
	"github.com/fleetwire/fleetwire/agent/trust"
)

// DefaultConfigPath is where packages install the agent's config.
const DefaultConfigPath = "/etc/fleetwire/fleetagent.yaml"

// serviceUser owns the agent's config so the service can read it.
const serviceUser = "fleetagent"

// Enroll is `fleetagent enroll`: it trades an enrollment code for the
// device's own token over TLS, writes the agent's config (0600) and starts
// the agent.
type Enroll struct {
	Hub, Code, ID, CAFingerprint, CAFile, ConfigPath, SpoolDir string
	Force, RunAgent                                            bool
	Start                                                      string // "auto", "yes" or "no"

	stdout, stderr io.Writer
	// systemctl runs systemctl (tests replace it).
	systemctl func(args ...string) error
}

// NewEnroll returns the enroll program.
func NewEnroll(stdout, stderr io.Writer) *Enroll {
	return &Enroll{stdout: stdout, stderr: stderr, systemctl: func(args ...string) error {
		out, err := exec.Command("systemctl", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("systemctl %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
		}
		return nil
	}}
}

// ParseFlags reads the enroll flags.
func (e *Enroll) ParseFlags(args []string) error {
	fs := pflag.NewFlagSet("fleetagent enroll", pflag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.StringVar(&e.Hub, "hub", "", "the hub's address, e.g. https://hub.example:8443 (required)")
	fs.StringVar(&e.Code, "code", os.Getenv("FLEETAGENT_ENROLL_CODE"), "enrollment code from `fleetctl enroll create` (or env FLEETAGENT_ENROLL_CODE)")
	fs.StringVar(&e.ID, "id", "", "device id to register (default: this host's name)")
	fs.StringVar(&e.CAFingerprint, "ca-fingerprint", "", "SHA-256 fingerprint of the hub's CA certificate (printed by the hub and by `fleetctl enroll create`)")
	fs.StringVar(&e.CAFile, "ca-file", "", "CA certificate (PEM) that signed the hub's certificate")
	fs.StringVar(&e.ConfigPath, "config", DefaultConfigPath, "agent config file to write")
	fs.StringVar(&e.SpoolDir, "spool-dir", "/var/lib/fleetagent/spool", "spool directory written into the config")
	fs.BoolVar(&e.Force, "force", false, "enroll again even if the config already holds a device token")
	fs.BoolVar(&e.RunAgent, "run", false, "run the agent in the foreground once enrolled (containers, tests)")
	fs.StringVar(&e.Start, "start", "auto", "start the agent with systemd: yes, no, or auto (when root on a systemd machine)")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "Usage: fleetagent enroll --hub https://HUB:8443 --code CODE [--ca-fingerprint SHA256] [--id NAME]")
		fmt.Fprintln(e.stderr)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	var errs []error
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	if u, err := url.Parse(e.Hub); e.Hub == "" || err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		errs = append(errs, fmt.Errorf("--hub: %q must look like https://hub.example:8443", e.Hub))
	}
	if strings.TrimSpace(e.Code) == "" {
		errs = append(errs, errors.New("--code: required (from `fleetctl enroll create`)"))
	}
	if e.ID == "" {
		e.ID = hostID()
	}
	switch e.Start {
	case "auto", "yes", "no":
	default:
		errs = append(errs, fmt.Errorf("--start: %q (want yes, no or auto)", e.Start))
	}
	return errors.Join(errs...)
}

// hostID turns the host name into a device id: lower case, [a-z0-9._-].
func hostID() string {
	h, _ := os.Hostname()
	h, _, _ = strings.Cut(strings.ToLower(h), ".")
	var b strings.Builder
	for _, r := range h {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			b.WriteRune(r)
		}
	}
	return strings.TrimLeft(b.String(), "-_")
}

// enrollResponse is the hub's answer (hub/api.EnrollResponse).
type enrollResponse struct {
	DeviceID      string            `json:"device_id"`
	Token         string            `json:"token"`
	CAFingerprint string            `json:"ca_fingerprint"`
	Labels        map[string]string `json:"labels"`
}

// Run enrolls, writes the config and starts the agent.
func (e *Enroll) Run(ctx context.Context) error {
	if !e.Force {
		if id, ok := enrolledAs(e.ConfigPath); ok {
			return fmt.Errorf("%s already holds the token of device %q: this device is enrolled (pass --force to enroll it again)", e.ConfigPath, id)
		}
	}
	// Check the config can be written before a code use is spent on it.
	if err := checkWritable(filepath.Dir(e.ConfigPath)); err != nil {
		return fmt.Errorf("cannot write the config (run as root?): %w", err)
	}
	resp, err := e.exchange(ctx)
	if err != nil {
		return err
	}
	p := agentconf.Params{DeviceID: resp.DeviceID, HubURL: deviceURL(e.Hub), Token: resp.Token,
		CAFingerprint: e.CAFingerprint, CAFile: e.CAFile, SpoolDir: e.SpoolDir}
	if p.CAFingerprint == "" && p.CAFile == "" {
		p.CAFingerprint = resp.CAFingerprint // trusted by the system roots; pin what the hub reports
	}
	if err := writePrivate(e.ConfigPath, []byte(agentconf.Render(p))); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	// A token kept from an earlier enrollment's rotation is for another
	// config token; it would be ignored, but leave nothing stale behind.
	if err := os.Remove(tokenFilePath("", e.SpoolDir)); err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(e.stderr, "warning: remove the old rotated token: %v\n", err)
	}
	fmt.Fprintf(e.stdout, "Enrolled as device %s (labels: %s).\nConfig written to %s (mode 0600).\n", resp.DeviceID, formatLabels(resp.Labels), e.ConfigPath)
	switch {
	case e.RunAgent:
		m := NewMain(e.stdout, e.stderr)
		if err := m.ParseFlags([]string{"--config", e.ConfigPath}); err != nil {
			return err
		}
		return m.Run(ctx)
	case e.startWithSystemd():
		if err := e.systemctl("enable", "--now", "fleetagent"); err != nil {
			return fmt.Errorf("enrolled, but starting the agent failed: %w", err)
		}
		if err := e.systemctl("restart", "fleetagent"); err != nil { // already running: pick up the new config
			return fmt.Errorf("enrolled, but restarting the agent failed: %w", err)
		}
		fmt.Fprintln(e.stdout, "Started: systemctl status fleetagent")
	default:
		fmt.Fprintf(e.stdout, "Start the agent: sudo systemctl enable --now fleetagent  (or: fleetagent --config %s)\n", e.ConfigPath)
	}
	return nil
}

func (e *Enroll) startWithSystemd() bool {
	switch e.Start {
	case "yes":
		return true
	case "no":
		return false
	}
	_, err := os.Stat("/run/systemd/system")
	return err == nil && os.Geteuid() == 0
}

// exchange posts the code to the hub and returns its answer, with the
// hub's own words when it refuses.
func (e *Enroll) exchange(ctx context.Context) (*enrollResponse, error) {
	u, _ := url.Parse(e.Hub) // checked by ParseFlags
	client := &http.Client{Timeout: 30 * time.Second}
	if u.Scheme == "https" {
		tlsCfg, err := trust.ClientConfig(u.Hostname(), e.CAFile, e.CAFingerprint)
		if err != nil {
			return nil, err
		}
		client.Transport = &http.Transport{TLSClientConfig: tlsCfg, Proxy: http.ProxyFromEnvironment}
	}
	body, _ := json.Marshal(map[string]string{"code": strings.TrimSpace(e.Code), "device_id": e.ID,
		"agent_version": version + " " + runtime.GOOS + "/" + runtime.GOARCH})
	req, err := http.NewRequestWithContext(ctx, "POST", strings.TrimRight(e.Hub, "/")+"/api/v1/enroll", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := client.Do(req)
	if err != nil {
		return nil, explainDialError(e.Hub, err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if res.StatusCode != http.StatusCreated {
		var msg struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &msg) != nil || msg.Error == "" {
			msg.Error = strings.TrimSpace(string(data))
		}
		if res.StatusCode == http.StatusTooManyRequests {
			msg.Error += " (retry after " + res.Header.Get("Retry-After") + " s)"
		}
		return nil, fmt.Errorf("the hub refused the enrollment (%d): %s", res.StatusCode, msg.Error)
	}
	var out enrollResponse
	if err := json.Unmarshal(data, &out); err != nil || out.Token == "" || out.DeviceID == "" {
		return nil, fmt.Errorf("unexpected answer from the hub: %.200s", data)
	}
	return &out, nil
}

// explainDialError adds what to do to a TLS trust failure.
func explainDialError(hub string, err error) error {
	s := err.Error()
	if strings.Contains(s, "certificate") || strings.Contains(s, "x509") || strings.Contains(s, "fingerprint") {
		return fmt.Errorf("cannot trust %s: %w\n(pass --ca-fingerprint as printed by `fleetctl enroll create`, or --ca-file)", hub, err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("no answer from %s (is the address right, and the port open?): %w", hub, err)
	}
	return fmt.Errorf("cannot reach %s: %w", hub, err)
}

// deviceURL is the device endpoint at the address the device reached the
// hub by: https://h:p -> wss://h:p/v1/device.
func deviceURL(hub string) string {
	u, _ := url.Parse(strings.TrimRight(hub, "/"))
	u.Scheme = map[string]string{"https": "wss", "http": "ws"}[u.Scheme]
	u.Path = strings.TrimRight(u.Path, "/") + "/v1/device"
	return u.String()
}

// checkWritable makes dir if needed and checks a file can be created in it.
func checkWritable(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".fleetagent-check-*")
	if err != nil {
		return err
	}
	f.Close()
	return os.Remove(f.Name())
}

// enrolledAs reports the device id of an existing config with a token.
func enrolledAs(path string) (string, bool) {
	if _, err := os.Stat(path); err != nil {
		return "", false
	}
	m := NewMain(io.Discard, io.Discard)
	if err := m.ParseFlags([]string{"--config", path}); err != nil || m.Config.Hub.Token == "" {
		return "", false
	}
	return m.Config.DeviceID, true
}

// writePrivate writes data to path atomically with mode 0600: a temporary
// file in the same directory, synced, then renamed over path. Run as root
// on a machine with the service user, the file is given to that user so
// the service (which is not root) can read it.
func writePrivate(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".fleetagent-*.yaml")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after the rename, a no-op
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if os.Geteuid() == 0 {
		if u, err := user.Lookup(serviceUser); err == nil {
			uid, _ := strconv.Atoi(u.Uid)
			gid, _ := strconv.Atoi(u.Gid)
			if err := f.Chown(uid, gid); err != nil {
				f.Close()
				return err
			}
		}
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	// The rename is durable only once the directory is synced: a power cut
	// right after a token rotation must not bring back the retired token.
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func formatLabels(l map[string]string) string {
	if len(l) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + l[k]
	}
	return strings.Join(parts, ",")
}
