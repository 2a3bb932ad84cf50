package provider

import (
	"fmt"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"
)

// loadPlugin reads a user plugin's provider.yaml. Issue 5 gives plugins
// their full schema; until then a plugin is known by its file.
func loadPlugin(name, file string) (*Provider, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading plugin %s: %w", file, err)
	}
	var p Provider
	if err := yaml.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("reading plugin %s: %w", file, err)
	}
	p.Name, p.Builtin, p.Dir = name, false, filepath.Dir(file)
	if p.Home == "" {
		p.Home = "/home/agent"
	}
	if p.User == "" {
		p.User = "agent"
	}
	return &p, nil
}
