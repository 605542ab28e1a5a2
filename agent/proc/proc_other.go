//go:build !unix

package proc

import "os/exec"

// killGroupOnCancel keeps os/exec's default, killing only the process:
// the agent targets Linux, and other systems only need to build it.
func killGroupOnCancel(cmd *exec.Cmd) {}
