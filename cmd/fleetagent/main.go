// Command fleetagent runs on a device: it collects metrics, keeps them in a
// bounded disk spool and ships them to fleethub over wss.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"runtime"
	"sync/atomic"

	"github.com/fleetwire/fleetwire/agent"
	"github.com/fleetwire/fleetwire/agent/collect"
	"github.com/fleetwire/fleetwire/agent/command"
	"github.com/fleetwire/fleetwire/agent/link"
	"github.com/fleetwire/fleetwire/agent/spool"
	"github.com/fleetwire/fleetwire/agent/trust"
	"github.com/fleetwire/fleetwire/cmd/internal/cli"
	"github.com/fleetwire/fleetwire/cmd/internal/logx"
	"github.com/fleetwire/fleetwire/protocol"
)

// version is stamped by the build (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	tuneRuntime(os.Getenv)
	if len(os.Args) > 1 && os.Args[1] == "enroll" {
		os.Args = append(os.Args[:1], os.Args[2:]...)
		cli.Main("fleetagent enroll", NewEnroll(os.Stdout, os.Stderr))
		return
	}
	cli.Main("fleetagent", NewMain(os.Stdout, os.Stderr))
}

// Main is the agent program, runnable in-process by tests.
type Main struct {
	Config Config
	stdout io.Writer
	stderr io.Writer
	// OnSpooled is passed to the batcher (tests).
	OnSpooled func(*protocol.Batch)
	// Restart replaces the process after agent.restart (default: re-exec
	// this binary with the same arguments; tests override it).
	Restart func() error
}

// NewMain returns a Main with default config.
func NewMain(stdout, stderr io.Writer) *Main {
	return &Main{Config: defaultConfig(), stdout: stdout, stderr: stderr}
}

// ParseFlags loads the config from flags, environment (FLEETAGENT_*) and
// the config file, then validates it.
func (m *Main) ParseFlags(args []string) error {
	fs := cli.NewFlags("fleetagent", version, "/etc/fleetwire/fleetagent.yaml", m.stderr)
	fs.String("hub.url", "", "hub device endpoint, wss://HOST:8443/v1/device")
	fs.String("hub.ca_file", "", "CA certificate (PEM) that signed the hub's certificate")
	fs.String("hub.ca_fingerprint", "", "SHA-256 fingerprint of the hub's CA (or leaf) certificate")
	fs.Duration("interval", 0, "collection interval")
	fs.String("spool.dir", "", "spool directory")
	fs.String("log.level", "", "debug, info, warn or error")
	return fs.Load(args, "FLEETAGENT", &m.Config, m.Config.Validate, m.stdout)
}

// Run runs the agent until ctx ends.
func (m *Main) Run(ctx context.Context) error {
	cfg := &m.Config
	log, err := logx.New(m.stderr, cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		return err
	}
	sp, err := spool.Open(cfg.Spool.Dir, spool.Options{MaxBytes: int64(cfg.Spool.MaxBytes), Logger: log})
	if err != nil {
		return fmt.Errorf("open spool: %w", err)
	}
	defer sp.Close()
	sd := newSDNotifier(cfg.Interval, log) // systemd.go: READY=1 and watchdog
	collectors, err := collect.New(cfg.collectConfig(), log)
	if err != nil {
		return err
	}
	var exec *command.Executor
	lk, err := m.newLink(sp, log, func(c protocol.Command) { exec.Handle(c) })
	if err != nil {
		return err
	}
	batcher, err := agent.NewBatcher(agent.Options{
		Interval: cfg.Interval, MaxPoints: cfg.Collect.MaxPoints, HubMaxPoints: lk.MaxBatchPoints,
		Collectors: collectors, Spool: sp, Logger: log, OnSpooled: sd.spooled(m.OnSpooled),
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var restart atomic.Bool
	exec, err = command.New(cfg.commandConfig(), sd.builtins(m.builtins(sp, lk, batcher, collectors, func() { restart.Store(true); cancel() })), lk.SendResult, log)
	if err != nil {
		return err
	}
	log.Info("fleetagent starting", "version", version, "hub", cfg.Hub.URL, "interval", cfg.Interval, "spool", cfg.Spool.Dir)
	errc := make(chan error, 2)
	go func() { errc <- lk.Run(ctx) }()
	go func() { errc <- batcher.Run(ctx) }()
	sdStop := sd.start(ctx)
	err = <-errc
	cancel()
	<-errc
	exec.Close()
	sdStop()
	log.Info("fleetagent stopped", "spool_batches", sp.Stats().Batches)
	if restart.Load() {
		sp.Close()
		return m.restart()
	}
	return err
}

func (m *Main) newLink(sp *spool.Spool, log *slog.Logger, onCommand func(protocol.Command)) (*link.Link, error) {
	cfg := &m.Config
	u, err := url.Parse(cfg.Hub.URL)
	if err != nil {
		return nil, fmt.Errorf("hub.url: %w", err)
	}
	tlsCfg, err := trust.ClientConfig(u.Hostname(), cfg.Hub.CAFile, cfg.Hub.CAFingerprint)
	if err != nil {
		return nil, fmt.Errorf("hub TLS: %w", err)
	}
	token, err := cfg.currentToken()
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	return link.New(link.Config{
		URL: cfg.Hub.URL, Token: token, TLS: tlsCfg, AllowInsecure: cfg.Hub.AllowInsecure,
		Compress: cfg.Hub.Compress, Rotate: m.rotator(tlsCfg),
		Spool: sp, Logger: log, OnCommand: onCommand,
		Hello: protocol.Hello{
			AgentVersion: version, BootID: bootID(), Hostname: host,
			Arch: runtime.GOOS + "/" + arch(), Capabilities: []string{"telemetry", protocol.CapRotateToken},
		},
	})
}

// bootID identifies this boot of the device (Linux), or this process.
func bootID() string {
	if b, err := os.ReadFile("/proc/sys/kernel/random/boot_id"); err == nil && len(b) > 1 {
		return string(b[:len(b)-1])
	}
	var r [16]byte
	_, _ = rand.Read(r[:])
	return hex.EncodeToString(r[:])
}
