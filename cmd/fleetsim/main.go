// Command fleetsim simulates a fleet of devices for demos and load tests.
// Every simulated device runs the agent's real code: a disk spool
// (agent/spool, without fsync) and a hub link (agent/link) over wss, with
// generated metrics and canned command answers. Large fleets are split over
// several processes (one process may hold at most so many open files) and
// several loopback source addresses.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/pflag"
)

// version is stamped by the build (-ldflags "-X main.version=...").
var version = "dev"

// envChild carries a child process's Config (JSON); its presence makes
// the process a child that reports Snapshots on stdout.
const envChild = "FLEETSIM_CHILD"

// envAdminToken is the API token for --create.
const envAdminToken = "FLEETSIM_ADMIN_TOKEN"

func main() {
	if cfg := os.Getenv(envChild); cfg != "" {
		os.Exit(childMain(cfg, os.Stdout, os.Stderr))
	}
	m := NewMain(os.Stdout, os.Stderr)
	if err := m.ParseFlags(os.Args[1:]); err != nil {
		if errors.Is(err, pflag.ErrHelp) || errors.Is(err, errDone) {
			return
		}
		fmt.Fprintf(os.Stderr, "fleetsim: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := m.Run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "fleetsim: %v\n", err)
		os.Exit(1)
	}
}

var errDone = errors.New("done")

// Main is the fleetsim program, runnable in-process by tests.
type Main struct {
	Config Config
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
}

// NewMain returns a Main with the default config.
func NewMain(stdout, stderr io.Writer) *Main {
	return &Main{Config: defaultConfig(), stdout: stdout, stderr: stderr, getenv: os.Getenv}
}

// ParseFlags reads the flags (and FLEETSIM_ADMIN_TOKEN) and validates them.
func (m *Main) ParseFlags(args []string) error {
	c := &m.Config
	fs := pflag.NewFlagSet("fleetsim", pflag.ContinueOnError)
	fs.SetOutput(m.stderr)
	fs.StringVar(&c.Hub, "hub", "", "hub device endpoint, wss://HOST:8443/v1/device")
	fs.StringVar(&c.CAFile, "ca-file", "", "CA certificate (PEM) that signed the hub's certificate")
	fs.StringVar(&c.CAFingerprint, "ca-fingerprint", "", "SHA-256 fingerprint of the hub's CA (or leaf) certificate")
	fs.BoolVar(&c.AllowInsecure, "allow-insecure", false, "permit a ws:// hub (local development only)")
	fs.IntVarP(&c.Devices, "devices", "n", 10, "number of simulated devices")
	fs.StringVar(&c.IDPrefix, "id-prefix", c.IDPrefix, "device IDs are PREFIX0000, PREFIX0001, ...")
	fs.StringVar(&c.TokensFile, "tokens", "", `file of "id token" lines (written with --create)`)
	fs.BoolVar(&c.Create, "create", false, "register the devices missing from --tokens through the hub's REST API")
	fs.StringVar(&c.APIURL, "api-url", "", "hub REST API for --create, https://HOST:8443")
	fs.StringVar(&c.AdminToken, "admin-token", "", "admin API token for --create (env "+envAdminToken+")")
	labels := fs.String("labels", "", "labels of created devices, k=v,k2=v2")
	fs.IntVar(&c.Metrics, "metrics", c.Metrics, "points per batch")
	fs.DurationVar(&c.Interval, "interval", c.Interval, "time between two batches of a device")
	jitter := fs.String("jitter", "1", "spread of the devices over the interval: a fraction of it (0..1) or a duration")
	ramp := fs.String("ramp", "500/s", "connections started per second during start-up")
	fs.StringVar(&c.Commands, "commands", c.Commands, "how devices answer commands: echo (args as stdout), sleep (args duration=1.5s), fail (exit code 1)")
	fs.IntVar(&c.Procs, "procs", 0, "processes to spread the devices over (0: automatic, by the open-file limit)")
	fs.DurationVar(&c.Duration, "duration", 0, "stop after this long (0: run until Ctrl-C)")
	fs.BoolVar(&c.Compress, "compress", c.Compress, "offer permessage-deflate to the hub")
	source := fs.String("source", "", "local source addresses for the connections, round-robin: 127.0.0.2-127.0.0.9,...")
	fs.StringVar(&c.WorkDir, "work-dir", "", "directory for the devices' spools (default: a temporary one, removed at exit)")
	fs.Int64Var(&c.SpoolBytes, "spool-bytes", c.SpoolBytes, "spool size bound per device")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(m.stderr, "Usage: fleetsim --hub wss://HOST:8443/v1/device --ca-file CA.pem (--tokens FILE | --create ...) [flags]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (flags only; see --help)", fs.Arg(0))
	}
	if *showVersion {
		fmt.Fprintf(m.stdout, "fleetsim %s\n", version)
		return errDone
	}
	if c.AdminToken == "" {
		c.AdminToken = m.getenv(envAdminToken)
	}
	var errs []error
	var err error
	if c.Labels, err = parseLabels(*labels); err != nil {
		errs = append(errs, err)
	}
	if c.Jitter, err = parseJitter(*jitter, c.Interval); err != nil {
		errs = append(errs, err)
	}
	if c.Ramp, err = parseRamp(*ramp); err != nil {
		errs = append(errs, err)
	}
	if c.Sources, err = parseSources(*source); err != nil {
		errs = append(errs, err)
	} else if err := checkSources(c.Sources); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, c.Validate())
	return errors.Join(errs...)
}

