// Package plan holds the Plan: the complete, inspectable description of one
// bottle's launch that bb-plan prints and bb-launch carries out — its slug,
// canary, label and colour, the egress sidecar's routes and tokens (names
// only, never values), the agent's image, user and environment, and the
// resource names of one backend. Making a plan is pure: it writes nothing
// and contacts no engine.
package plan

import (
	"github.com/bb-bottles/bb/lib/manifest"
	"github.com/bb-bottles/bb/lib/names"
	"github.com/bb-bottles/bb/lib/provider"
	"github.com/bb-bottles/bb/lib/routes"
)

// Kind and Version of the Plan JSON.
const (
	Kind    = "bb.plan"
	Version = 1
)

// Plan is the Plan JSON. Exactly one of Docker, MacOSContainer and Smolvm is
// set: the one Backend names.
type Plan struct {
	// Kind is "bb.plan", Version 1.
	Kind    string `json:"kind"`
	Version int    `json:"version"`
	// Slug names the bottle everywhere: its state folder, containers,
	// networks and VM. A DNS label: <agent>-<4 base32 chars> unless given.
	Slug string `json:"slug"`
	// Backend is docker, macos-container or smolvm.
	Backend string `json:"backend"`
	// Canary is the bottle's canary: 32 random bytes, base64url without
	// padding (43 chars). The agent holds it as BOT_BOTTLE_CANARY; the
	// sidecar knows it as EGRESS_TOKEN_CANARY and blocks it going out. It
	// is a tripwire, not a credential, so it may be in a plan.
	Canary string `json:"canary"`
	// Label is what a person sees (terminal title, bb ls): the agent's name
	// unless given.
	Label string `json:"label"`
	// Color is one of Palette or "#rrggbb" (lower case), picked from the
	// slug unless given.
	Color string `json:"color"`
	// Manifest is the Manifest the plan was made from, as read.
	Manifest manifest.Manifest `json:"manifest"`
	Egress   Egress            `json:"egress"`
	Agent    Agent             `json:"agent"`
	// The backend section. Its key is the backend's name in snake_case
	// (macos-container → macos_container), because every JSON key of ours
	// is snake_case and jq paths like .macos_container.agent_network need no
	// quoting.
	Docker         *Docker         `json:"docker,omitempty"`
	MacOSContainer *MacOSContainer `json:"macos_container,omitempty"`
	Smolvm         *Smolvm         `json:"smolvm,omitempty"`
}

// Egress is the plan of the egress sidecar.
type Egress struct {
	// Routes is the sidecar's routes file: the bottle's routes first, then
	// the provider's default routes for hosts no bottle route covers (the
	// bottle decides about any host it names), then, for an agent with
	// options: {telemetry: true}, the provider's telemetry routes no bottle
	// route covers. Inject.Placeholder is set on
	// every route injecting a token the agent holds a placeholder for.
	Routes []routes.Route `json:"routes"`
	// Tokens are the tokens the sidecar gets, sorted by name: the bottle's,
	// then the provider's defaults the bottle does not declare. Names and
	// where the host keeps them only.
	Tokens []Token `json:"tokens"`
	// SidecarEnv lists the names (never values) of the variables bb-launch
	// gives the sidecar, sorted: EGRESS_TOKEN_<NAME> per token and
	// EGRESS_TOKEN_CANARY.
	SidecarEnv []string `json:"sidecar_env"`
	// Host and Port are where the agent reaches the sidecar (a network
	// alias on the bottle's internal network); ProxyURL is both together.
	Host     string `json:"host"`
	Port     int    `json:"port"`
	ProxyURL string `json:"proxy_url"`
	// Dir is the sidecar's state folder as mounted inside it (the bottle's
	// egress folder on the host); RoutesFile, CADir and LogFile are the
	// bb-egress serve --routes, --ca-dir and --log paths inside the sidecar.
	Dir        string `json:"dir"`
	RoutesFile string `json:"routes_file"`
	CADir      string `json:"ca_dir"`
	LogFile    string `json:"log_file"`
}

