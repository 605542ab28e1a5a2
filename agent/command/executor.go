package command

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"time"

	"github.com/fleetwire/fleetwire/protocol"
)

// Result states (protocol SPEC.md 2.7).
const (
	StateReceived  = "received"
	StateOutput    = "output"
	StateSucceeded = "succeeded"
	StateFailed    = "failed"
	StateTimedOut  = "timed_out"
	StateRejected  = "rejected"
)

// maxIDLen bounds a command id; longer ids are rejected without a record.
const maxIDLen = 256

// Error texts the hub and tests rely on.
const (
	errDisabled   = "commands are disabled on this device"
	errRestarted  = "agent restarted while the command ran; not run again"
	errUnreadable = "the record of this command id is unreadable; not run again"
)

// Builtins are hooks into the rest of the agent for the built-in commands.
// A nil hook makes its command rejected as not supported.
type Builtins struct {
	// Info feeds agent.info: version, uptime, config summary, spool state.
	Info func() map[string]any
	// SetInterval feeds agent.set-interval {interval: "30s"} (1s..24h); the
	// change lasts until the agent restarts.
	SetInterval func(time.Duration) error
	// CollectNow feeds collect.now.
	CollectNow func() error
	// Restart feeds agent.restart. It is called after the succeeded result
	// was stored and handed to send, outside the executor's goroutine
	// accounting, so it may call Executor.Close.
	Restart func()
}

// Executor runs the commands the hub sends, each id at most once (doc.go).
type Executor struct {
	cfg   Config
	rules map[string]rule
	hooks Builtins
	send  func(protocol.CommandResult)
	log   *slog.Logger
	store *store // nil only when disabled without a state dir

	// life bounds every run; Close cancels it, which kills the programs.
	life   context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// mu serialises Handle, so that a check of an id and its record
	// happen together, and guards the fields below.
	mu      sync.Mutex
	running map[string]bool // ids whose run is in progress in this process
	closed  bool
	written int // records written since the last prune
}

// rule is an Allowed with its patterns compiled and defaults applied.
type rule struct {
	Allowed
	patterns map[string]*regexp.Regexp
}

// job is one accepted command, ready to run in its own goroutine.
type job struct {
	run   func(ctx context.Context) protocol.CommandResult
	after func() // runs once the final result was sent (agent.restart)
}

// New validates cfg, opens the state dir and prunes it. send must be safe
// for concurrent use and must not block for long; it may drop results.
func New(cfg Config, b Builtins, send func(protocol.CommandResult), log *slog.Logger) (*Executor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxOutput == 0 {
		cfg.MaxOutput = DefaultMaxOutput
	}
	rules, err := compileRules(cfg)
	if err != nil {
		return nil, err
	}
	e := &Executor{cfg: cfg, rules: rules, hooks: b, send: send, log: log, running: map[string]bool{}}
	if cfg.StateDir != "" {
		if e.store, err = openStore(cfg.StateDir, log); err != nil {
			return nil, fmt.Errorf("commands: %w", err)
		}
		if err := e.store.prune(time.Now()); err != nil {
			log.Warn("prune command records", "err", err)
		}
	}
	e.life, e.cancel = context.WithCancel(context.Background())
	return e, nil
}

func compileRules(cfg Config) (map[string]rule, error) {
	rules := make(map[string]rule, len(cfg.Allow))
	for _, a := range cfg.Allow {
		r := rule{Allowed: a, patterns: map[string]*regexp.Regexp{}}
		for name, p := range a.Params {
			re, err := compilePattern(p.Pattern)
			if err != nil { // Validate compiled it already
				return nil, fmt.Errorf("commands: %s: %w", a.Name, err)
			}
			r.patterns[name] = re
		}
		if r.Timeout == 0 {
			r.Timeout = DefaultTimeout
		}
		if r.MaxOutput == 0 {
			r.MaxOutput = cfg.MaxOutput
		}
		rules[a.Name] = r
	}
	return rules, nil
}

