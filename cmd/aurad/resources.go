package main

import (
	"fmt"
	"os"

	"github.com/aura-dev/aura/internal/resources"
)

// loadResources reads the declared resources from the --resources file
// and the resources: section of the --config file, either or both (a
// name declared in both is an error); nil when neither declares any.
func loadResources(file, config string) (*resources.Declarations, error) {
	var fromFile, fromConfig *resources.Declarations
	var err error
	if file != "" {
		if fromFile, err = resources.Load(file); err != nil {
			return nil, fmt.Errorf("--resources: %w", err)
		}
	}
	if config != "" {
		data, err := os.ReadFile(config)
		if err != nil {
			return nil, fmt.Errorf("--config: %w", err)
		}
		if fromConfig, err = resources.ParseSection(data, config); err != nil {
			return nil, fmt.Errorf("--config: %w", err)
		}
	}
	if fromFile == nil || fromConfig == nil {
		if fromFile != nil {
			return fromFile, nil
		}
		return fromConfig, nil
	}
	return resources.Merge(fromFile, fromConfig)
}

// reloadResources reads the declarations again on SIGHUP and ReloadPlans,
// from the files they came from at start; nil when there are none, so a
// reload leaves the (empty) declarations alone.
func reloadResources(file, config string) func() (*resources.Declarations, error) {
	if file == "" && config == "" {
		return nil
	}
	return func() (*resources.Declarations, error) { return loadResources(file, config) }
}
