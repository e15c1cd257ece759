// Command aurad is the Aura task execution daemon.
//
//	aurad serve --plans DIR --data DIR --listen ADDR
//	aurad plan check DIR
//	aurad version
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/aura-dev/aura/internal/buildinfo"
)

// version may be set at build time with -ldflags "-X main.version=...";
// otherwise it comes from the build information the go command records
// (module version, VCS commit).
var version string

func main() {
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "aurad: %v\n", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "aurad",
		Short:         "Aura task execution daemon",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(serveCmd(), workerCmd(), planCmd(), configCmd(), tokenCmd(), &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "aurad", buildinfo.Read(version))
		},
	})
	return root
}
