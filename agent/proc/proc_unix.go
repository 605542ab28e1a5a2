//go:build unix

package proc

import (
	"errors"
	"os/exec"
	"syscall"
)

// killGroupOnCancel puts the program in a process group of its own and
// makes cancellation kill the whole group: a script's children (a `sleep`,
// a sensor reader it started) die with it instead of living on with its
// stdout open.
func killGroupOnCancel(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// The group id is the leader's pid (Setpgid with Pgid 0); a
		// negative pid signals the group (kill(2)).
		err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return err
	}
}
