// Package proc holds what every program the agent starts has in common:
// its own process group, killed as a whole on cancellation, and a bound on
// how long Wait lingers for output pipes after the program is gone. Both
// the exec collectors (agent/collect) and remote commands (agent/command)
// use it, so a fix to either concern lands in one place.
package proc

import (
	"os/exec"
	"time"
)

// WaitDelay bounds how long Wait waits for stdout and stderr to close after
// the program exited or was killed: a daemonized grandchild that left the
// process group may hold them open forever.
const WaitDelay = time.Second

// Prepare readies cmd (built with exec.CommandContext) for the agent: the
// program gets a process group of its own, cancelling the context kills
// the whole group, and Wait gives up on the pipes after WaitDelay.
func Prepare(cmd *exec.Cmd) {
	cmd.WaitDelay = WaitDelay
	killGroupOnCancel(cmd)
}
