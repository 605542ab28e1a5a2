package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// apiTokenInfo mirrors the hub's API token listing JSON.
type apiTokenInfo struct {
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	CreatedAt time.Time `json:"created_at"`
}

func (a *app) tokenCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create, list and delete API tokens (needs an admin token)",
		Args:  cobra.ArbitraryArgs,
		RunE:  groupRun,
	}
	cmd.AddCommand(a.tokenCreateCommand(), a.tokenListCommand(), a.tokenDeleteCommand())
	return cmd
}

func (a *app) tokenCreateCommand() *cobra.Command {
	var role string
	cmd := &cobra.Command{
		Use:   "create NAME --role viewer|operator|admin",
		Short: "Create an API token and print it (shown only this once)",
		Long: `Create an API token. Roles: viewer reads everything; operator also sends
and cancels commands; admin also manages devices and tokens.`,
		Args: exactArgs(1, "a token NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if role == "" {
				return usageError{errors.New("--role is required: viewer, operator or admin")}
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			body, err := c.do(cmd.Context(), "POST", "/api/v1/tokens", map[string]string{"name": args[0], "role": role})
			if err != nil {
				return err
			}
			if a.opts.output == "json" {
				return writeJSONRaw(a.sys.Stdout, body)
			}
			var resp struct {
				Name  string `json:"name"`
				Role  string `json:"role"`
				Token string `json:"token"`
			}
			if err := json.Unmarshal(body, &resp); err != nil {
				return fmt.Errorf("decode response: %w", err)
			}
			fmt.Fprintf(a.sys.Stdout, "Created API token %s with role %s.\n\n", resp.Name, resp.Role)
			fmt.Fprintf(a.sys.Stdout, "Token (shown only this once; the hub keeps only its hash):\n\n    %s\n", resp.Token)
			return nil
		},
	}
	cmd.Flags().StringVar(&role, "role", "", "viewer, operator or admin")
	return cmd
}

func (a *app) tokenListCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List API tokens (names and roles; never the tokens)",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			body, err := c.do(cmd.Context(), "GET", "/api/v1/tokens", nil)
			if err != nil {
				return err
			}
			if a.opts.output == "json" {
				return writeJSONRaw(a.sys.Stdout, body)
			}
			var resp struct {
				Tokens []apiTokenInfo `json:"tokens"`
			}
			if err := json.Unmarshal(body, &resp); err != nil {
				return fmt.Errorf("decode response: %w", err)
			}
			now := a.sys.Now()
			tw := tabwriter.NewWriter(a.sys.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tROLE\tCREATED")
			for _, t := range resp.Tokens {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", t.Name, t.Role, relTime(&t.CreatedAt, now))
			}
			return tw.Flush()
		},
	}
}

func (a *app) tokenDeleteCommand() *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete an API token; whoever uses it is locked out at once",
		Args:  exactArgs(1, "a token NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if !yes && !a.confirm(fmt.Sprintf("Delete API token %s? Whoever uses it loses access. [y/N] ", name)) {
				return errors.New("not deleted (confirm with y, or pass --yes)")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if _, err := c.do(cmd.Context(), "DELETE", "/api/v1/tokens/"+url.PathEscape(name), nil); err != nil {
				return err
			}
			if a.opts.output == "json" {
				return json.NewEncoder(a.sys.Stdout).Encode(map[string]string{"deleted": name})
			}
			fmt.Fprintf(a.sys.Stdout, "Deleted API token %s.\n", name)
			return nil
		},
	}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	return cmd
}
