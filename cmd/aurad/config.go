package main

import (
	"bytes"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Settings come from four places; later ones win: the default, the
// --config file (keys are flag names), AURA_* environment variables, and
// the command line.
const (
	fromDefault = "default"
	fromFile    = "file"
	fromEnv     = "env"
	fromFlag    = "flag"
)

// envName is the variable that sets flag name.
func envName(flag string) string {
	return "AURA_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// applyConfig fills every flag not given on the command line from the
// environment, then from the --config file, and returns where each
// setting came from.
func applyConfig(fs *pflag.FlagSet) (map[string]string, error) {
	sources := map[string]string{}
	var err error
	fs.VisitAll(func(fl *pflag.Flag) {
		if err != nil {
			return
		}
		switch {
		case fl.Changed:
			sources[fl.Name] = fromFlag
		default:
			sources[fl.Name] = fromDefault
			if v, ok := os.LookupEnv(envName(fl.Name)); ok {
				if e := fs.Set(fl.Name, v); e != nil {
					err = fmt.Errorf("%s: %w", envName(fl.Name), e)
					return
				}
				sources[fl.Name] = fromEnv + " " + envName(fl.Name)
			}
		}
	})
	if err != nil {
		return nil, err
	}
	path := ""
	if fl := fs.Lookup("config"); fl != nil {
		path = fl.Value.String()
	}
	if path == "" {
		return sources, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	var doc yaml.MapSlice
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("--config %s: %s", path, yaml.FormatError(err, false, true))
	}
	for _, item := range doc {
		key := fmt.Sprint(item.Key)
		if key == "resources" && isMapping(item.Value) {
			continue // the declarations themselves, read by loadResources
		}
		fl := fs.Lookup(key)
		if fl == nil || key == "config" {
			return nil, fmt.Errorf("%s:%d: unknown setting %q (settings are the flags of `aurad serve`)", path, keyLine(data, key), key)
		}
		if sources[key] != fromDefault {
			continue // the environment or the command line said otherwise
		}
		values, err := flagValues(item.Value)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %s: %w", path, keyLine(data, key), key, err)
		}
		for _, v := range values {
			if err := fs.Set(key, v); err != nil {
				return nil, fmt.Errorf("%s:%d: %s: %w", path, keyLine(data, key), key, err)
			}
		}
		sources[key] = fromFile + " " + path
	}
	return sources, nil
}

// flagValues turns a YAML value into the strings a flag's Set takes: a
// scalar is one value, a list one per item, a map "k=v" per entry.
func flagValues(v any) ([]string, error) {
	switch x := v.(type) {
	case nil:
		return nil, fmt.Errorf("empty value")
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			out = append(out, fmt.Sprint(e))
		}
		return out, nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out := make([]string, 0, len(x))
		for _, k := range keys {
			out = append(out, fmt.Sprintf("%s=%v", k, x[k]))
		}
		return out, nil
	case yaml.MapSlice:
		out := make([]string, 0, len(x))
		for _, e := range x {
			out = append(out, fmt.Sprintf("%v=%v", e.Key, e.Value))
		}
		return out, nil
	}
	return []string{fmt.Sprint(v)}, nil
}

// keyLine finds the line of a top-level key, for error messages.
func keyLine(data []byte, key string) int {
	for i, line := range bytes.Split(data, []byte("\n")) {
		if bytes.HasPrefix(line, []byte(key+":")) || bytes.HasPrefix(line, []byte(`"`+key+`":`)) {
			return i + 1
		}
	}
	return 0
}

// configCmd prints the effective serve configuration and where each value
// came from; the output is itself a valid --config file.
func configCmd() *cobra.Command {
	root := &cobra.Command{Use: "config", Short: "Inspect aurad's configuration"}
	root.AddCommand(&cobra.Command{
		Use:                "print [serve flags]",
		Short:              "Print the effective configuration of `aurad serve` with the source of each value",
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			serve := serveCmd()
			fs := serve.Flags()
			if err := fs.Parse(args); err != nil {
				return err
			}
			sources, err := applyConfig(fs)
			if err != nil {
				return err
			}
			var names []string
			fs.VisitAll(func(fl *pflag.Flag) {
				if fl.Name != "config" && fl.Name != "help" {
					names = append(names, fl.Name)
				}
			})
			sort.Strings(names)
			out := cmd.OutOrStdout()
			config := fs.Lookup("config").Value.String()
			section, err := resourcesSection(config)
			if err != nil {
				return err
			}
			sections := section != nil
			for _, n := range names {
				fl := fs.Lookup(n)
				val := fl.Value.String()
				if sv, ok := fl.Value.(pflag.SliceValue); ok {
					items := make([]string, 0, len(sv.GetSlice()))
					for _, it := range sv.GetSlice() {
						b, _ := yaml.Marshal(it)
						items = append(items, strings.TrimSpace(string(b)))
					}
					val = "[" + strings.Join(items, ", ") + "]"
				} else if fl.Value.Type() == "string" {
					b, _ := yaml.Marshal(val)
					val = strings.TrimSpace(string(b))
				}
				if n == "resources" && sections {
					// One key holds the section below; the file, if any,
					// is a comment beside it.
					if val != `""` {
						fmt.Fprintf(out, "# --resources %s also declares resources (%s)\n", val, sources[n])
					}
					continue
				}
				fmt.Fprintf(out, "%s: %s  # %s\n", n, val, sources[n])
			}
			if sections {
				fmt.Fprintf(out, "# resources declared in %s\n%s", config, section)
			}
			return nil
		},
	})
	return root
}

// resourcesSection returns the resources: mapping of the config file as
// YAML, or nil when it has none, so that config print's output declares
// the same pools.
func resourcesSection(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	var doc yaml.MapSlice
	if err := yaml.UnmarshalWithOptions(data, &doc, yaml.UseOrderedMap()); err != nil {
		return nil, fmt.Errorf("--config %s: %s", path, yaml.FormatError(err, false, true))
	}
	for _, item := range doc {
		if fmt.Sprint(item.Key) == "resources" && isMapping(item.Value) {
			return yaml.Marshal(yaml.MapSlice{item})
		}
	}
	return nil, nil
}

// isMapping reports whether a YAML value is a mapping.
func isMapping(v any) bool {
	switch v.(type) {
	case yaml.MapSlice, map[string]any:
		return true
	}
	return false
}