// Token is one token the sidecar injects: its NAME (the sidecar's variable
// is EGRESS_TOKEN_<NAME>) and where the host keeps its value — exactly one of
// Env (a host environment variable) and File (a host file, as written in the
// manifest). From says who asked for it: "bottle" or "provider".
type Token struct {
	Name string `json:"name"`
	Env  string `json:"env,omitempty"`
	File string `json:"file,omitempty"`
	From string `json:"from"`
}

// Agent is the plan of the agent's container (or VM).
type Agent struct {
	// Name and Template are the manifest agent's.
	Name     string `json:"name"`
	Template string `json:"template"`
	// Image is the image repository, bb-agent-<template>; bb-launch tags it
	// with a hash of what it is built from.
	Image      string     `json:"image"`
	Dockerfile Dockerfile `json:"dockerfile"`
	// BuildArgs are build arguments for the image. BASE is never set here:
	// it is bb-launch's (a registry image, or the offline base).
	BuildArgs map[string]string `json:"build_args"`
	// Home and User are the provider's: the agent runs as a non-root user.
	Home string `json:"home"`
	User string `json:"user"`
	// Workdir is where the workspace is mounted inside the agent.
	Workdir string `json:"workdir"`
	// Workspace is the host folder mounted at Workdir: the manifest's, or
	// empty for the folder bb-launch runs in.
	Workspace string `json:"workspace"`
	// CAFile is where the bottle's CA certificate is put inside the agent;
	// the CA variables of Env point at it.
	CAFile string `json:"ca_file"`
	// Command is what the agent runs: the provider's command and, for a
	// provider that takes it so (claude, codex), the prompt as its last
	// argument, the initial prompt of the interactive session (after "--"
	// when it starts with "-").
	Command []string `json:"command"`
	// Prompt is the manifest agent's prompt, empty if none. It is also
	// provisioned as ~/.bb/prompt.md (see Files).
	Prompt string `json:"prompt"`
	// GitUser is who the agent commits as (the manifest agent's, else its
	// bottle's), null if none; Env carries it as GIT_AUTHOR_* and
	// GIT_COMMITTER_*.
	GitUser *manifest.GitUser `json:"git_user"`
	// Env is the agent's whole environment as bb-launch sets it. It never
	// holds a token: where a client insists on a key, it holds a
	// placeholder (see Placeholders).
	Env map[string]string `json:"env"`
	// Placeholders maps each Env variable that holds a placeholder to the
	// NAME of the token it stands in for.
	Placeholders map[string]string `json:"placeholders"`
	// Files are the files bb-launch writes in the guest before the agent
	// starts, owned by User, sorted by path (see File): the provider's
	// configuration (claude: ~/.claude/settings.json wiring the status line
	// ~/.claude/bb-statusline.sh, and ~/.claude/skills/README.md; codex:
	// ~/.codex/config.toml), ~/.bb/prompt.md when there is a prompt, and a
	// plugin's files. [] when none. No file holds a token or a placeholder.
	Files []File `json:"files"`
	// Telemetry is the agent's telemetry option: true opened the provider's
	// telemetry routes; false set the provider's switches that turn its
	// telemetry off (claude: CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1).
	Telemetry bool `json:"telemetry"`
	// ForwardLogin is the agent's forward_login option: the intent that
	// bb-launch forward the host's login of the CLI (a built-in's only).
	// bb-plan only records it; it reads nothing of the host.
	ForwardLogin bool `json:"forward_login"`
}

// File is one file provisioned in the guest: path (absolute), mode (octal
// text, "0644" or "0755"), content (text) and source ("provider:<built-in>",
// "plugin:<name>" or "manifest" for the prompt). bb-launch creates missing
// folders and writes the file as the agent's user.
type File = provider.File

// Dockerfile says which Dockerfile builds the agent's image, and why: the
// first of the bottle's dockerfile, the manifest's (a manifest has no
// top-level dockerfile yet, so this step is never taken), a user plugin's
// Dockerfile beside its provider.yaml (or that of a plugin it extends), the
// provider's embedded one.
type Dockerfile struct {
	// Source is "bottle", "manifest", "plugin" or "provider".
	Source string `json:"source"`
	// Path is the Dockerfile on the host (empty for an embedded one) and
	// Context the build context folder (its folder; empty for an embedded
	// one, built with an empty context).
	Path    string `json:"path,omitempty"`
	Context string `json:"context,omitempty"`
	// Builtin names the built-in provider whose embedded Dockerfile is used
	// (provider.BuiltinDockerfile).
	Builtin string `json:"builtin,omitempty"`
	Reason  string `json:"reason"`
	// Considered lists each step of the cascade up to the one taken, as
	// "<source>: <what was found>".
	Considered []string `json:"considered"`
}

