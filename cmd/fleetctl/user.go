package main

import (
	"bufio"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// userInfo mirrors the hub's user listing JSON.
type userInfo struct {
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	CreatedAt time.Time `json:"created_at"`
	Disabled  bool      `json:"disabled"`
}

func (a *app) userCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "user",
		Short: "Manage dashboard users (needs an admin token)",
		Args:  cobra.ArbitraryArgs,
		RunE:  groupRun,
	}
	cmd.AddCommand(a.userAddCommand(), a.userListCommand(), a.userDeleteCommand(), a.userPasswdCommand(), a.userRoleCommand())
	return cmd
}

// readPassword reads one line from stdin: the password, without its line
// ending. It comes from stdin, never a flag, so it stays out of shell
// history and ps.
func (a *app) readPassword() (string, error) {
	if a.sys.Stdin == nil {
		return "", errors.New("--password-stdin: no stdin")
	}
	line, err := bufio.NewReader(a.sys.Stdin).ReadString('\n')
	if err != nil && line == "" {
		return "", fmt.Errorf("--password-stdin: read password: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", errors.New("--password-stdin: empty password")
	}
	return pw, nil
}

// generatePassword returns 128 random bits as 26 base32 characters.
func generatePassword() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (Go 1.24+)
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

func (a *app) userAddCommand() *cobra.Command {
	var (
		role  string
		stdin bool
	)
	cmd := &cobra.Command{
		Use:   "add NAME --role viewer|operator|admin [--password-stdin]",
		Short: "Add a dashboard user; without --password-stdin a password is generated and printed once",
		Args:  exactArgs(1, "a user NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if role == "" {
				return usageError{errors.New("--role is required: viewer, operator or admin")}
			}
			pw, generated := generatePassword(), true
			if stdin {
				p, err := a.readPassword()
				if err != nil {
					return err
				}
				pw, generated = p, false
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			body, err := c.do(cmd.Context(), "POST", "/api/v1/users", map[string]string{"name": args[0], "role": role, "password": pw})
			if err != nil {
				return err
			}
			return a.printUserAdded(body, pw, generated)
		},
	}
	cmd.Flags().StringVar(&role, "role", "", "viewer, operator or admin")
	cmd.Flags().BoolVar(&stdin, "password-stdin", false, "read the password from the first line of stdin")
	return cmd
}

func (a *app) printUserAdded(body []byte, pw string, generated bool) error {
	var u userInfo
	if err := json.Unmarshal(body, &u); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	if a.opts.output == "json" {
		out := map[string]string{"name": u.Name, "role": u.Role}
		if generated {
			out["password"] = pw
		}
		return json.NewEncoder(a.sys.Stdout).Encode(out)
	}
	fmt.Fprintf(a.sys.Stdout, "Added user %s with role %s.\n", u.Name, u.Role)
	if generated {
		fmt.Fprintf(a.sys.Stdout, "\nPassword (shown only this once; the hub keeps only its hash):\n\n    %s\n", pw)
	}
	return nil
}

func (a *app) userListCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List dashboard users and their roles",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			body, err := c.do(cmd.Context(), "GET", "/api/v1/users", nil)
			if err != nil {
				return err
			}
			if a.opts.output == "json" {
				return writeJSONRaw(a.sys.Stdout, body)
			}
			var resp struct {
				Users []userInfo `json:"users"`
			}
			if err := json.Unmarshal(body, &resp); err != nil {
				return fmt.Errorf("decode response: %w", err)
			}
			now := a.sys.Now()
			tw := tabwriter.NewWriter(a.sys.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tROLE\tCREATED")
			for _, u := range resp.Users {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", u.Name, u.Role, relTime(&u.CreatedAt, now))
			}
			return tw.Flush()
		},
	}
}

func (a *app) userDeleteCommand() *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a dashboard user and sign them out everywhere",
		Args:  exactArgs(1, "a user NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if !yes && !a.confirm(fmt.Sprintf("Delete user %s? They are signed out at once. [y/N] ", name)) {
				return errors.New("not deleted (confirm with y, or pass --yes)")
			}
			return a.userChange(cmd, "DELETE", "/api/v1/users/"+url.PathEscape(name), nil,
				map[string]string{"deleted": name}, "Deleted user %s.\n", name)
		},
	}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	return cmd
}

func (a *app) userPasswdCommand() *cobra.Command {
	var stdin bool
	cmd := &cobra.Command{
		Use:   "passwd NAME --password-stdin",
		Short: "Set a user's password (signs them out everywhere)",
		Args:  exactArgs(1, "a user NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !stdin {
				return usageError{errors.New("--password-stdin is required (passwords are never taken as arguments)")}
			}
			pw, err := a.readPassword()
			if err != nil {
				return err
			}
			name := args[0]
			return a.userChange(cmd, "POST", "/api/v1/users/"+url.PathEscape(name)+"/password", map[string]string{"password": pw},
				map[string]string{"updated": name}, "Set the password of user %s.\n", name)
		},
	}
	cmd.Flags().BoolVar(&stdin, "password-stdin", false, "read the password from the first line of stdin")
	return cmd
}

func (a *app) userRoleCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "role NAME viewer|operator|admin",
		Short: "Change a user's role (takes effect on their next request)",
		Args:  exactArgs(2, "a user NAME and a ROLE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, role := args[0], args[1]
			return a.userChange(cmd, "POST", "/api/v1/users/"+url.PathEscape(name)+"/role", map[string]string{"role": role},
				map[string]string{"name": name, "role": role}, "User %s now has role %s.\n", name, role)
		},
	}
}

// userChange sends a request that answers without a body and reports it.
func (a *app) userChange(cmd *cobra.Command, method, path string, body any, jsonOut map[string]string, format string, args ...any) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	if _, err := c.do(cmd.Context(), method, path, body); err != nil {
		return err
	}
	if a.opts.output == "json" {
		return json.NewEncoder(a.sys.Stdout).Encode(jsonOut)
	}
	fmt.Fprintf(a.sys.Stdout, format, args...)
	return nil
}
