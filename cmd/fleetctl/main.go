// Command fleetctl is the operator CLI for a Fleetwire hub: it manages
// devices, remote commands and API tokens through the hub's admin REST API.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Run(ctx, os.Args[1:], System{
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv, Now: time.Now,
	})
	stop()
	os.Exit(code)
}
