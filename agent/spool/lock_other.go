//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package spool

import (
	"errors"
	"os"
)

// lockDir refuses to open a spool where this package has no flock: sharing a
// spool between two agents would corrupt it silently.
func lockDir(dir string) (*os.File, error) {
	return nil, errors.New("lock: spool locking is not supported on this OS")
}

func unlockDir(f *os.File) error { return f.Close() }
