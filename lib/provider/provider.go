// Package provider holds agent providers (a manifest agent's template): the
// built-ins claude, codex and shell, and user plugins found under
// ${XDG_CONFIG_HOME:-~/.config}/bot-bottle/providers/<name>/provider.yaml.
// A provider says how its agent's image is built, where its home is, what
// it runs, which routes, tokens and placeholders it needs by default, which
// routes it adds when the agent opts into telemetry, and which files it
// provisions in the agent's home (computed at plan time, see Provision).
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
	// TelemetryRoutes are added to the bottle's egress only when the agent
	// opts in (options: {telemetry: true}); NoTelemetryEnv is set in the
	// agent's environment only when it does not, so that the CLI does not
	// knock on hosts the sidecar would deny anyway.
	TelemetryRoutes []routes.Route    `json:"telemetry_routes,omitempty"`
	NoTelemetryEnv  map[string]string `json:"no_telemetry_env,omitempty"`
	// PromptArg says the command takes the agent's prompt as its last
	// argument (the initial prompt of an interactive session).
	PromptArg bool `json:"prompt_arg,omitempty"`
	// Provisioner names the built-in whose generated files (see Provision)
	// the agent gets: the built-in itself, or the one a plugin extends.
	Provisioner string `json:"provisioner,omitempty"`
	// Files are the files a plugin declares (paths start with ~/, the
	// home), after those of the providers it extends.
	Files []File `json:"files,omitempty"`
	// Login, for a built-in, is how the agent works on the person's
	// subscription instead of an API key (options: {forward_login: true}):
	// routes, tokens and placeholders that replace the defaults above.
	Login *Login `json:"login,omitempty"`

	// parent is the provider a plugin extends.
	parent *Provider
}

// Login is a subscription login the sidecar holds: the token a CLI
// documents for headless use, injected where the CLI sends it, with a
// placeholder in the variable the CLI reads it from.
type Login struct {
	Routes       []routes.Route    `json:"routes"`
	Tokens       []Token           `json:"tokens"`
	Placeholders map[string]string `json:"placeholders"`
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

// PluginFile is the name of a plugin's declaration in its folder.
const PluginFile = "provider.yaml"

// Lookup finds a template: a user plugin in pluginDir first (so a person
// can override a built-in), then a built-in. A broken plugin is a
// *yamlx.Error naming its file, line, column and field.
func Lookup(name, pluginDir string) (*Provider, error) {
	return lookup(name, pluginDir, nil)
}

// lookup is Lookup from inside the plugins of chain (the extends being
// followed, outermost first), which it refuses to enter again.
func lookup(name, pluginDir string, chain []string) (*Provider, error) {
	if pluginDir != "" && validName(name) {
		f := filepath.Join(pluginDir, name, PluginFile)
		if _, err := os.Stat(f); err == nil {
			return loadPlugin(name, f, pluginDir, chain)
		}
	}
	return builtin(name)
}

func builtin(name string) (*Provider, error) {
	if b, ok := builtins[name]; ok {
		p := b()
		return &p, nil
	}
	return nil, fmt.Errorf("%w %q (built-ins: %v)", ErrUnknown, name, Builtins())
}
