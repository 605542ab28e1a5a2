package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// device mirrors the hub's device JSON. fleetctl keeps its own copy so the
// CLI does not link the hub (and SQLite) in.
type device struct {
	ID           string            `json:"id"`
	Labels       map[string]string `json:"labels"`
	CreatedAt    time.Time         `json:"created_at"`
	Revoked      bool              `json:"revoked"`
	RevokedAt    *time.Time        `json:"revoked_at"`
	LastSeen     *time.Time        `json:"last_seen"`
	AgentVersion string            `json:"agent_version"`
	AgentBehind  bool              `json:"agent_behind"`
	Transport    string            `json:"transport"`
	Online       bool              `json:"online"`
}

func (a *app) deviceCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "device",
		Short: "Add, list, show, revoke and delete devices",
		Args:  cobra.ArbitraryArgs,
		RunE:  groupRun,
	}
	cmd.AddCommand(a.deviceAddCommand(), a.deviceListCommand(), a.deviceShowCommand(),
		a.deviceRevokeCommand(), a.deviceRotateCommand(), a.deviceDeleteCommand())
	return cmd
}

func (a *app) deviceAddCommand() *cobra.Command {
	var labels []string
	var configOut string
	cmd := &cobra.Command{
		Use:   "add ID",
		Short: "Register a device and print its token and a ready agent config",
		Args:  exactArgs(1, "a device ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			lm, err := parseLabels(labels)
			if err != nil {
				return err
			}
			return a.deviceAdd(cmd, args[0], lm, configOut)
		},
	}
	cmd.Flags().StringArrayVarP(&labels, "label", "l", nil, "label key=value (repeatable)")
	cmd.Flags().StringVar(&configOut, "config-out", "", "write the agent config to this new file (mode 0600) instead of printing it")
	return cmd
}

func (a *app) deviceAdd(cmd *cobra.Command, id string, labels map[string]string, configOut string) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	body, err := c.do(cmd.Context(), "POST", "/api/v1/devices", map[string]any{"id": id, "labels": labels})
	if err != nil {
		return err
	}
	var resp struct {
		Device      device `json:"device"`
		Token       string `json:"token"`
		AgentConfig string `json:"agent_config"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	// The device exists now; a failed write must still show the token, or
	// it is lost for good.
	var writeErr error
	if configOut != "" {
		writeErr = writePrivateFile(configOut, resp.AgentConfig)
	}
	if a.opts.output == "json" {
		return errors.Join(writeJSONRaw(a.sys.Stdout, body), writeErr)
	}
	printAdded(a.sys.Stdout, resp.Device.ID, resp.Token, resp.AgentConfig, configOut, writeErr)
	return writeErr
}

func (a *app) deviceListCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List devices",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			body, err := c.do(cmd.Context(), "GET", "/api/v1/devices", nil)
			if err != nil {
				return err
			}
			if a.opts.output == "json" {
				return writeJSONRaw(a.sys.Stdout, body)
			}
			var resp struct {
				Devices []device `json:"devices"`
			}
			if err := json.Unmarshal(body, &resp); err != nil {
				return fmt.Errorf("decode response: %w", err)
			}
			return printDeviceTable(a.sys.Stdout, resp.Devices, a.sys.Now())
		},
	}
}

func (a *app) deviceShowCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show one device",
		Args:  exactArgs(1, "a device ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.deviceCall(cmd, "GET", args[0], "")
		},
	}
}

func (a *app) deviceRotateCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "rotate ID",
		Short: "Make a device get a new token (now if online, else when it next connects)",
		Long: `Make a device rotate its token. An online agent is told at once: it gets
a new token from the hub, keeps it and reconnects with it; an offline one
when it next connects. The old token stops working once the new one is
used. To lock a device out instead, revoke it.`,
		Args: exactArgs(1, "a device ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.deviceCall(cmd, "POST", args[0], "/rotate")
		},
	}
}

func (a *app) deviceRevokeCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a device's token and close its live connection",
		Args:  exactArgs(1, "a device ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.deviceCall(cmd, "POST", args[0], "/revoke")
		},
	}
}

// deviceCall runs a request that answers {"device": ...} and prints it.
func (a *app) deviceCall(cmd *cobra.Command, method, id, suffix string) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	body, err := c.do(cmd.Context(), method, "/api/v1/devices/"+url.PathEscape(id)+suffix, nil)
	if err != nil {
		return err
	}
	if a.opts.output == "json" {
		return writeJSONRaw(a.sys.Stdout, body)
	}
	var resp struct {
		Device device `json:"device"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	switch suffix {
	case "/revoke":
		fmt.Fprintf(a.sys.Stdout, "Revoked device %s: its token no longer works and any live connection was closed.\n\n", id)
	case "/rotate":
		fmt.Fprintf(a.sys.Stdout, "Asked device %s for a token rotation: %s\n\n", id,
			map[bool]string{true: "it is online and rotates now.", false: "it is offline and rotates when it next connects."}[resp.Device.Online])
	}
	printDevice(a.sys.Stdout, resp.Device, a.sys.Now())
	return nil
}

func (a *app) deviceDeleteCommand() *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "delete ID",
		Short: "Delete a device and its token",
		Args:  exactArgs(1, "a device ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if !yes && !a.confirm(fmt.Sprintf("Delete device %s and its token? This cannot be undone. [y/N] ", id)) {
				return errors.New("not deleted (confirm with y, or pass --yes)")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if _, err := c.do(cmd.Context(), "DELETE", "/api/v1/devices/"+url.PathEscape(id), nil); err != nil {
				return err
			}
			if a.opts.output == "json" {
				return json.NewEncoder(a.sys.Stdout).Encode(map[string]string{"deleted": id})
			}
			fmt.Fprintf(a.sys.Stdout, "Deleted device %s.\n", id)
			return nil
		},
	}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	return cmd
}

// confirm asks on stderr and reads one answer line from stdin.
func (a *app) confirm(prompt string) bool {
	fmt.Fprint(a.sys.Stderr, prompt)
	if a.sys.Stdin == nil {
		return false
	}
	line, _ := bufio.NewReader(a.sys.Stdin).ReadString('\n')
	ans := strings.ToLower(strings.TrimSpace(line))
	return ans == "y" || ans == "yes"
}

// parseLabels turns repeated --label key=value flags into a map; the hub
// checks the keys and values themselves.
func parseLabels(kvs []string) (map[string]string, error) { return parseKV("--label", kvs) }

// parseKV turns repeated key=value values of flag into a map. The value
// may contain "=" and may be empty.
func parseKV(flag string, kvs []string) (map[string]string, error) {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usageError{fmt.Errorf("%s %q: want key=value", flag, kv)}
		}
		if _, dup := m[k]; dup {
			return nil, usageError{fmt.Errorf("%s %s given twice", flag, k)}
		}
		m[k] = v
	}
	return m, nil
}

// writePrivateFile creates path with mode 0600 (it holds a device token)
// and refuses to overwrite an existing file.
func writePrivateFile(path, content string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write agent config: %w", err)
	}
	_, err = f.WriteString(content)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write agent config: %w", err)
	}
	return nil
}
