package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/spf13/cobra"
)

// command mirrors the hub's command JSON (see device for why a copy).
type command struct {
	ID         string            `json:"id"`
	BulkID     string            `json:"bulk_id"`
	DeviceID   string            `json:"device_id"`
	Name       string            `json:"name"`
	Args       map[string]string `json:"args"`
	SentBy     string            `json:"sent_by"`
	State      string            `json:"state"`
	CreatedAt  time.Time         `json:"created_at"`
	ExpiresAt  time.Time         `json:"expires_at"`
	TimeoutMs  int64             `json:"timeout_ms"`
	FinishedAt *time.Time        `json:"finished_at"`
	ExitCode   *int64            `json:"exit_code"`
	Stdout     string            `json:"stdout"`
	Stderr     string            `json:"stderr"`
	Truncated  bool              `json:"truncated"`
	DurationMs int64             `json:"duration_ms"`
	Error      string            `json:"error"`
	Version    int64             `json:"version"`
}

// bulkStatus mirrors the hub's bulk status JSON.
type bulkStatus struct {
	BulkID   string         `json:"bulk_id"`
	Total    int            `json:"total"`
	ByState  map[string]int `json:"by_state"`
	Done     bool           `json:"done"`
	Commands []command      `json:"commands"`
}

// sendBody is the body of POST /api/v1/commands.
type sendBody struct {
	DeviceID string            `json:"device_id,omitempty"`
	Selector map[string]string `json:"selector,omitempty"`
	Name     string            `json:"name"`
	Args     map[string]string `json:"args,omitempty"`
	TTL      string            `json:"ttl,omitempty"`
	Timeout  string            `json:"timeout,omitempty"`
}

// terminal reports whether a command in state s can change no more.
func terminal(s string) bool { return s != "queued" && s != "sent" && s != "received" }

func (a *app) cmdCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cmd",
		Short: "Send remote commands to devices, list, show and cancel them",
		Args:  cobra.ArbitraryArgs,
		RunE:  groupRun,
	}
	cmd.AddCommand(a.cmdSendCommand(), a.cmdListCommand(), a.cmdShowCommand(), a.cmdCancelCommand())
	return cmd
}

// sendOptions are the flags of cmd send.
type sendOptions struct {
	args, selector []string
	ttl, timeout   time.Duration
	wait, follow   bool
}

