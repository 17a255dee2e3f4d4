package cli

import (
	"bufio"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/batonhq/baton/auth"
)

// newAuth is "baton auth hash": it prints the auth.tokens_file line for a
// token read from standard input, so that the token never appears in a
// shell history or a process list.
func newAuth() *cobra.Command {
	cmd := &cobra.Command{Use: "auth", Short: "Authentication helpers"}
	var role string
	hash := &cobra.Command{
		Use:     "hash",
		Short:   "Print the auth.tokens_file line for a token read from standard input",
		Example: `  printf %s "$TOKEN" | baton auth hash --role write >> /etc/baton/tokens`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := auth.ParseRole(role)
			if err != nil {
				return fmt.Errorf("--role: %w", err)
			}
			line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
			token := strings.TrimRight(line, "\r\n")
			if token == "" {
				if err != nil {
					return errors.New("no token on standard input")
				}
				return errors.New("the token is empty")
			}
			fmt.Fprintln(cmd.OutOrStdout(), auth.HashLine(r, token))
			return nil
		},
	}
	hash.Flags().StringVar(&role, "role", "read", "role of the token: read or write")
	cmd.AddCommand(hash)
	return cmd
}
