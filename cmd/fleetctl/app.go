package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// System is the process environment fleetctl runs in; tests provide their
// own so the whole CLI runs in-process.
type System struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	Now            func() time.Time
}

// options are the global flags, after environment defaults are applied.
type options struct {
	hub, token, tokenFile, caFile, output string
}

// app is one invocation: the system, the flags and the API client.
type app struct {
	sys  System
	opts options
}

// usageError marks a mistake in the command line (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// Run runs fleetctl with args (without the program name) and returns the
// exit code. Errors are printed to sys.Stderr as "fleetctl: ...".
func Run(ctx context.Context, args []string, sys System) int {
	a := &app{sys: sys}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(sys.Stdin)
	root.SetOut(sys.Stdout)
	root.SetErr(sys.Stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(sys.Stderr, "fleetctl: %v\n", err)
	if errors.As(err, new(usageError)) {
		fmt.Fprintln(sys.Stderr, "Run 'fleetctl --help' for usage.")
		return exitUsage
	}
	return exitError
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:               "fleetctl",
		Short:             "Manage a Fleetwire hub's devices, enrollment codes, commands, API tokens, users and audit log",
		SilenceUsage:      true,
		SilenceErrors:     true,
		Args:              cobra.ArbitraryArgs,
		RunE:              groupRun,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error { return a.applyEnv(cmd) },
	}
	f := root.PersistentFlags()
	f.StringVar(&a.opts.hub, "hub", "", "hub address, e.g. https://hub.example:8443 (env FLEETCTL_HUB)")
	f.StringVar(&a.opts.token, "token", "", "API token fwa_... (env FLEETCTL_TOKEN)")
	f.StringVar(&a.opts.tokenFile, "token-file", "", "read the API token from this file")
	f.StringVar(&a.opts.caFile, "ca-file", "", "PEM CA certificate(s) to trust for the hub, e.g. the hub's self-generated CA (env FLEETCTL_CA_FILE)")
	f.StringVarP(&a.opts.output, "output", "o", "table", "output format: table or json")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(a.deviceCommand(), a.cmdCommand(), a.tokenCommand(), a.userCommand(), a.enrollCommand(), a.auditCommand())
	return root
}

// applyEnv fills unset flags from the environment. It runs after parsing
// rather than as flag defaults so --help never prints a secret.
func (a *app) applyEnv(cmd *cobra.Command) error {
	env := map[string]*string{"hub": &a.opts.hub, "token": &a.opts.token, "ca-file": &a.opts.caFile}
	names := map[string]string{"hub": "FLEETCTL_HUB", "token": "FLEETCTL_TOKEN", "ca-file": "FLEETCTL_CA_FILE"}
	for flag, dst := range env {
		if !cmd.Flags().Changed(flag) && a.sys.Getenv != nil {
			*dst = a.sys.Getenv(names[flag])
		}
	}
	if a.opts.output != "table" && a.opts.output != "json" {
		return usageError{fmt.Errorf("--output %q: want table or json", a.opts.output)}
	}
	return nil
}

// apiToken returns the token from --token / FLEETCTL_TOKEN or --token-file.
func (a *app) apiToken() (string, error) {
	if a.opts.tokenFile != "" {
		if a.opts.token != "" {
			return "", usageError{errors.New("give the API token with --token (or FLEETCTL_TOKEN) or --token-file, not both")}
		}
		b, err := os.ReadFile(a.opts.tokenFile)
		if err != nil {
			return "", fmt.Errorf("read token file: %w", err)
		}
		a.opts.token = strings.TrimSpace(string(b))
		if a.opts.token == "" {
			return "", fmt.Errorf("token file %s is empty", a.opts.tokenFile)
		}
	}
	if a.opts.token == "" {
		return "", usageError{errors.New("no API token: set --token, FLEETCTL_TOKEN or --token-file (fleethub prints an admin token on its first start)")}
	}
	return a.opts.token, nil
}

// exactArgs is cobra.ExactArgs with a usage error.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError{fmt.Errorf("want %s, got %d argument(s)", what, len(args))}
		}
		return nil
	}
}

// groupRun runs a command that only groups subcommands: bare, it shows
// help; with an argument, that argument is an unknown subcommand.
func groupRun(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())}
	}
	return cmd.Help()
}