func (a *app) cmdSendCommand() *cobra.Command {
	var o sendOptions
	cmd := &cobra.Command{
		Use: "send {DEVICE | --selector key=value} NAME",
		Example: `  fleetctl cmd send pi-01 service.restart --arg unit=nginx --wait
  fleetctl cmd send --selector site=lab uptime --wait`,
		Short: "Send a command to a device, or to every device matching a label selector",
		Long: `Send a command to one device, or with --selector to every device whose
labels match (a bulk send). Prints the command (or bulk) id.

With --wait, waits for the result and exits 0 only if the command (every
command of a bulk) succeeded. With --follow, also prints the command's
output as it arrives.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(o.selector) > 0 {
				return exactArgs(1, "a command NAME (the devices come from --selector)")(cmd, args)
			}
			return exactArgs(2, "DEVICE and NAME (or --selector key=value and NAME)")(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error { return a.cmdSend(cmd.Context(), args, o) },
	}
	f := cmd.Flags()
	f.StringArrayVarP(&o.args, "arg", "a", nil, "command argument key=value (repeatable)")
	f.StringArrayVarP(&o.selector, "selector", "s", nil, "send to every device with this label key=value (repeatable: all must match)")
	f.DurationVar(&o.ttl, "ttl", 0, "how long the command may wait for an offline device (default: the hub's, 1h)")
	f.DurationVar(&o.timeout, "timeout", 0, "run time limit on the device (default: the hub's, 60s)")
	f.BoolVarP(&o.wait, "wait", "w", false, "wait for the result and print it")
	f.BoolVarP(&o.follow, "follow", "f", false, "print the output as it arrives (implies --wait)")
	return cmd
}

func (a *app) cmdSend(ctx context.Context, pos []string, o sendOptions) error {
	args, err := parseKV("--arg", o.args)
	if err != nil {
		return err
	}
	sel, err := parseKV("--selector", o.selector)
	if err != nil {
		return err
	}
	body := sendBody{Selector: sel, Name: pos[len(pos)-1], Args: args}
	if len(sel) == 0 {
		body.Selector, body.DeviceID = nil, pos[0]
	}
	if o.ttl != 0 {
		body.TTL = o.ttl.String()
	}
	if o.timeout != 0 {
		body.Timeout = o.timeout.String()
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	resp, err := c.do(ctx, "POST", "/api/v1/commands", body)
	if err != nil {
		return err
	}
	if body.DeviceID == "" {
		return a.bulkSent(ctx, c, resp, o.wait || o.follow)
	}
	return a.commandSent(ctx, c, resp, o)
}

// commandSent prints a new command's id and, when asked, waits for it.
func (a *app) commandSent(ctx context.Context, c *client, resp []byte, o sendOptions) error {
	cmd, err := decodeCommand(resp)
	if err != nil {
		return err
	}
	jsonOut := a.opts.output == "json"
	if jsonOut && !o.wait && !o.follow {
		return writeJSONRaw(a.sys.Stdout, resp)
	}
	if !jsonOut {
		// The id first, so a user who stops waiting can come back to it.
		fmt.Fprintln(a.sys.Stdout, cmd.ID)
	}
	if !o.wait && !o.follow {
		return nil
	}
	// Streamed output would break the JSON document: json shows the end.
	follow := o.follow && !jsonOut
	final, body, err := a.waitCommand(ctx, c, cmd, resp, follow)
	if err != nil {
		return err
	}
	switch {
	case jsonOut:
		err = writeJSONRaw(a.sys.Stdout, body)
	case follow:
		fmt.Fprintln(a.sys.Stdout, resultLine(final))
	default:
		printCommand(a.sys.Stdout, final, a.sys.Now())
	}
	return errors.Join(err, outcome(final))
}

// waitCommand long-polls until cmd is terminal and returns it with the
// hub's last answer. With follow it prints output as it arrives: the hub
// keeps each stream whole (the final result replaces the chunks), so only
// the bytes past those already printed are new.
func (a *app) waitCommand(ctx context.Context, c *client, cmd command, body []byte, follow bool) (command, []byte, error) {
	var printedOut, printedErr int
	path := "/api/v1/commands/" + url.PathEscape(cmd.ID)
	for {
		if follow {
			printedOut = printNew(a.sys.Stdout, cmd.Stdout, printedOut)
			printedErr = printNew(a.sys.Stderr, cmd.Stderr, printedErr)
		}
		if terminal(cmd.State) {
			if follow && printedOut > 0 && cmd.Stdout[printedOut-1] != '\n' {
				fmt.Fprintln(a.sys.Stdout) // keep the result line on a line of its own
			}
			return cmd, body, nil
		}
		q := url.Values{"wait": {pollWait.String()}, "after_version": {strconv.FormatInt(cmd.Version, 10)}}
		b, err := c.poll(ctx, path, q)
		if err != nil {
			if ctx.Err() != nil {
				return cmd, nil, fmt.Errorf("stopped waiting; command %s is %s and goes on (see: fleetctl cmd show %s)", cmd.ID, cmd.State, cmd.ID)
			}
			return cmd, nil, fmt.Errorf("wait for command %s: %w", cmd.ID, err)
		}
		if cmd, err = decodeCommand(b); err != nil {
			return cmd, nil, err
		}
		body = b
	}
}

// outcome is nil for a command that succeeded and an error (exit 1)
// saying how it ended otherwise.
func outcome(c command) error {
	if c.State == "succeeded" {
		return nil
	}
	return fmt.Errorf("command %s on %s %s", c.ID, c.DeviceID, resultLine(c))
}

// bulkSent prints a new bulk's id and, when asked, follows it to the end
// and prints a summary.
func (a *app) bulkSent(ctx context.Context, c *client, resp []byte, wait bool) error {
	st, err := decodeBulk(resp)
	if err != nil {
		return err
	}
	jsonOut := a.opts.output == "json"
	if jsonOut && !wait {
		return writeJSONRaw(a.sys.Stdout, resp)
	}
	if !jsonOut {
		fmt.Fprintln(a.sys.Stdout, st.BulkID)
		fmt.Fprintf(a.sys.Stderr, "Sent to %d device(s).\n", st.Total)
	}
	if !wait {
		return nil
	}
	st, body, err := a.waitBulk(ctx, c, st, resp)
	if err != nil {
		return err
	}
	if jsonOut {
		err = writeJSONRaw(a.sys.Stdout, body)
	} else {
		err = printBulkSummary(a.sys.Stdout, st)
	}
	if bad := st.Total - st.ByState["succeeded"]; bad > 0 {
		err = errors.Join(err, fmt.Errorf("bulk %s: %d of %d device(s) did not succeed", st.BulkID, bad, st.Total))
	}
	return err
}

// bulkPollInterval is how often a waiting bulk send asks for news.
const bulkPollInterval = 500 * time.Millisecond

// waitBulk polls the bulk's status until every command is terminal,
// showing progress on stderr: redrawn in place on a terminal, one line per
// change otherwise (logs stay readable).
func (a *app) waitBulk(ctx context.Context, c *client, st bulkStatus, body []byte) (bulkStatus, []byte, error) {
	tty := isTerminal(a.sys.Stderr)
	last := ""
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		if line := progressLine(st); line != last {
			if tty {
				fmt.Fprintf(a.sys.Stderr, "\r\x1b[K%s", line)
			} else {
				fmt.Fprintln(a.sys.Stderr, line)
			}
			last = line
		}
		if st.Done {
			if tty {
				fmt.Fprintln(a.sys.Stderr)
			}
			return st, body, nil
		}
		t.Reset(bulkPollInterval)
		select {
		case <-ctx.Done():
			return st, nil, fmt.Errorf("stopped waiting; bulk %s goes on (see: fleetctl cmd list --bulk %s)", st.BulkID, st.BulkID)
		case <-t.C:
		}
		b, err := c.get(ctx, "/api/v1/bulk/"+url.PathEscape(st.BulkID), nil)
		if err != nil {
			return st, nil, fmt.Errorf("bulk %s status: %w", st.BulkID, err)
		}
		if st, err = decodeBulk(b); err != nil {
			return st, nil, err
		}
		body = b
	}
}

func (a *app) cmdListCommand() *cobra.Command {
	var device, bulk, state string
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List commands, newest first",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			for k, v := range map[string]string{"device": device, "bulk": bulk, "state": state} {
				if v != "" {
					q.Set(k, v)
				}
			}
			if limit != 0 {
				q.Set("limit", strconv.Itoa(limit))
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			body, err := c.get(cmd.Context(), "/api/v1/commands", q)
			if err != nil {
				return err
			}
			if a.opts.output == "json" {
				return writeJSONRaw(a.sys.Stdout, body)
			}
			var resp struct {
				Commands []command `json:"commands"`
			}
			if err := json.Unmarshal(body, &resp); err != nil {
				return fmt.Errorf("decode response: %w", err)
			}
			return printCommandTable(a.sys.Stdout, resp.Commands, a.sys.Now())
		},
	}
	f := cmd.Flags()
	f.StringVar(&device, "device", "", "only this device's commands")
	f.StringVar(&bulk, "bulk", "", "only the commands of this bulk send")
	f.StringVar(&state, "state", "", "only commands in this state (queued, sent, received, succeeded, failed, timed_out, rejected, expired, canceled)")
	f.IntVar(&limit, "limit", 0, "at most this many (default: the hub's, 100; at most 1000)")
	return cmd
}

func (a *app) cmdShowCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show one command and its result",
		Args:  exactArgs(1, "a command ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.commandCall(cmd.Context(), "GET", args[0], "")
		},
	}
}

func (a *app) cmdCancelCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a command the device has not been sent yet",
		Args:  exactArgs(1, "a command ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.commandCall(cmd.Context(), "POST", args[0], "/cancel")
		},
	}
}

// commandCall runs a request that answers {"command": ...} and prints it.
func (a *app) commandCall(ctx context.Context, method, id, suffix string) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	body, err := c.do(ctx, method, "/api/v1/commands/"+url.PathEscape(id)+suffix, nil)
	if err != nil {
		return err
	}
	if a.opts.output == "json" {
		return writeJSONRaw(a.sys.Stdout, body)
	}
	cmd, err := decodeCommand(body)
	if err != nil {
		return err
	}
	if suffix == "/cancel" {
		fmt.Fprintf(a.sys.Stdout, "Canceled command %s.\n\n", id)
	}
	printCommand(a.sys.Stdout, cmd, a.sys.Now())
	return nil
}

func decodeCommand(body []byte) (command, error) {
	var resp struct {
		Command command `json:"command"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return command{}, fmt.Errorf("decode response: %w", err)
	}
	return resp.Command, nil
}

func decodeBulk(body []byte) (bulkStatus, error) {
	var resp struct {
		Bulk bulkStatus `json:"bulk"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return bulkStatus{}, fmt.Errorf("decode response: %w", err)
	}
	return resp.Bulk, nil
}
