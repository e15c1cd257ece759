package main

import (
	"bufio"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/aura-dev/aura/internal/auth"
)

// tokenCmd makes and hashes bearer tokens for --auth-tokens files, which
// store only the sha256 of each token.
func tokenCmd() *cobra.Command {
	root := &cobra.Command{Use: "token", Short: "Make bearer tokens for --auth-tokens"}
	root.AddCommand(&cobra.Command{
		Use:   "new",
		Short: "Print a fresh random token and the sha256 that goes in the tokens file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tok, err := auth.NewToken()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "token:  %s\nsha256: %s\n", tok, auth.HashToken(tok))
			return nil
		},
	}, &cobra.Command{
		Use:   "hash",
		Short: "Read a token on stdin and print its sha256 for the tokens file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
			tok := strings.TrimRight(line, "\r\n")
			if tok == "" {
				if err != nil {
					return fmt.Errorf("reading the token from stdin: %w", err)
				}
				return errors.New("empty token on stdin")
			}
			fmt.Fprintln(cmd.OutOrStdout(), auth.HashToken(tok))
			return nil
		},
	})
	return root
}
