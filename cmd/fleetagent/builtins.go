package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fleetwire/fleetwire/agent"
	"github.com/fleetwire/fleetwire/agent/collect"
	"github.com/fleetwire/fleetwire/agent/command"
	"github.com/fleetwire/fleetwire/agent/link"
	"github.com/fleetwire/fleetwire/agent/spool"
)

var started = time.Now()

// builtins connects the built-in commands to the running agent.
func (m *Main) builtins(sp *spool.Spool, lk *link.Link, b *agent.Batcher, cols []collect.Collector, restart func()) command.Builtins {
	var interval atomic.Int64 // the current interval, for agent.info
	interval.Store(int64(m.Config.Interval))
	return command.Builtins{
		Info: func() map[string]any {
			names := make([]string, len(cols))
			for i, c := range cols {
				names[i] = c.Name()
			}
			ls := lk.Stats()
			ss := sp.Stats()
			return map[string]any{
				"version": version, "arch": runtime.GOOS + "/" + arch(), "go": runtime.Version(),
				"uptime_seconds": int64(time.Since(started).Seconds()),
				"device_id":      m.Config.DeviceID, "hub": m.Config.Hub.URL,
				"interval": time.Duration(interval.Load()).String(), "collectors": names,
				"commands_allowed": len(m.Config.Commands.Allow),
				"spool": map[string]any{"dir": m.Config.Spool.Dir, "batches": ss.Batches, "bytes": ss.Bytes,
					"max_bytes": int64(m.Config.Spool.MaxBytes), "dropped": ss.Dropped, "next_seq": ss.NextSeq},
				"link": map[string]any{"connected": ls.Connected, "sessions": ls.Sessions, "last_acked": ls.LastAcked},
			}
		},
		SetInterval: func(d time.Duration) error {
			if err := b.SetInterval(d); err != nil {
				return err
			}
			interval.Store(int64(d))
			return nil
		},
		CollectNow: func() error { b.CollectNow(); return nil },
		Restart:    restart,
	}
}

// restart runs the Restart hook, or re-executes this binary in place: the
// same process id, so systemd and other supervisors see no exit.
func (m *Main) restart() error {
	if m.Restart != nil {
		return m.Restart()
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	return syscall.Exec(exe, os.Args, os.Environ())
}

// commandConfig is the executor's config with the state dir defaulted next
// to the spool.
func (c *Config) commandConfig() command.Config {
	cc := c.Commands
	if cc.StateDir == "" {
		cc.StateDir = filepath.Join(filepath.Dir(filepath.Clean(c.Spool.Dir)), "commands")
	}
	return cc
}