// Dockerfile sources.
const (
	FromBottle   = "bottle"
	FromManifest = "manifest"
	FromPlugin   = "plugin"
	FromProvider = "provider"
)

// Limits are a container's or VM's resource limits.
type Limits struct {
	// Memory as written ("4g"), and in bytes.
	Memory      string  `json:"memory"`
	MemoryBytes int64   `json:"memory_bytes"`
	CPUs        float64 `json:"cpus"`
	// PidsLimit caps the number of processes (a fork bomb stays inside).
	PidsLimit int64 `json:"pids_limit"`
	// Disk bounds the container's writable layer (all it writes outside
	// its mounts), as written ("16g"); "" for none. A backend bounds it
	// where its storage can (see Record.DiskLimit).
	Disk string `json:"disk,omitempty"`
}

// Docker is the docker backend's section.
type Docker struct {
	AgentContainer   string `json:"agent_container"`
	SidecarContainer string `json:"sidecar_container"`
	// InternalNetwork joins the agent and the sidecar and has no route out
	// (docker network create --internal); EgressNetwork is the sidecar's
	// way out. The agent is on the internal network only.
	InternalNetwork string `json:"internal_network"`
	EgressNetwork   string `json:"egress_network"`
	// Labels go on every resource of the bottle (so bb ls and cleanup find
	// them); AgentLabels and SidecarLabels are the containers' own: Labels
	// plus bb.role (agent or egress).
	Labels        map[string]string `json:"labels"`
	AgentLabels   map[string]string `json:"agent_labels"`
	SidecarLabels map[string]string `json:"sidecar_labels"`
	Limits        Limits            `json:"limits"`
	SidecarLimits Limits            `json:"sidecar_limits"`
	// SecurityOpt and CapDrop apply to both containers.
	SecurityOpt []string `json:"security_opt"`
	CapDrop     []string `json:"cap_drop"`
}

// MacOSContainer is the macos-container backend's section (Apple's
// container CLI).
type MacOSContainer struct {
	AgentContainer   string `json:"agent_container"`
	SidecarContainer string `json:"sidecar_container"`
	// AgentNetwork is the agent's: "none", no network device at all. The
	// sidecar's socket, relayed into the agent's container, is its one way
	// out (a host-only network would not do: see lib/backend/macoscontainer).
	// SidecarNetwork is the sidecar's way out: the default network.
	AgentNetwork   string            `json:"agent_network"`
	SidecarNetwork string            `json:"sidecar_network"`
	Labels         map[string]string `json:"labels"`
	Limits         Limits            `json:"limits"`
	SidecarLimits  Limits            `json:"sidecar_limits"`
}

// Smolvm is the smolvm backend's section: the agent and the sidecar each
// run in a microVM, on a named network of the bottle's own.
type Smolvm struct {
	VM        string `json:"vm"`
	SidecarVM string `json:"sidecar_vm"`
	// Network is the bottle's smolvm network (machine create --network),
	// which its two machines, and no other, join.
	Network string `json:"network"`
	// SidecarAddress is the sidecar's address there: the network's first,
	// as the sidecar starts first. It is the one address the agent's
	// egress policy allows, and bb.egress in the agent's /etc/hosts.
	SidecarAddress string `json:"sidecar_address"`
	Limits         Limits `json:"limits"`
	SidecarLimits  Limits `json:"sidecar_limits"`
}

// SmolvmSidecarAddress is the first address a smolvm named network leases
// (100.96.k.2 for the lowest free k: smolvm's crates/smolvm-network/src/
// fabric.rs allocate_lease).
const SmolvmSidecarAddress = "100.96.1.2"

// SmolvmNetwork names a bottle's smolvm network.
func SmolvmNetwork(slug string) string { return names.Prefix + slug + "-internal" }
