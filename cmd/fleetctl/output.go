package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// writeJSONRaw prints the hub's JSON answer as is, indented, so scripts see
// every field the hub sends, including ones this fleetctl does not know.
func writeJSONRaw(w io.Writer, body []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, bytes.TrimSpace(body), "", "  "); err != nil {
		return fmt.Errorf("hub sent invalid JSON: %w", err)
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

func printAdded(w io.Writer, id, token, agentConfig, configOut string, writeErr error) {
	fmt.Fprintf(w, "Added device %s.\n\n", id)
	fmt.Fprintf(w, "Device token (shown only this once; the hub keeps only its hash):\n\n    %s\n\n", token)
	if configOut != "" && writeErr == nil {
		fmt.Fprintf(w, "Agent config written to %s (mode 0600).\n", configOut)
		fmt.Fprintf(w, "Copy it to the device as /etc/fleetwire/fleetagent.yaml.\n")
		return
	}
	fmt.Fprintf(w, "Agent config (save on the device as /etc/fleetwire/fleetagent.yaml, mode 0600):\n\n%s", agentConfig)
}

func printDeviceTable(w io.Writer, devices []device, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tONLINE\tLAST SEEN\tLABELS\tAGENT")
	for _, d := range devices {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.ID, onlineState(d), relTime(d.LastSeen, now),
			orDash(formatLabels(d.Labels)), agentText(d))
	}
	return tw.Flush()
}

func printDevice(w io.Writer, d device, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "ID:\t%s\n", d.ID)
	fmt.Fprintf(tw, "Online:\t%s\n", onlineState(d))
	if d.RevokedAt != nil {
		fmt.Fprintf(tw, "Revoked:\t%s (%s)\n", d.RevokedAt.Local().Format(time.RFC3339), relTime(d.RevokedAt, now))
	}
	fmt.Fprintf(tw, "Labels:\t%s\n", orDash(formatLabels(d.Labels)))
	fmt.Fprintf(tw, "Created:\t%s (%s)\n", d.CreatedAt.Local().Format(time.RFC3339), relTime(&d.CreatedAt, now))
	fmt.Fprintf(tw, "Last seen:\t%s\n", relTime(d.LastSeen, now))
	fmt.Fprintf(tw, "Agent:\t%s\n", agentText(d))
	fmt.Fprintf(tw, "Transport:\t%s\n", orDash(d.Transport))
	tw.Flush()
}

// agentText is the agent version, marked when the fleet runs a newer one.
func agentText(d device) string {
	if d.AgentBehind {
		return d.AgentVersion + " (behind)"
	}
	return orDash(d.AgentVersion)
}

// onlineState is "yes", "no" or, since a revoked device cannot connect,
// "revoked".
func onlineState(d device) string {
	switch {
	case d.Revoked:
		return "revoked"
	case d.Online:
		return "yes"
	default:
		return "no"
	}
}

// formatLabels prints labels as k=v pairs sorted by key.
func formatLabels(l map[string]string) string {
	keys := slices.Sorted(maps.Keys(l))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + l[k]
	}
	return strings.Join(parts, ",")
}

// relTime says how long ago t was, in one coarse unit.
func relTime(t *time.Time, now time.Time) string {
	if t == nil || t.IsZero() {
		return "never"
	}
	d := now.Sub(*t)
	switch {
	case d < 0:
		return "just now" // clock skew between hub and operator
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d/time.Hour))
	default:
		return fmt.Sprintf("%dd ago", int(d/(24*time.Hour)))
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
