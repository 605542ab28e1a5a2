// Package cli is the plumbing fleethub and fleetagent share: the standard
// flags (--config, --print-config, --version), loading and validating the
// typed config, and running a program until SIGINT/SIGTERM.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/fleetwire/fleetwire/cmd/internal/config"
)

// ErrDone ends a program successfully after ParseFlags printed what was
// asked (--version, --print-config).
var ErrDone = errors.New("done")

// Program is a Main type: flags first, then Run until ctx ends.
type Program interface {
	ParseFlags(args []string) error
	Run(ctx context.Context) error
}

// Main runs p as the process: exit 2 on bad flags or config, 1 when Run
// fails, 0 otherwise.
func Main(name string, p Program) {
	if err := p.ParseFlags(os.Args[1:]); err != nil {
		if errors.Is(err, pflag.ErrHelp) || errors.Is(err, ErrDone) {
			return
		}
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := p.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

// Flags is a program's flag set with the standard flags registered; add
// config-key flags (named like the key: "influx.url") before Load.
type Flags struct {
	*pflag.FlagSet
	name, version string
	path          *string
	print         *bool
	showVersion   *bool
}

// NewFlags registers --config, --print-config and --version.
func NewFlags(name, version, example string, stderr io.Writer) *Flags {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	f := &Flags{FlagSet: fs, name: name, version: version}
	f.path = fs.StringP("config", "c", "", "config file (YAML), e.g. "+example)
	f.print = fs.Bool("print-config", false, "print the effective config (secrets masked), check it and exit")
	f.showVersion = fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s [--config FILE] [--KEY VALUE ...]\n\n", name)
		fmt.Fprintf(stderr, "Settings come from the config file (e.g. %s; a commented example is in deploy/),\nthen the environment\n", example)
		fmt.Fprintf(stderr, "(%s_ + key in upper case, dots as _), then flags named like the key.\n\n", strings.ToUpper(name))
		fs.PrintDefaults()
	}
	return f
}

// Load parses args and fills cfg from file, environment (envPrefix_*) and
// flags, then validates it. --version and --print-config print to stdout
// and return ErrDone.
func (f *Flags) Load(args []string, envPrefix string, cfg any, validate func() error, stdout io.Writer) error {
	if err := f.Parse(args); err != nil {
		return err
	}
	if *f.showVersion {
		fmt.Fprintf(stdout, "%s %s %s/%s\n", f.name, f.version, runtime.GOOS, runtime.GOARCH)
		return ErrDone
	}
	if err := config.Load(*f.path, envPrefix, f.FlagSet, cfg); err != nil {
		return err
	}
	if !*f.print {
		return validate()
	}
	if err := config.Print(stdout, cfg); err != nil {
		return err
	}
	if err := validate(); err != nil {
		return fmt.Errorf("config invalid:\n%w", err)
	}
	return ErrDone
}
