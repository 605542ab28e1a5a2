package main

import (
	"cmp"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// printNew writes the part of s past the first printed bytes and returns
// how many bytes of s are now printed.
func printNew(w io.Writer, s string, printed int) int {
	if len(s) <= printed {
		return printed
	}
	io.WriteString(w, s[printed:])
	return len(s)
}

// resultLine says how a command ended (or where it is), in one line:
// "succeeded (exit 0, 1.2s)", "rejected: not allowed".
func resultLine(c command) string {
	var details []string
	if c.ExitCode != nil {
		details = append(details, "exit "+strconv.FormatInt(*c.ExitCode, 10))
	}
	if c.DurationMs > 0 {
		details = append(details, duration(c.DurationMs))
	}
	s := c.State
	if len(details) > 0 {
		s += " (" + strings.Join(details, ", ") + ")"
	}
	if c.Error != "" {
		s += ": " + c.Error
	}
	return s
}

func duration(ms int64) string { return (time.Duration(ms) * time.Millisecond).String() }

func printCommand(w io.Writer, c command, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "ID:\t%s\n", c.ID)
	if c.BulkID != "" {
		fmt.Fprintf(tw, "Bulk:\t%s\n", c.BulkID)
	}
	fmt.Fprintf(tw, "Device:\t%s\n", c.DeviceID)
	fmt.Fprintf(tw, "Name:\t%s\n", c.Name)
	fmt.Fprintf(tw, "Args:\t%s\n", orDash(formatLabels(c.Args)))
	fmt.Fprintf(tw, "Sent by:\t%s\n", orDash(c.SentBy))
	fmt.Fprintf(tw, "Created:\t%s (%s)\n", c.CreatedAt.Local().Format(time.RFC3339), relTime(&c.CreatedAt, now))
	fmt.Fprintf(tw, "State:\t%s\n", c.State)
	fmt.Fprintf(tw, "Exit code:\t%s\n", exitCode(c))
	if c.DurationMs > 0 {
		fmt.Fprintf(tw, "Duration:\t%s\n", duration(c.DurationMs))
	}
	if c.Error != "" {
		fmt.Fprintf(tw, "Error:\t%s\n", c.Error)
	}
	if c.Truncated {
		fmt.Fprintf(tw, "Output:\ttruncated (it exceeded the device's output cap)\n")
	}
	tw.Flush()
	printStream(w, "stdout", c.Stdout)
	printStream(w, "stderr", c.Stderr)
}

func printStream(w io.Writer, name, s string) {
	if s == "" {
		return
	}
	fmt.Fprintf(w, "--- %s ---\n%s", name, s)
	if !strings.HasSuffix(s, "\n") {
		fmt.Fprintln(w)
	}
}

func exitCode(c command) string {
	if c.ExitCode == nil {
		return "-"
	}
	return strconv.FormatInt(*c.ExitCode, 10)
}

func printCommandTable(w io.Writer, cmds []command, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tDEVICE\tNAME\tSTATE\tEXIT\tCREATED\tSENT BY")
	for _, c := range cmds {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.ID, c.DeviceID, c.Name, c.State, exitCode(c),
			relTime(&c.CreatedAt, now), orDash(c.SentBy))
	}
	return tw.Flush()
}

// printBulkSummary prints one row per device, sorted by device id.
func printBulkSummary(w io.Writer, st bulkStatus) error {
	cmds := slices.SortedFunc(slices.Values(st.Commands), func(a, b command) int { return cmp.Compare(a.DeviceID, b.DeviceID) })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tSTATE\tEXIT\tDURATION\tERROR")
	for _, c := range cmds {
		d := "-"
		if c.DurationMs > 0 {
			d = duration(c.DurationMs)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.DeviceID, c.State, exitCode(c), d, orDash(oneLine(c.Error)))
	}
	return tw.Flush()
}

// oneLine keeps a table row on one line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// progressLine is "3/5 done: queued=1 received=1 succeeded=2 failed=1",
// states in lifecycle order.
func progressLine(st bulkStatus) string {
	done := 0
	var parts []string
	for _, s := range []string{"queued", "sent", "received", "succeeded", "failed", "timed_out", "rejected", "expired", "canceled"} {
		n := st.ByState[s]
		if n == 0 {
			continue
		}
		if terminal(s) {
			done += n
		}
		parts = append(parts, fmt.Sprintf("%s=%d", s, n))
	}
	return fmt.Sprintf("%d/%d done: %s", done, st.Total, strings.Join(parts, " "))
}

// isTerminal reports whether w is a terminal (a character device), where
// a progress line can be redrawn in place.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
