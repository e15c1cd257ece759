package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/aura-dev/aura/internal/buildinfo"
)

// version may be set at build time with -ldflags "-X main.version=...";
// otherwise it comes from the build information the go command records.
var version string

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print auractl's version (module version, commit, Go)",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "auractl", buildinfo.Read(version))
		},
	}
}
