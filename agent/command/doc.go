// Package command is the agent's executor for remote commands: the hub
// sends protocol.Command messages, the Executor checks each against the
// device's config, runs it, and answers with protocol.CommandResult
// messages (protocol SPEC.md sections 2.6 and 2.7).
//
// # Guarantees
//
// A command id runs at most once on the device, across agent restarts,
// reconnects and hub redeliveries. Before anything runs, the id is recorded
// in the state dir as started (write, fsync, rename, fsync of the dir).
// When the hub sends an id again:
//
//   - finished (succeeded, failed, timed_out or rejected): the stored final
//     result is sent again, unchanged, and nothing runs;
//   - running in this process: ignored, its final result follows;
//   - started but neither finished nor running (the agent stopped mid-run):
//     it is reported failed, "agent restarted while the command ran; not run
//     again", and that is stored as its final result;
//   - its record is unreadable: reported failed, never run.
//
// If the start cannot be recorded (disk full), the command is reported
// failed and not run, so a later redelivery may still run it once. The
// final result is stored before it is sent; send may drop it (the link is
// best effort), which is fine because the hub redelivers every command it
// has not seen finish, and the executor re-reports from disk.
//
// Only commands named in the config run, plus the built-ins. Programs run
// directly (never through a shell) with an absolute path, fixed arguments
// and parameters checked against an enum and/or an anchored pattern, in a
// process group of their own, stdin /dev/null, and an environment of
// PATH=/usr/sbin:/usr/bin:/sbin:/bin, LANG=C and the configured env only.
//
// # Results
//
// An accepted command gets "received", then "output" chunks while it runs,
// then one final state. A rejected one gets only "rejected". Final states:
// "succeeded" (exit 0), "failed" (non-zero exit, with ExitCode; a signal is
// ExitCode -1; a program that cannot start; the agent stopping), "timed_out"
// (the whole process group was killed with SIGKILL), "rejected" (not
// allowed: disabled, unknown name, undeclared parameter, a value outside
// its enum or pattern or longer than 1024 bytes, a missing required one).
// A final result carries ExitCode, the captured Stdout and Stderr,
// Truncated and DurationMs.
//
// # Output
//
// Each of stdout and stderr keeps its first max_output bytes; past that the
// program's output is read and discarded (the program is not killed) and
// Truncated is set. Exactly max_output bytes is not truncated. While the
// program runs, every 250 ms, or as soon as 4 KiB are waiting, an "output"
// result carries the bytes new since the previous chunk (at most 64 KiB
// per stream per chunk); nothing past the cap is streamed, and the tail
// is not flushed as a chunk because the final result carries everything.
// max_output is capped at 256 KiB so that a final result with both streams
// full still fits the hub's default 1 MiB message limit.
//
// # Built-in commands
//
// Always allowed when commands are enabled; their names are reserved:
//
//	ping                 succeeded, stdout "pong\n"
//	agent.info           succeeded, stdout = JSON of Builtins.Info()
//	agent.set-interval   param interval: a Go duration, 1s..24h; runtime only
//	collect.now          runs a collection now
//	agent.restart        the succeeded result is stored and sent, then Builtins.Restart runs
//
// A built-in whose hook is nil is rejected as not supported. A hook's error
// makes the result failed.
//
// # State dir
//
// One JSON file per id, named by the SHA-256 of the id, mode 0600, in a dir
// of mode 0700. Retention, by file modification time: the newest 1000
// records are always kept; older ones are kept while younger than 7 days;
// never more than 10000 records in all. Pruning runs when the executor
// starts and after every 100 records written. So the dedup window is at
// least 1000 commands or 7 days, whichever is more (up to 10000 commands);
// the hub's command expiry must stay inside it. Unreadable records are
// logged, never fatal, and age out like the others.
//
// # Configuration
//
// The "commands" section of the agent's config (Config). Keys:
//
//	commands:
//	  enabled: false        # false rejects every command
//	  state_dir: /var/lib/fleetagent/commands   # required when enabled
//	  max_output: 65536     # bytes per stream; default 64 KiB, at most 256 KiB
//	  allow:                # commands the hub may run, besides the built-ins
//	    - name: service.restart         # protocol name rules; unique; not a built-in
//	      exec: /usr/bin/systemctl      # absolute path, run without a shell
//	      args: [restart, "{unit}"]     # an arg exactly "{param}" takes that value
//	      params:                       # every {param} declared, every declared one used
//	        unit:
//	          enum: [nginx, mosquitto]  # and/or pattern; one of the two is required
//	          pattern: ""               # Go regexp, anchored: matches the whole value
//	          default: ""               # used when omitted; must obey the rule
//	          required: true            # omitted -> rejected
//	      timeout: 60s                  # default 60s, at most 24h; the hub's timeout_ms wins if smaller
//	      max_output: 0                 # 0: commands.max_output
//	      dir: /                        # working dir, absolute; default the agent's
//	      env: {SYSTEMD_COLORS: "0"}    # added to PATH and LANG=C (may override them)
//
// An omitted parameter that is neither required nor defaulted is the empty
// string, which must obey its rule too. Validate names the key of every
// problem, e.g. "commands.allow[2].params.unit.pattern: compile: ...".
//
// # Examples
//
// Reboot the device:
//
//	commands:
//	  allow:
//	    - name: device.reboot
//	      exec: /usr/bin/systemctl
//	      args: [reboot]
//	      timeout: 30s
//
// Read the end of the system log; lines is 1 to 4 digits, default 100:
//
//	commands:
//	  allow:
//	    - name: log.tail
//	      exec: /usr/bin/tail
//	      args: ["-n", "{lines}", /var/log/syslog]
//	      params:
//	        lines:
//	          pattern: "[0-9]{1,4}"
//	          default: "100"
//	      max_output: 262144
//
// Restart one of a fixed set of services:
//
//	commands:
//	  allow:
//	    - name: service.restart
//	      exec: /usr/bin/systemctl
//	      args: [restart, "{unit}"]
//	      params:
//	        unit:
//	          enum: [nginx.service, mosquitto.service, fleetagent-sensors.service]
//	          required: true
//	      timeout: 2m
package command
