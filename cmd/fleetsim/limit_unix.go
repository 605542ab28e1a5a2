//go:build unix

package main

import "syscall"

// openFileLimit is this process's open-file limit (Go raises the soft
// limit to the hard one at start).
func openFileLimit() uint64 {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 1024
	}
	return r.Cur
}
