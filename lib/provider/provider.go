// Package provider holds agent providers (a manifest agent's template): the
// built-ins claude, codex and shell, and user plugins found under
// ${XDG_CONFIG_HOME:-~/.config}/bot-bottle/providers/<name>/provider.yaml.
// A provider says how its agent's image is built, where its home is, what
// it runs, and which routes, tokens and placeholders it needs by default.
package provider

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/bb-bottles/bb/lib/routes"
)

// Token is a token a provider needs by default, and the host variable that
// usually holds it.
type Token struct {
	Name string `json:"name"`
	Env  string `json:"env"`
}

// Provider is one agent template.
type Provider struct {
	Name    string `json:"name"`
	Builtin bool   `json:"builtin"`
	// Dir is a user plugin's folder (empty for built-ins).
	Dir     string            `json:"dir,omitempty"`
	Extends string            `json:"extends,omitempty"`
	Home    string            `json:"home"`
	User    string            `json:"user"`
	Command []string          `json:"command"`
	Env     map[string]string `json:"env,omitempty"`
	Routes  []routes.Route    `json:"routes,omitempty"`
	Tokens  []Token           `json:"tokens,omitempty"`
	// Placeholders maps an agent environment variable to the token whose
	// stand-in it holds, for clients that refuse to start without a key.
	Placeholders map[string]string `json:"placeholders,omitempty"`
	// Options are the agent options this provider accepts.
	Options []string `json:"options,omitempty"`
}

// ReservedOptions are agent options only built-in templates may use: they
// reach into the host (forwarding a login) or widen egress (telemetry).
var ReservedOptions = []string{"forward_login", "telemetry"}

// IsReserved reports whether opt is reserved to built-in templates.
func IsReserved(opt string) bool {
	for _, o := range ReservedOptions {
		if o == opt {
			return true
		}
	}
	return false
}

// ErrUnknown is returned by Lookup for a template that is neither a plugin
// nor a built-in.
var ErrUnknown = errors.New("unknown template")

// ConfigDir returns the folder user plugins live in.
func ConfigDir(env func(string) string) string {
	if d := env("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "bot-bottle", "providers")
	}
	if h := env("HOME"); h != "" {
		return filepath.Join(h, ".config", "bot-bottle", "providers")
	}
	return ""
}

// Builtins returns the names of the built-in providers, sorted.
func Builtins() []string {
	names := make([]string, 0, len(builtins))
	for n := range builtins {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Lookup finds a template: a user plugin in pluginDir first (so a person
// can override a built-in), then a built-in.
func Lookup(name, pluginDir string) (*Provider, error) {
	if pluginDir != "" {
		f := filepath.Join(pluginDir, name, "provider.yaml")
		if _, err := os.Stat(f); err == nil {
			return loadPlugin(name, f)
		}
	}
	if b, ok := builtins[name]; ok {
		p := b()
		return &p, nil
	}
	return nil, fmt.Errorf("%w %q (built-ins: %v)", ErrUnknown, name, Builtins())
}
