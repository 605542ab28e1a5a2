package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// enrollment mirrors the hub's enrollment code JSON (see device for why a
// copy).
type enrollment struct {
	ID         string            `json:"id"`
	Labels     map[string]string `json:"labels"`
	Uses       int               `json:"uses"`
	UsesLeft   int               `json:"uses_left"`
	CreatedBy  string            `json:"created_by"`
	CreatedAt  time.Time         `json:"created_at"`
	ExpiresAt  time.Time         `json:"expires_at"`
	RevokedAt  *time.Time        `json:"revoked_at"`
	LastUsedAt *time.Time        `json:"last_used_at"`
	State      string            `json:"state"` // active, expired, used_up, revoked
}

func (a *app) enrollCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "enroll",
		Short: "Create, list and revoke enrollment codes that let devices register themselves (needs an admin token)",
		Long: `An enrollment code lets a device register itself: run the printed
fleetagent command on the device and it trades the code for its own token.
A code works for a number of devices (--uses) until it expires (--ttl) or
is revoked. Devices enrolled with it get its labels.`,
		Args: cobra.ArbitraryArgs,
		RunE: groupRun,
	}
	cmd.AddCommand(a.enrollCreateCommand(), a.enrollListCommand(), a.enrollRevokeCommand())
	return cmd
}

func (a *app) enrollCreateCommand() *cobra.Command {
	var (
		labels []string
		uses   int
		ttl    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "create [--label key=value ...] [--uses N] [--ttl DURATION]",
		Short: "Create an enrollment code; prints it once, with the command to run on the device",
		Long: `Create an enrollment code and print it (shown only this once) with the
fleetagent command to run on the device. The code enrolls up to --uses
devices until --ttl has passed; the devices get the --label labels.`,
		Example: `  fleetctl enroll create --label site=home --label room=kitchen
  fleetctl enroll create --label site=lab --uses 20 --ttl 24h`,
		Args: exactArgs(0, "no arguments (labels go in --label key=value)"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			lm, err := parseLabels(labels)
			if err != nil {
				return err
			}
			if uses < 1 {
				return usageError{fmt.Errorf("--uses %d: want at least 1 (the number of devices the code may enroll)", uses)}
			}
			body := map[string]any{"labels": lm, "uses": uses}
			if cmd.Flags().Changed("ttl") {
				if ttl <= 0 {
					return usageError{fmt.Errorf("--ttl %s: want a positive duration such as 30m or 24h", ttl)}
				}
				body["ttl"] = ttl.String()
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			resp, err := c.do(cmd.Context(), "POST", "/api/v1/enrollments", body)
			if err != nil {
				return err
			}
			if a.opts.output == "json" {
				return writeJSONRaw(a.sys.Stdout, resp)
			}
			var created struct {
				Enrollment enrollment `json:"enrollment"`
				Code       string     `json:"code"`
				Command    string     `json:"command"`
			}
			if err := json.Unmarshal(resp, &created); err != nil {
				return fmt.Errorf("decode response: %w", err)
			}
			printEnrollCreated(a.sys.Stdout, created.Enrollment, created.Code, created.Command, a.sys.Now())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&labels, "label", "l", nil, "label key=value for the devices enrolled with this code (repeatable)")
	f.IntVar(&uses, "uses", 1, "how many devices the code may enroll")
	f.DurationVar(&ttl, "ttl", 0, "how long the code works (default: the hub's, 1h; at most 720h)")
	return cmd
}

func printEnrollCreated(w io.Writer, e enrollment, code, command string, now time.Time) {
	fmt.Fprintf(w, "Created enrollment code %s.\n\n", e.ID)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Uses:\t%s\n", plural(e.Uses, "device", "devices"))
	fmt.Fprintf(tw, "Expires:\t%s (%s)\n", e.ExpiresAt.Local().Format(time.RFC3339), relTimeEither(e.ExpiresAt, now))
	fmt.Fprintf(tw, "Labels:\t%s\n", orDash(formatLabels(e.Labels)))
	tw.Flush()
	fmt.Fprintf(w, "\nCode (shown only this once; the hub keeps only its hash):\n\n    %s\n\n", code)
	fmt.Fprintf(w, "On the device, run (copy the whole line):\n\n    %s\n", command)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func (a *app) enrollListCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List enrollment codes, newest first (their ids and state; never the codes)",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			body, err := c.do(cmd.Context(), "GET", "/api/v1/enrollments", nil)
			if err != nil {
				return err
			}
			if a.opts.output == "json" {
				return writeJSONRaw(a.sys.Stdout, body)
			}
			var resp struct {
				Enrollments []enrollment `json:"enrollments"`
			}
			if err := json.Unmarshal(body, &resp); err != nil {
				return fmt.Errorf("decode response: %w", err)
			}
			now := a.sys.Now()
			tw := tabwriter.NewWriter(a.sys.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATE\tUSES LEFT\tLABELS\tEXPIRES\tCREATED BY")
			for _, e := range resp.Enrollments {
				fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%s\t%s\n", e.ID, e.State, e.UsesLeft, e.Uses,
					orDash(formatLabels(e.Labels)), relTimeEither(e.ExpiresAt, now), orDash(e.CreatedBy))
			}
			return tw.Flush()
		},
	}
}

func (a *app) enrollRevokeCommand() *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke an enrollment code; devices already enrolled with it keep working",
		Args:  exactArgs(1, "an enrollment code ID (see fleetctl enroll list)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if !yes && !a.confirm(fmt.Sprintf("Revoke enrollment code %s? No more devices can enroll with it. [y/N] ", id)) {
				return errors.New("not revoked (confirm with y, or pass --yes)")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if _, err := c.do(cmd.Context(), "POST", "/api/v1/enrollments/"+url.PathEscape(id)+"/revoke", nil); err != nil {
				return err
			}
			if a.opts.output == "json" {
				return json.NewEncoder(a.sys.Stdout).Encode(map[string]string{"revoked": id})
			}
			fmt.Fprintf(a.sys.Stdout, "Revoked enrollment code %s. Devices already enrolled with it keep working (fleetctl device revoke ID stops one).\n", id)
			return nil
		},
	}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	return cmd
}

// relTimeEither is relTime for times that may lie ahead too: "in 59m" for
// the future, "5m ago" for the past.
func relTimeEither(t time.Time, now time.Time) string {
	if t.IsZero() || !t.After(now) {
		return relTime(&t, now)
	}
	// Mirror t into the past so relTime picks the unit.
	past := now.Add(-t.Sub(now))
	return "in " + strings.TrimSuffix(relTime(&past, now), " ago")
}
