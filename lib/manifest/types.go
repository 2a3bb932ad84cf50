package manifest

import (
	"github.com/bb-bottles/bb/lib/routes"
	"github.com/bb-bottles/bb/lib/yamlx"
)

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

	// pos says where every field was, for errors found after decoding.
	pos *yamlx.Positions
	// base is the absolute folder relative paths are taken from; home
	// is $HOME, for paths starting with ~/.
	base, home string
	// files maps an agent's name to the file it was defined in, when it
	// is not Source (a directory's NAME.md).
	files map[string]string
	// notPath is set when Source names no file (<stdin>).
	notPath bool
	// sums holds the SHA-256 of every file read, by absolute path, and
	// bottleFiles the file of each bottle of a directory; topFile is a
	// directory's bb.yaml, when it has one.
	sums        map[string]string
	bottleFiles map[string]string
	topFile     string
}

// SourceFile is one file a Manifest was made from, and the SHA-256 of the
// content that was read.
type SourceFile struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
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
// and bb-plan reads it. In it:
//   - bottle.git_user is the effective identity, overlaid field by field
//     (agent over bottle over top level); agent.git_user is always absent;
//   - agent.prompt holds the prompt (prompt_file already read; agent.prompt_file
//     is always absent);
//   - bottle.dockerfile, bottle.workspace and tokens' file are absolute;
//   - bottle.egress.routes is a list, [] when the bottle allows nothing;
//   - source is the absolute path of the file that defines the agent;
//   - files lists every file the Manifest was made from (the index file,
//     or a directory's bb.yaml, agent and bottle files; the prompt_file)
//     with the SHA-256 of what was read, so that bb-launch can tell whether
//     a file in a workspace is one the person trusted. Empty for stdin.
type Manifest struct {
	Kind    string       `json:"kind"`
	Version int          `json:"version"`
	Source  string       `json:"source"`
	Files   []SourceFile `json:"files"`
	Agent   Agent        `json:"agent"`
	Bottle  Bottle       `json:"bottle"`
}

// AgentSummary is one line of bb-manifest --list.
type AgentSummary struct {
	Name     string `json:"name"`
	Template string `json:"template"`
	Bottle   string `json:"bottle"`
}
