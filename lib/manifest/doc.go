// Package manifest holds the manifest index (bb.yaml, or a directory of
// agents and bottles), its validation with file, line, column and field in
// every error, and the resolution of one agent into a Manifest.
//
// # Where the index is
//
// bb-manifest reads --file, else $BB_MANIFEST, else ./bb.yaml (see Path).
// The path is a YAML file or a directory.
//
// # The file
//
//	version: 1            # optional; 1 when absent, any other value is refused
//	git_user:             # optional; who agents commit as (see git_user below)
//	  name: bb agent
//	  email: agent@example.invalid
//	bottles:              # NAME: bottle
//	  web: {...}
//	agents:               # NAME: agent
//	  reviewer: {...}
//
// Agent and bottle names are letters, digits, - and _, starting with a
// letter or digit, at most 63 characters.
//
// A bottle:
//
//	egress:
//	  routes: []          # the allow-list; empty or absent allows nothing
//	tokens:               # NAME: {env: VARIABLE} or NAME: {file: PATH}
//	  GITHUB: {env: GITHUB_TOKEN}
//	git_user: {name, email}
//	dockerfile: PATH      # optional; the bottle's own image
//	workspace: PATH       # optional; the host folder the agent works in
//
// A route (the same schema as the sidecar's routes file, see routes.Parse):
//
//	host: api.example.com # required: a lower-case host name, *.example.com or an IP
//	ports: [443]          # default 443 and 80
//	paths: [/v1/]         # path prefixes; default any
//	methods: [GET]        # upper case; default any
//	inject:               # optional: a header the sidecar sets
//	  header: Authorization
//	  token: GITHUB       # a NAME declared in the bottle's tokens
//	  format: "Bearer {token}"  # default "{token}"; "Basic {basic:USER}" is HTTP
//	                      # Basic with USER and the token as password
//	  placeholder: ...    # optional stand-in the agent may hold (8+ characters)
//	websocket: false
//	git:                  # optional: the git gate for this host (one git route a host)
//	  repos: [acme/widgets]       # the only repositories reachable (owner/name, with or without .git)
//	  push: ["refs/heads/agent/*"] # refs the agent may create or fast-forward; absent: read-only
//
// On a git route, the host's git paths are the gate's alone, and its other
// paths are reachable only where paths lists them (none when absent).
//
// A token NAME is upper-case letters, digits and _ (it becomes the
// sidecar's EGRESS_TOKEN_<NAME>); CANARY is reserved. Each token sets
// exactly one of env (a variable of the host's environment) and file (a file
// on the host). Only names and sources are in the manifest: the values are
// read by bb-launch and handed to the sidecar alone.
//
// An agent:
//
//	template: claude      # required: claude, codex, shell, or a plugin in
//	                      # ${XDG_CONFIG_HOME:-~/.config}/bot-bottle/providers/NAME/provider.yaml
//	bottle: web           # required: a bottle of the index
//	prompt: TEXT          # optional; or
//	prompt_file: PATH     # optional, not with prompt: the prompt read from a file
//	git_user: {name, email}
//	options: {}           # only options the template accepts; forward_login and
//	                      # telemetry are reserved to the built-in templates
//
// # A directory
//
// A directory holds NAME.md for each agent and NAME.yaml for each bottle
// (the name is the file's name). An agent file starts with YAML front matter
// between two lines of ---, holding the agent's fields; the rest of the file,
// trimmed of surrounding blank space, is its prompt (a body and prompt or
// prompt_file together are refused). bb.yaml there, optional, holds version
// and git_user, and may hold bottles and agents too; a name defined twice is
// refused. README.md, files starting with a dot, other extensions and
// subdirectories are ignored.
//
// # Validation
//
// Load refuses: YAML syntax errors, a second YAML document, unknown fields
// at any depth, duplicate keys, values of the wrong type (no coercion: an
// unquoted 2024 is not a string), merge keys (<<), anchors that contain
// themselves, more than yamlx.MaxValues values, and every broken rule above.
// Anchors (&name) and aliases (*name) may reuse whole values. Errors are
// *yamlx.Error, "file:line:col: field: message", with hints; when there are
// several, the first in file order is returned.
//
// # Resolving
//
// Resolve returns one agent and its bottle as a Manifest:
//   - git_user is overlaid field by field: each of name and email comes from
//     the agent, else its bottle, else the top level; the result is
//     bottle.git_user (agent.git_user is omitted), absent when none is set;
//   - prompt_file is read into prompt (a regular file only);
//   - dockerfile, workspace, prompt_file and a token's file are made absolute:
//     ~/ is $HOME, and a relative path is taken from the folder of the
//     manifest file (or the manifest directory). dockerfile must exist; an
//     empty workspace stays empty (bb-plan picks the default);
//   - source is the absolute path of the file that defines the agent.
package manifest
