package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/spf13/cobra"
)

// auditEntry mirrors the hub's audit log JSON.
type auditEntry struct {
	ID      int64             `json:"id"`
	At      time.Time         `json:"at"`
	Actor   string            `json:"actor"`
	Action  string            `json:"action"`
	Subject string            `json:"subject"`
	Detail  map[string]string `json:"detail"`
}

// Audit page sizes, as the hub applies them.
const (
	auditDefaultLimit = 100
	auditMaxLimit     = 1000
)

func (a *app) auditCommand() *cobra.Command {
	var (
		limit  int
		before int64
	)
	cmd := &cobra.Command{
		Use:   "audit [--limit N] [--before ID]",
		Short: "Show the audit log, newest first (needs an admin token)",
		Long: `Show the audit log, newest first: who created and revoked enrollment
codes and which devices enrolled with them, from where. A full page ends
with the command that shows the older entries (--before ID).`,
		Example: `  fleetctl audit
  fleetctl audit --limit 20
  fleetctl audit -o json | jq '.entries[] | select(.action == "device.enroll")'`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			if cmd.Flags().Changed("limit") {
				if limit < 1 || limit > auditMaxLimit {
					return usageError{fmt.Errorf("--limit %d: want 1..%d", limit, auditMaxLimit)}
				}
				q.Set("limit", strconv.Itoa(limit))
			}
			if cmd.Flags().Changed("before") {
				if before < 1 {
					return usageError{fmt.Errorf("--before %d: want an entry id (1 or more; see -o json)", before)}
				}
				q.Set("before", strconv.FormatInt(before, 10))
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			body, err := c.get(cmd.Context(), "/api/v1/audit", q)
			if err != nil {
				return err
			}
			if a.opts.output == "json" {
				return writeJSONRaw(a.sys.Stdout, body)
			}
			var resp struct {
				Entries []auditEntry `json:"entries"`
			}
			if err := json.Unmarshal(body, &resp); err != nil {
				return fmt.Errorf("decode response: %w", err)
			}
			if err := printAuditTable(a.sys.Stdout, resp.Entries, a.sys.Now()); err != nil {
				return err
			}
			// A full page: there may be older entries.
			page := limit
			if page == 0 {
				page = auditDefaultLimit
			}
			if len(resp.Entries) > 0 && len(resp.Entries) >= page {
				fmt.Fprintf(a.sys.Stderr, "Older entries: fleetctl audit --before %d\n", resp.Entries[len(resp.Entries)-1].ID)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&limit, "limit", 0, fmt.Sprintf("at most this many entries (default: the hub's, %d; at most %d)", auditDefaultLimit, auditMaxLimit))
	f.Int64Var(&before, "before", 0, "only entries older than the one with this id (to page back)")
	return cmd
}

func printAuditTable(w io.Writer, entries []auditEntry, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "AT\tACTOR\tACTION\tSUBJECT\tDETAIL")
	for _, e := range entries {
		detail := make(map[string]string, len(e.Detail))
		for k, v := range e.Detail {
			detail[safeText(k)] = safeText(v)
		}
		fmt.Fprintf(tw, "%s (%s)\t%s\t%s\t%s\t%s\n", e.At.Local().Format(time.RFC3339), relTime(&e.At, now),
			orDash(safeText(e.Actor)), orDash(safeText(e.Action)), orDash(safeText(e.Subject)), orDash(formatLabels(detail)))
	}
	return tw.Flush()
}

// safeText keeps a table cell on one line and the terminal safe: audit
// values can come from devices (agent_version), so control characters
// (newlines, tabs, escape sequences) are shown escaped, not sent raw.
func safeText(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return s
	}
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}
