// Command fleethub is the Fleetwire hub: device endpoint, ingest into
// InfluxDB, admin REST API and health/metrics endpoints.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/fleetwire/fleetwire/cmd/internal/config"
)

// version is stamped by the build (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	m := NewMain(os.Stdout, os.Stderr)
	if err := m.ParseFlags(os.Args[1:]); err != nil {
		if errors.Is(err, pflag.ErrHelp) || errors.Is(err, errDone) {
			return
		}
		fmt.Fprintln(os.Stderr, "fleethub:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := m.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "fleethub:", err)
		os.Exit(1)
	}
}

var errDone = errors.New("done")

// Main is the hub program, runnable in-process by tests.
type Main struct {
	Config Config
	stdout io.Writer
	stderr io.Writer
	// Started, if set, receives the server once it listens (tests).
	Started func(*Server)
}

// NewMain returns a Main with default config.
func NewMain(stdout, stderr io.Writer) *Main {
	return &Main{Config: defaultConfig(), stdout: stdout, stderr: stderr}
}

// ParseFlags loads the config from flags, FLEETHUB_* environment and the
// config file, then validates it.
func (m *Main) ParseFlags(args []string) error {
	fs := pflag.NewFlagSet("fleethub", pflag.ContinueOnError)
	fs.SetOutput(m.stderr)
	path := fs.StringP("config", "c", "", "config file (YAML), e.g. /etc/fleetwire/fleethub.yaml")
	printCfg := fs.Bool("print-config", false, "print the effective config and exit")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.String("data_dir", "", "data directory (SQLite registry, generated TLS CA)")
	fs.String("listen", "", "listen address, host:port")
	fs.String("public_url", "", "URL devices use to reach this hub, e.g. https://hub.example:8443")
	fs.String("influx.url", "", "InfluxDB URL")
	fs.String("influx.bucket", "", "InfluxDB bucket (1.8: database/retention-policy)")
	fs.String("log.level", "", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Fprintf(m.stdout, "fleethub %s %s/%s\n", version, runtime.GOOS, runtime.GOARCH)
		return errDone
	}
	if err := config.Load(*path, "FLEETHUB", fs, &m.Config); err != nil {
		return err
	}
	if *printCfg {
		if err := config.Print(m.stdout, m.Config); err != nil {
			return err
		}
		if err := m.Config.Validate(); err != nil {
			return fmt.Errorf("config invalid:\n%w", err)
		}
		return errDone
	}
	return m.Config.Validate()
}

// Run serves until ctx ends, then shuts down gracefully.
func (m *Main) Run(ctx context.Context) error {
	s, err := NewServer(m.Config, m.stdout, m.stderr)
	if err != nil {
		return err
	}
	if err := s.Listen(); err != nil {
		s.Close(context.Background())
		return err
	}
	if m.Started != nil {
		m.Started(s)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Serve() }()
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), m.Config.ShutdownTimeout)
	defer cancel()
	if cerr := s.Close(sctx); err == nil {
		err = cerr
	}
	return err
}
