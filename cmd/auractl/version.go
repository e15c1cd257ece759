package main

import (
	"encoding/json"
	"fmt"

	"github.com/goccy/go-yaml"
	"github.com/spf13/cobra"

	"github.com/aura-dev/aura/internal/buildinfo"
)

// version may be set at build time with -ldflags "-X main.version=...";
// otherwise it comes from the build information the go command records.
var version string

func versionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print auractl's version (module version, commit, Go)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info := buildinfo.Read(version)
			// The same fields for scripts as the line shows, by name.
			v := struct {
				Version  string `json:"version"`
				Revision string `json:"revision,omitempty"`
				Time     string `json:"time,omitempty"`
				Modified bool   `json:"modified,omitempty"`
				Go       string `json:"go,omitempty"`
			}{info.Version, info.Revision, info.Time, info.Modified, info.Go}
			out := cmd.OutOrStdout()
			switch g.output {
			case "table":
				_, err := fmt.Fprintln(out, "auractl", info)
				return err
			case "json":
				b, err := json.MarshalIndent(v, "", "  ")
				if err != nil {
					return err
				}
				_, err = fmt.Fprintln(out, string(b))
				return err
			case "yaml":
				b, err := yaml.Marshal(v)
				if err != nil {
					return err
				}
				_, err = out.Write(b)
				return err
			}
			return fmt.Errorf("--output: unknown format %q (want table, json or yaml)", g.output)
		},
	}
}
