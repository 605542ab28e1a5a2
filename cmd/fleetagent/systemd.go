package main

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/fleetwire/fleetwire/agent/command"
	"github.com/fleetwire/fleetwire/protocol"
)

// watchdogSlack is added to three collection intervals before the loop
// counts as stuck: a collection pass is bounded by one interval (the
// batcher's context), so a healthy loop spools at least every two.
const watchdogSlack = 30 * time.Second

// sdNotifier speaks sd_notify(3) to systemd for the unit's Type=notify and
// WatchdogSec= (deploy/fleetagent.service): READY=1 once the agent runs,
// WATCHDOG=1 at half the watchdog period while the collection loop keeps
// spooling, STOPPING=1 on the way out. Without NOTIFY_SOCKET (not under
// systemd, or another Type=) every call is a no-op.
//
// The environment is left set on purpose: agent.restart re-executes the
// binary in the same process, which must find NOTIFY_SOCKET and
// WATCHDOG_PID again (systemd only accepts the main PID's messages).
type sdNotifier struct {
	log      *slog.Logger
	now      func() time.Time
	slack    time.Duration
	interval atomic.Int64 // current collection interval (agent.set-interval changes it)
	last     atomic.Int64 // unix ns of the last spooled batch, or of the start
	wg       sync.WaitGroup
}

func newSDNotifier(interval time.Duration, log *slog.Logger) *sdNotifier {
	n := &sdNotifier{log: log, now: time.Now, slack: watchdogSlack}
	n.interval.Store(int64(interval))
	n.last.Store(n.now().UnixNano())
	return n
}

// spooled wraps the batcher's OnSpooled hook (next may be nil) to record
// that the collection loop ran.
func (n *sdNotifier) spooled(next func(*protocol.Batch)) func(*protocol.Batch) {
	return func(b *protocol.Batch) {
		n.last.Store(n.now().UnixNano())
		if next != nil {
			next(b)
		}
	}
}

// builtins follows agent.set-interval, so a longer interval set at run
// time does not look like a stuck loop.
func (n *sdNotifier) builtins(b command.Builtins) command.Builtins {
	set := b.SetInterval
	b.SetInterval = func(d time.Duration) error {
		if err := set(d); err != nil {
			return err
		}
		n.interval.Store(int64(d))
		return nil
	}
	return b
}

// healthy reports whether the collection loop spooled recently enough.
func (n *sdNotifier) healthy() bool {
	stale := 3*time.Duration(n.interval.Load()) + n.slack
	return n.now().Sub(time.Unix(0, n.last.Load())) < stale
}

// start sends READY=1 and pings the watchdog until ctx ends or the
// returned stop is called; stop sends STOPPING=1 and waits.
func (n *sdNotifier) start(ctx context.Context) (stop func()) {
	n.notify(daemon.SdNotifyReady)
	ctx, cancel := context.WithCancel(ctx)
	if period, err := daemon.SdWatchdogEnabled(false); err != nil {
		n.log.Warn("systemd watchdog", "err", err)
	} else if period > 0 {
		n.wg.Add(1)
		go n.pingLoop(ctx, period/2)
	}
	return func() {
		cancel()
		n.wg.Wait()
		n.notify(daemon.SdNotifyStopping)
	}
}

// pingLoop pings every half watchdog period while healthy; when the loop
// is stuck it stays silent and systemd restarts the agent (Restart=always).
func (n *sdNotifier) pingLoop(ctx context.Context, every time.Duration) {
	defer n.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	warned := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n.healthy() {
			n.notify(daemon.SdNotifyWatchdog)
			warned = false
		} else if !warned {
			n.log.Error("collection loop stalled: not pinging the systemd watchdog",
				"last_spooled", time.Unix(0, n.last.Load()))
			warned = true
		}
	}
}

func (n *sdNotifier) notify(state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		n.log.Warn("sd_notify", "state", state, "err", err)
	}
}
