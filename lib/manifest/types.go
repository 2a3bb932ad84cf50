// Package manifest holds the manifest index (bb.yaml, or a directory of
// agents and bottles), its validation with file, line and field in every
// error, and the resolution of one agent into a Manifest.
package manifest

import "github.com/bb-bottles/bb/lib/routes"

// Kind and Version of the Manifest JSON that bb-manifest prints.
const (
	Kind    = "bb.manifest"
	Version = 1
)

// ManifestIndex is everything in the manifest files: every agent and bottle.
type ManifestIndex struct {
	Version int                `yaml:"version" json:"version"`
	GitUser *GitUser           `yaml:"git_user,omitempty" json:"git_user,omitempty"`
	Bottles map[string]*Bottle `yaml:"bottles" json:"bottles"`
	Agents  map[string]*Agent  `yaml:"agents" json:"agents"`
	// Source is the file or directory the index was read from.
	Source string `yaml:"-" json:"-"`
}

// GitUser is the identity the agent commits as.
type GitUser struct {
	Name  string `yaml:"name" json:"name"`
	Email string `yaml:"email" json:"email"`
}

// Bottle is where an agent runs: its egress routes, the tokens the sidecar
// injects, and how its image and workspace are made.
type Bottle struct {
	Name       string                 `yaml:"-" json:"name"`
	Egress     Egress                 `yaml:"egress,omitempty" json:"egress"`
	Tokens     map[string]TokenSource `yaml:"tokens,omitempty" json:"tokens,omitempty"`
	GitUser    *GitUser               `yaml:"git_user,omitempty" json:"git_user,omitempty"`
	Dockerfile string                 `yaml:"dockerfile,omitempty" json:"dockerfile,omitempty"`
	Workspace  string                 `yaml:"workspace,omitempty" json:"workspace,omitempty"`
}

// Egress is a bottle's egress policy.
type Egress struct {
	Routes []routes.Route `yaml:"routes,omitempty" json:"routes"`
}

// TokenSource says where the host keeps a token's value: an environment
// variable or a file. The value itself never appears in a manifest or plan.
type TokenSource struct {
	Env  string `yaml:"env,omitempty" json:"env,omitempty"`
	File string `yaml:"file,omitempty" json:"file,omitempty"`
}

// Agent is one agent: which provider template runs it, in which bottle,
// with what prompt.
type Agent struct {
	Name       string         `yaml:"-" json:"name"`
	Template   string         `yaml:"template" json:"template"`
	Bottle     string         `yaml:"bottle" json:"bottle"`
	Prompt     string         `yaml:"prompt,omitempty" json:"prompt,omitempty"`
	PromptFile string         `yaml:"prompt_file,omitempty" json:"prompt_file,omitempty"`
	GitUser    *GitUser       `yaml:"git_user,omitempty" json:"git_user,omitempty"`
	Options    map[string]any `yaml:"options,omitempty" json:"options,omitempty"`
}

// Manifest is one agent and its effective bottle, as bb-manifest prints it
// and bb-plan reads it: the git_user overlay applied (agent over bottle over
// top level), prompt_file read into prompt, relative paths made absolute.
type Manifest struct {
	Kind    string `json:"kind"`
	Version int    `json:"version"`
	Source  string `json:"source"`
	Agent   Agent  `json:"agent"`
	Bottle  Bottle `json:"bottle"`
}