// Handle is called by the link's reader for every Command. It does not
// block for long: it checks the id against the state dir, validates,
// records the start durably, and runs the command in a goroutine.
func (e *Executor) Handle(cmd protocol.Command) {
	e.mu.Lock()
	defer e.mu.Unlock()
	log := e.log.With("command_id", clip(cmd.ID), "command", clip(cmd.Name))
	switch {
	case e.closed:
		log.Warn("command after close ignored")
		return
	case e.running[cmd.ID]:
		log.Debug("redelivered command still running; ignored")
		return
	case cmd.ID == "" || len(cmd.ID) > maxIDLen:
		e.send(reject(cmd.ID, fmt.Sprintf("command id must be 1..%d bytes", maxIDLen)))
		return
	case e.store == nil:
		e.send(reject(cmd.ID, errDisabled))
		return
	}
	if e.replay(cmd, log) {
		return
	}
	j, err := e.prepare(cmd)
	if err != nil {
		log.Info("command rejected", "err", err)
		e.finish(reject(cmd.ID, err.Error()), log)
		return
	}
	e.start(cmd, j, log)
}

// replay answers an id the state dir knows and reports whether it did.
// e.mu must be held.
func (e *Executor) replay(cmd protocol.Command, log *slog.Logger) bool {
	rec, found, err := e.store.load(cmd.ID)
	switch {
	case !found:
		return false
	case err != nil:
		// Running it again could break at-most-once; refusing cannot.
		log.Error("command record unreadable", "err", err)
		e.finish(protocol.CommandResult{ID: cmd.ID, State: StateFailed, Error: errUnreadable}, log)
	case rec.Final != nil:
		log.Info("redelivered command already finished; result sent again", "state", rec.Final.State)
		e.send(*rec.Final)
	default:
		log.Warn("command was running when the agent stopped; not run again")
		e.finish(protocol.CommandResult{ID: cmd.ID, State: StateFailed, Error: errRestarted}, log)
	}
	return true
}

// start records the command as started (before anything runs: that record
// is what keeps a crash from running it twice), reports it received and
// runs it. e.mu must be held.
func (e *Executor) start(cmd protocol.Command, j job, log *slog.Logger) {
	if err := e.store.save(record{ID: cmd.ID, Name: cmd.Name, Started: time.Now()}); err != nil {
		// Not recorded, so not run: a redelivery may try again.
		log.Error("record command start", "err", err)
		e.send(protocol.CommandResult{ID: cmd.ID, State: StateFailed, Error: "cannot record the command, not run: " + err.Error()})
		return
	}
	e.written++
	e.send(protocol.CommandResult{ID: cmd.ID, State: StateReceived})
	e.running[cmd.ID] = true
	e.wg.Add(1)
	go func() {
		res := j.run(e.life)
		res.ID = cmd.ID
		e.mu.Lock()
		e.finish(res, log)
		delete(e.running, cmd.ID)
		e.mu.Unlock()
		e.wg.Done()
		if j.after != nil {
			j.after()
		}
	}()
}

// finish stores a final result, then sends it. A result that cannot be
// stored is still sent: the hub learns the outcome now, and a redelivery
// finds at worst the started record, which is never run again. e.mu must
// be held.
func (e *Executor) finish(res protocol.CommandResult, log *slog.Logger) {
	rec := record{ID: res.ID, Started: time.Now(), Final: &res}
	if old, found, err := e.store.load(res.ID); found && err == nil {
		rec.Name, rec.Started = old.Name, old.Started
	}
	if err := e.store.save(rec); err != nil {
		log.Error("store command result", "err", err)
	}
	e.written++
	e.maybePrune()
	log.Info("command finished", "state", res.State, "exit_code", res.ExitCode, "duration_ms", res.DurationMs)
	e.send(res)
}

// maybePrune prunes the state dir in a goroutine every pruneEvery
// records, so neither Handle nor a result waits for it. e.mu must be held.
func (e *Executor) maybePrune() {
	if e.written < pruneEvery || e.closed {
		return
	}
	e.written = 0
	// Safe against Close's Wait: closed is checked under e.mu, which Close
	// takes before it waits.
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		if err := e.store.prune(time.Now()); err != nil {
			e.log.Warn("prune command records", "err", err)
		}
	}()
}

// Close kills running programs (their whole process groups), waits for
// their goroutines and stores their results as failed. Handle ignores
// commands after Close. Close is idempotent.
func (e *Executor) Close() error {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	e.cancel()
	e.wg.Wait()
	return nil
}

func reject(id, why string) protocol.CommandResult {
	return protocol.CommandResult{ID: id, State: StateRejected, Error: why}
}
