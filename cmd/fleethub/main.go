// Command fleethub is the Fleetwire hub: device endpoint, ingest into
// InfluxDB, admin REST API and health/metrics endpoints.
package main

import (
	"context"
	"io"
	"os"

	"github.com/fleetwire/fleetwire/cmd/internal/cli"
)

// version is stamped by the build (-ldflags "-X main.version=...").
var version = "dev"

func main() { cli.Main("fleethub", NewMain(os.Stdout, os.Stderr)) }

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
	fs := cli.NewFlags("fleethub", version, "/etc/fleetwire/fleethub.yaml", m.stderr)
	fs.String("data_dir", "", "data directory (SQLite registry, generated TLS CA)")
	fs.String("listen", "", "listen address, host:port")
	fs.String("public_url", "", "URL devices use to reach this hub, e.g. https://hub.example:8443")
	fs.String("influx.url", "", "InfluxDB URL")
	fs.String("influx.bucket", "", "InfluxDB bucket (1.8: database/retention-policy)")
	fs.String("log.level", "", "debug, info, warn or error")
	return fs.Load(args, "FLEETHUB", &m.Config, m.Config.Validate, m.stdout)
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