// Run runs the fleet until ctx ends or --duration passes, printing
// progress and the summary on stderr.
func (m *Main) Run(ctx context.Context) error {
	_, err := Run(ctx, m.Config, m.stderr)
	return err
}

// Run registers or reads the fleet's tokens, then runs it (in this
// process or in children) and returns the final totals. cfg must be
// valid (Validate).
func Run(ctx context.Context, cfg Config, stderr io.Writer) (*Snapshot, error) {
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, "fleetsim: "+format+"\n", a...) }
	tokens, err := fleetTokens(ctx, &cfg, logf)
	if err != nil {
		return nil, err
	}
	if cfg.WorkDir == "" {
		dir, err := os.MkdirTemp("", "fleetsim-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		cfg.WorkDir = dir
	}
	procs := cfg.Procs
	if procs == 0 {
		procs = autoProcs(cfg.Devices)
	}
	progress := newProgress(stderr)
	var final *Snapshot
	if procs <= 1 {
		cfg.Count = cfg.Devices
		final, err = runLocal(ctx, &cfg, tokens, logf, func(s *Snapshot, last bool) {
			if !last {
				progress.show(s)
			}
		})
	} else {
		final, err = runParent(ctx, &cfg, procs, progress, logf)
	}
	progress.end()
	if final != nil {
		writeSummary(stderr, final)
	}
	return final, err
}

// runLocal runs devices [cfg.First, cfg.First+cfg.Count) in this process
// until ctx ends or --duration passes.
func runLocal(ctx context.Context, cfg *Config, tokens []string, logf func(string, ...any), report func(*Snapshot, bool)) (*Snapshot, error) {
	opened := time.Now()
	f, err := newFleet(cfg, tokens, logf)
	if err != nil {
		return nil, err
	}
	defer f.close()
	if d := time.Since(opened); d > 2*time.Second {
		logf("opened %d spools in %s", len(f.devs), d.Round(time.Millisecond))
	}
	// --duration counts from here: registering devices and opening
	// spools can take a while for a large fleet.
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	var final *Snapshot
	f.run(ctx, func(s *Snapshot, last bool) {
		if last {
			s.Final, final = true, s
		}
		report(s, last)
	})
	return final, nil
}

// childMain runs one slice of the fleet for a parent process: Snapshots
// as JSON lines on stdout, once a second and at the end.
func childMain(cfgJSON string, stdout, stderr io.Writer) int {
	var cfg Config
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		fmt.Fprintf(stderr, "fleetsim child: %s: %v\n", envChild, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logf := func(format string, a ...any) {
		fmt.Fprintf(stderr, "fleetsim[%d-%d]: "+format+"\n", append([]any{cfg.First, cfg.First + cfg.Count - 1}, a...)...)
	}
	all, err := readTokens(cfg.TokensFile, false)
	if err != nil {
		logf("%v", err)
		return 1
	}
	tokens := make([]string, cfg.Count)
	for i := range tokens {
		if tokens[i] = all[cfg.deviceID(cfg.First+i)]; tokens[i] == "" {
			logf("no token for %s in %s", cfg.deviceID(cfg.First+i), cfg.TokensFile)
			return 1
		}
	}
	enc := json.NewEncoder(stdout)
	_, err = runLocal(ctx, &cfg, tokens, logf, func(s *Snapshot, _ bool) { _ = enc.Encode(s) })
	if err != nil {
		logf("%v", err)
		return 1
	}
	return 0
}
