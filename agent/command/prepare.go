package command

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/fleetwire/fleetwire/protocol"
)

// Bounds of agent.set-interval.
const (
	MinInterval = time.Second
	MaxInterval = 24 * time.Hour
)

// prepare checks cmd against the config and returns the job to run, or the
// reason it is rejected. Nothing runs here.
func (e *Executor) prepare(cmd protocol.Command) (job, error) {
	if !e.cfg.Enabled {
		return job{}, errors.New(errDisabled)
	}
	if slices.Contains(builtinNames, cmd.Name) {
		return e.builtin(cmd)
	}
	r, ok := e.rules[cmd.Name]
	if !ok {
		return job{}, fmt.Errorf("unknown command %q: not in this device's commands.allow", clip(cmd.Name))
	}
	argv, err := r.argv(cmd.Args)
	if err != nil {
		return job{}, err
	}
	p := program{argv: argv, env: r.environ(), dir: r.Dir, timeout: r.Timeout, maxOutput: r.MaxOutput}
	if ms := cmd.TimeoutMs; ms > 0 && ms < uint64(r.Timeout/time.Millisecond) {
		p.timeout = time.Duration(ms) * time.Millisecond // the hub's limit wins when smaller
	}
	return job{run: func(ctx context.Context) protocol.CommandResult {
		return e.runProgram(ctx, cmd.ID, p)
	}}, nil
}

// argv is Exec + Args with every "{param}" replaced by its checked value.
func (r rule) argv(args map[string]string) ([]string, error) {
	for _, name := range sortedKeys(args) {
		if _, ok := r.Params[name]; !ok {
			return nil, fmt.Errorf("parameter %q is not declared for %s", clip(name), r.Name)
		}
	}
	values := make(map[string]string, len(r.Params))
	for _, name := range sortedKeys(r.Params) {
		p := r.Params[name]
		v, given := args[name]
		switch {
		case !given && p.Required:
			return nil, fmt.Errorf("parameter %q is required", name)
		case !given:
			v = p.Default
		}
		if err := checkValue(v, p.Enum, r.patterns[name]); err != nil {
			return nil, fmt.Errorf("parameter %q: %w", name, err)
		}
		values[name] = v
	}
	argv := append(make([]string, 0, len(r.Args)+1), r.Exec)
	for _, a := range r.Args {
		if name, ok := placeholder(a); ok {
			if v, declared := values[name]; declared {
				a = v
			}
		}
		argv = append(argv, a)
	}
	return argv, nil
}

// environ is the program's whole environment: a fixed PATH and LANG, so
// nothing leaks in from how the agent was started, plus the configured Env.
func (r rule) environ() []string {
	env := []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"}
	for _, k := range sortedKeys(r.Env) {
		env = append(env, k+"="+r.Env[k]) // os/exec keeps the last of duplicates
	}
	return env
}

// builtin prepares a built-in command. Only agent.set-interval takes a
// parameter.
func (e *Executor) builtin(cmd protocol.Command) (job, error) {
	var iv time.Duration
	if cmd.Name == NameSetInterval {
		d, err := intervalArg(cmd.Args)
		if err != nil {
			return job{}, err
		}
		iv = d
	} else if len(cmd.Args) > 0 {
		return job{}, fmt.Errorf("%s takes no parameters (got %q)", cmd.Name, clip(sortedKeys(cmd.Args)[0]))
	}
	h := e.hooks
	var j job
	switch {
	case cmd.Name == NamePing:
		j.run = e.builtinRun(func() ([]byte, error) { return []byte("pong\n"), nil })
	case cmd.Name == NameInfo && h.Info != nil:
		j.run = e.builtinRun(func() ([]byte, error) { return e.info() })
	case cmd.Name == NameSetInterval && h.SetInterval != nil:
		j.run = e.builtinRun(func() ([]byte, error) { return nil, h.SetInterval(iv) })
	case cmd.Name == NameCollectNow && h.CollectNow != nil:
		j.run = e.builtinRun(func() ([]byte, error) { return nil, h.CollectNow() })
	case cmd.Name == NameRestart && h.Restart != nil:
		j.run = e.builtinRun(func() ([]byte, error) { return []byte("restarting\n"), nil })
		j.after = h.Restart
	default:
		return job{}, fmt.Errorf("%s: not supported by this agent", cmd.Name)
	}
	return j, nil
}

func intervalArg(args map[string]string) (time.Duration, error) {
	for _, k := range sortedKeys(args) {
		if k != "interval" {
			return 0, fmt.Errorf("parameter %q is not declared for %s", clip(k), NameSetInterval)
		}
	}
	v, ok := args["interval"]
	if !ok {
		return 0, fmt.Errorf("parameter %q is required", "interval")
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < MinInterval || d > MaxInterval {
		return 0, fmt.Errorf("parameter %q: value %q is not a duration in %s..%s", "interval", clip(v), MinInterval, MaxInterval)
	}
	return d, nil
}

// info renders agent.info as JSON.
func (e *Executor) info() ([]byte, error) {
	b, err := json.Marshal(e.hooks.Info())
	if err != nil {
		return nil, fmt.Errorf("encode info: %w", err)
	}
	return append(b, '\n'), nil
}

// builtinRun adapts a hook to a job: a hook error is a failed result, and
// stdout is capped at commands.max_output like a program's.
func (e *Executor) builtinRun(f func() ([]byte, error)) func(context.Context) protocol.CommandResult {
	return func(context.Context) protocol.CommandResult {
		start := time.Now()
		out, err := f()
		res := protocol.CommandResult{State: StateSucceeded, Stdout: out, DurationMs: uint64(time.Since(start).Milliseconds())}
		if len(out) > e.cfg.MaxOutput {
			res.Stdout, res.Truncated = out[:e.cfg.MaxOutput], true
		}
		if err != nil {
			res.State, res.Error = StateFailed, err.Error()
		}
		return res
	}
}
