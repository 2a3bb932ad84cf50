package manifest

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bb-bottles/bb/lib/routes"
	"github.com/bb-bottles/bb/lib/yamlx"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// testEnv is a host environment with a plugin template "mine" that accepts
// the option "model".
func testEnv(t *testing.T) func(string) string {
	t.Helper()
	cfg := t.TempDir()
	plugin := filepath.Join(cfg, "bot-bottle", "providers", "mine")
	if err := os.MkdirAll(plugin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(plugin, "provider.yaml"), []byte("options: [model, forward_login]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"HOME": "/home/u", "XDG_CONFIG_HOME": cfg}
	return func(k string) string { return env[k] }
}

// write puts files into a fresh folder that becomes the working directory,
// so that messages name them as the user would ("bb.yaml:3:5").
func write(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(dir)
	return dir
}

const head = "version: 1\nbottles:\n  b:\n    tokens:\n      API: {env: API_KEY}\n    egress:\n      routes:\n"

// loadErrorTests are manifests with one mistake each, and the error Load
// gives; FuzzLoad starts from them too.
var loadErrorTests = []struct {
	name, yaml, want string
	hint             string // one of the hints, if any
}{
	{"syntax", "agents:\n  a: [\nbottles: {}\n", `bb.yaml:2:3: YAML syntax error: did not find expected ',' or ']'`, ""},
	{"tab indentation", "agents:\n\ta: {}\n", `bb.yaml:2:1: YAML syntax error: found character that cannot start any token`, ""},
	{"not utf-8", "agents:\n  a\xff: {}\n", `bb.yaml:2:4: byte 0xff is not UTF-8`, "save the file as UTF-8"},
	{"control character", "agents: {}\n\x01\n", `bb.yaml:2:1: character U+0001 is not allowed in YAML`, ""},
	{"two documents", "version: 1\n---\nversion: 1\n", `bb.yaml:3:1: a second YAML document is not allowed`, ""},
	{"not a mapping", "- a\n", `bb.yaml:1:1: must be a mapping, not a list`, ""},
	{"unknown top-level field", "version: 1\nagent: {}\n", `bb.yaml:2:1: agent: unknown field "agent"`,
		"the fields allowed here are: agents, bottles, git_user, version"},
	{"unknown route field", head + "        - host: a.example.com\n          hots: b\n",
		`bb.yaml:9:11: bottles.b.egress.routes[0].hots: unknown field "hots"`, ""},
	{"unknown inject field", head + "        - host: a.example.com\n          inject: {header: X, token: API, value: v}\n",
		`bb.yaml:9:43: bottles.b.egress.routes[0].inject.value: unknown field "value"`,
		"the fields allowed here are: format, header, placeholder, token"},
	{"unknown agent field", "agents:\n  a:\n    template: shell\n    bottle: b\n    promt: hi\nbottles: {b: {}}\n",
		`bb.yaml:5:5: agents.a.promt: unknown field "promt"`, ""},
	{"wrong type: port", head + "        - host: a.example.com\n          ports: [\"443\"]\n",
		`bb.yaml:9:19: bottles.b.egress.routes[0].ports[0]: must be an integer, not a string`, ""},
	{"wrong type: routes", head + "          host: a.example.com\n",
		`bb.yaml:8:11: bottles.b.egress.routes: must be a list, not a mapping`, ""},
	{"wrong type: string", "bottles:\n  b:\n    workspace: 2024\n",
		`bb.yaml:3:16: bottles.b.workspace: must be a string, not an integer (2024)`, `put it in quotes to make it a string: "2024"`},
	{"wrong type: bool", head + "        - host: a.example.com\n          websocket: yes\n",
		`bb.yaml:9:22: bottles.b.egress.routes[0].websocket: must be true or false, not a string`, ""},
	{"missing bottle", "bottles:\n  b: {}\n  c: {}\nagents:\n  a:\n    template: shell\n    bottle: nope\n",
		`bb.yaml:7:13: agents.a.bottle: bottle "nope" is not defined`, "defined bottles: b, c"},
	{"no bottle", "agents:\n  a:\n    template: shell\n",
		`bb.yaml:2:3: agents.a.bottle: is required`, "no bottles are defined: add one under bottles:"},
	{"bad host", head + "        - host: api.example.com\n        - host: https://api.example.com/\n",
		`bb.yaml:9:17: bottles.b.egress.routes[1].host: "https://api.example.com/" is not a host name, a *. wildcard or an IP address`, ""},
	{"wildcard of a top-level name", head + "        - host: \"*.com\"\n",
		`bb.yaml:8:17: bottles.b.egress.routes[0].host: "*.com" is not a host name, a *. wildcard or an IP address`, ""},
	{"bad path", head + "        - host: a.example.com\n          paths: [/v1/, v2]\n",
		`bb.yaml:9:25: bottles.b.egress.routes[0].paths[1]: "v2" must start with /`, ""},
	{"route without host", head + "        - methods: [GET]\n",
		`bb.yaml:8:11: bottles.b.egress.routes[0].host: is required`, ""},
	{"undeclared token", head + "        - host: a.example.com\n          inject: {header: Authorization, token: GITHUB}\n",
		`bb.yaml:9:50: bottles.b.egress.routes[0].inject.token: token "GITHUB" is not declared in bottles.b.tokens`,
		"declare it in the bottle: tokens: {GITHUB: {env: VARIABLE}}; declared: API"},
	{"git without repos", head + "        - host: github.com\n          git: {push: [refs/heads/agent/*]}\n",
		`bb.yaml:9:11: bottles.b.egress.routes[0].git.repos: is required: list the repositories the agent may reach, like owner/name`, ""},
	{"git repo not a path", head + "        - host: github.com\n          git:\n            repos: [acme/widgets, widgets]\n",
		`bb.yaml:10:35: bottles.b.egress.routes[0].git.repos[1]: "widgets" is not a repository path like owner/name (no leading or trailing /)`, ""},
	{"git push not a ref", head + "        - host: github.com\n          git:\n            repos: [a/b]\n            push: [agent/*]\n",
		`bb.yaml:11:20: bottles.b.egress.routes[0].git.push[0]: "agent/*" must start with refs/, like refs/heads/agent/*`, ""},
	{"git unknown field", head + "        - host: github.com\n          git: {repos: [a/b], branches: [x]}\n",
		`bb.yaml:9:31: bottles.b.egress.routes[0].git.branches: unknown field "branches"`, "the fields allowed here are: push, repos"},
	{"two git routes for a host", head + "        - host: github.com\n          git: {repos: [a/b]}\n        - host: github.com\n          git: {repos: [a/c]}\n",
		`bb.yaml:11:16: bottles.b.egress.routes[1].git: host github.com already has a git route ([0]): list all its repositories in one`, ""},
	{"unknown template", "bottles: {b: {}}\nagents:\n  a: {template: claud, bottle: b}\n",
		`bb.yaml:3:17: agents.a.template: template "claud" is not defined`, ""},
	{"no template", "bottles: {b: {}}\nagents:\n  a: {bottle: b}\n",
		`bb.yaml:3:3: agents.a.template: is required`, ""},
	{"reserved option on a plugin", "bottles: {b: {}}\nagents:\n  a:\n    template: mine\n    bottle: b\n    options: {model: x, forward_login: true}\n",
		`bb.yaml:6:25: agents.a.options.forward_login: option "forward_login" is reserved to the built-in templates; "mine" is a plugin`, ""},
	{"option not accepted", "bottles: {b: {}}\nagents:\n  a:\n    template: shell\n    bottle: b\n    options:\n      telemetry: false\n",
		`bb.yaml:7:7: agents.a.options.telemetry: template "shell" does not accept option "telemetry"`, `template "shell" accepts no options`},
	{"option not accepted by a built-in", "bottles: {b: {}}\nagents:\n  a:\n    template: claude\n    bottle: b\n    options: {model: opus}\n",
		`bb.yaml:6:15: agents.a.options.model: template "claude" does not accept option "model"`, `template "claude" accepts: forward_login, telemetry`},
	{"token with env and file", "bottles:\n  b:\n    tokens:\n      API: {env: API_KEY, file: ~/.api}\n",
		`bb.yaml:4:12: bottles.b.tokens.API: must set exactly one of env and file`, ""},
	{"token with neither", "bottles:\n  b:\n    tokens:\n      API: {}\n",
		`bb.yaml:4:12: bottles.b.tokens.API: must set exactly one of env and file`, ""},
	{"token named in lower case", "bottles:\n  b:\n    tokens:\n      api: {env: API_KEY}\n",
		`bb.yaml:4:7: bottles.b.tokens.api: "api" is not a token NAME (upper case letters, digits and _, starting with a letter)`, ""},
	{"canary token", "bottles:\n  b:\n    tokens:\n      CANARY: {env: X}\n",
		`bb.yaml:4:7: bottles.b.tokens.CANARY: token name CANARY is reserved for the canary bb plants itself`, ""},
	{"token env not a variable", "bottles:\n  b:\n    tokens:\n      API: {env: $API_KEY}\n",
		`bb.yaml:4:18: bottles.b.tokens.API.env: is not an environment variable name (letters, digits and _): write the name of the variable that holds the token, like GITHUB_TOKEN`, ""},
	{"unsupported version", "version: 2\n", `bb.yaml:1:10: version: unsupported version 2`, "this bb reads manifests of version 1"},
	{"version as a string", "version: \"1\"\n", `bb.yaml:1:10: version: must be an integer, not a string`, ""},
	{"duplicate agent", "agents:\n  a: {}\n  a: {}\n", `bb.yaml:3:3: agents.a: duplicate key "a" (first at line 2)`, ""},
	{"duplicate field", head + "        - host: a.example.com\n          host: b.example.com\n",
		`bb.yaml:9:11: bottles.b.egress.routes[0].host: duplicate key "host" (first at line 8)`, ""},
	{"prompt and prompt_file", "bottles: {b: {}}\nagents:\n  a:\n    template: shell\n    bottle: b\n    prompt: hi\n    prompt_file: p.md\n",
		`bb.yaml:7:18: agents.a.prompt_file: prompt and prompt_file are both set`, ""},
	{"bad agent name", "bottles: {b: {}}\nagents:\n  \"my agent\": {template: shell, bottle: b}\n",
		`bb.yaml:3:3: agents.my agent: "my agent" is not a valid agent name`, ""},
	{"bad email", "git_user: {name: a, email: nobody}\n", `bb.yaml:1:28: git_user.email: "nobody" is not an email address`, ""},
	{"merge key", "bottles:\n  b:\n    <<: {workspace: x}\n", `bb.yaml:3:5: bottles.b: merge keys (<<) are not supported`, ""},
	{"alias cycle", "bottles: {b: {}}\nagents:\n  a: &x\n    template: shell\n    bottle: b\n    options: {self: *x}\n",
		`bb.yaml:6:21: agents.a.options.self.options.self: alias *x refers to itself`, ""},
	{"unknown anchor", "bottles: {b: {}}\nagents:\n  a: {template: shell, bottle: *b}\n",
		`bb.yaml:3:32: alias *b has no anchor &b before it`, ""},
	// The first error in file order wins, whatever the check.
	{"first error first", "agents:\n  a: {template: nope, bottle: b}\nbottles:\n  b:\n    egress: {routes: [{host: A}]}\n",
		`bb.yaml:2:17: agents.a.template: template "nope" is not defined`, ""},
}

func TestLoadErrors(t *testing.T) {
	for _, tt := range loadErrorTests {
		t.Run(tt.name, func(t *testing.T) {
			env := testEnv(t)
			write(t, map[string]string{"bb.yaml": tt.yaml})
			_, err := Load("bb.yaml", env)
			if err == nil {
				t.Fatalf("Load succeeded, want %s", tt.want)
			}
			if diff := cmp.Diff(tt.want, err.Error()); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			var ye *yamlx.Error
			if !errors.As(err, &ye) {
				t.Fatalf("error is %T, not a *yamlx.Error", err)
			}
			if tt.hint != "" && !contains(ye.Hints, tt.hint) {
				t.Errorf("hints %q lack %q", ye.Hints, tt.hint)
			}
		})
	}
}

// TestLoadAliasBomb: aliases of aliases expand to a million values from a
// few lines; the decoder stops counting at MaxValues.
func TestLoadAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("bottles: {b: {}}\nagents:\n  a:\n    template: shell\n    bottle: b\n    options:\n")
	b.WriteString("      l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i <= 6; i++ {
		fmt.Fprintf(&b, "      l%d: &l%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*l%d, ", i-1), 10), ", "))
	}
	write(t, map[string]string{"bb.yaml": b.String()})
	_, err := Load("bb.yaml", testEnv(t))
	var ye *yamlx.Error
	if !errors.As(err, &ye) || !strings.Contains(ye.Msg, "too many values") || ye.Line == 0 {
		t.Errorf("Load = %v, want a positioned error about too many values", err)
	}
}

func TestLoadMissing(t *testing.T) {
	write(t, nil)
	_, err := Load("bb.yaml", testEnv(t))
	if !errors.Is(err, os.ErrNotExist) || err.Error() != "reading manifest bb.yaml: no such file or directory" {
		t.Errorf("Load of a missing file: %v", err)
	}
}

func TestPath(t *testing.T) {
	tests := []struct{ flag, env, want string }{
		{"a.yaml", "b.yaml", "a.yaml"},
		{"", "b.yaml", "b.yaml"},
		{"", "", "bb.yaml"},
	}
	for _, tt := range tests {
		got := Path(tt.flag, func(k string) string {
			if k == "BB_MANIFEST" {
				return tt.env
			}
			return ""
		})
		if got != tt.want {
			t.Errorf("Path(%q) with BB_MANIFEST=%q = %q, want %q", tt.flag, tt.env, got, tt.want)
		}
	}
}

const resolveYAML = `version: 1
git_user: {name: Top, email: top@example.com}
bottles:
  plain:
    egress:
      routes:
        - host: api.example.com
          inject: {header: Authorization, token: API, format: "Bearer {token}"}
    tokens:
      API: {env: API_KEY}
      FILE: {file: secrets/api}
      HOMED: {file: ~/.api}
    dockerfile: Dockerfile
    workspace: ../src
  named:
    git_user: {email: bottle@example.com}
    workspace: /abs/ws
agents:
  top: {template: shell, bottle: plain, prompt: do it}
  over:
    template: claude
    bottle: named
    prompt_file: prompts/over.md
    git_user: {name: Agent}
    options: {telemetry: false}
`

func TestResolve(t *testing.T) {
	dir := write(t, map[string]string{
		"m/bb.yaml":         resolveYAML,
		"m/Dockerfile":      "FROM scratch\n",
		"m/prompts/over.md": "the prompt\n",
	})
	ix, err := Load("m/bb.yaml", testEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	m := filepath.Join(dir, "m")
	want := map[string]*Manifest{
		"top": {Kind: Kind, Version: 1, Source: filepath.Join(m, "bb.yaml"),
			Agent: Agent{Name: "top", Template: "shell", Bottle: "plain", Prompt: "do it"},
			Bottle: Bottle{Name: "plain",
				Egress: Egress{Routes: []routes.Route{{Host: "api.example.com",
					Inject: &routes.Inject{Header: "Authorization", Token: "API", Format: "Bearer {token}"}}}},
				Tokens: map[string]TokenSource{"API": {Env: "API_KEY"},
					"FILE": {File: filepath.Join(m, "secrets/api")}, "HOMED": {File: "/home/u/.api"}},
				GitUser:    &GitUser{Name: "Top", Email: "top@example.com"},
				Dockerfile: filepath.Join(m, "Dockerfile"),
				Workspace:  filepath.Join(dir, "src"),
			}},
		"over": {Kind: Kind, Version: 1, Source: filepath.Join(m, "bb.yaml"),
			Agent: Agent{Name: "over", Template: "claude", Bottle: "named", Prompt: "the prompt\n",
				Options: map[string]any{"telemetry": false}},
			Bottle: Bottle{Name: "named", Egress: Egress{Routes: []routes.Route{}},
				// Field by field: the agent's name, the bottle's email.
				GitUser:   &GitUser{Name: "Agent", Email: "bottle@example.com"},
				Workspace: "/abs/ws"}},
	}
	for name, w := range want {
		got, err := ix.Resolve(name)
		if err != nil {
			t.Fatalf("Resolve(%q): %v", name, err)
		}
		if diff := cmp.Diff(w, got, ignoreFiles); diff != "" {
			t.Errorf("Resolve(%q) (-want +got):\n%s", name, diff)
		}
	}
	// Resolving copies: the index is not changed by it.
	if ix.Agents["over"].PromptFile != "prompts/over.md" || ix.Bottles["plain"].Workspace != "../src" {
		t.Errorf("Resolve changed the index")
	}
}

func TestResolveErrors(t *testing.T) {
	tests := []struct{ name, yaml, agent, want, hint string }{
		{"unknown agent", "bottles: {b: {}}\nagents:\n  x: {template: shell, bottle: b}\n  y: {template: shell, bottle: b}\n",
			"z", `bb.yaml: agent "z" is not defined`, "defined agents: x, y"},
		{"no agents", "", "z", `bb.yaml: agent "z" is not defined`, "no agents are defined: add one under agents:"},
		{"missing prompt file", "bottles: {b: {}}\nagents:\n  x: {template: shell, bottle: b, prompt_file: nope.md}\n",
			"x", `bb.yaml:3:48: agents.x.prompt_file: reading $DIR/nope.md: no such file or directory`, ""},
		{"missing dockerfile", "bottles: {b: {dockerfile: D}}\nagents:\n  x: {template: shell, bottle: b}\n",
			"x", `bb.yaml:1:27: bottles.b.dockerfile: $DIR/D: no such file or directory`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := write(t, map[string]string{"bb.yaml": tt.yaml})
			ix, err := Load("bb.yaml", testEnv(t))
			if err != nil {
				t.Fatal(err)
			}
			_, err = ix.Resolve(tt.agent)
			if err == nil {
				t.Fatal("Resolve succeeded")
			}
			want := strings.ReplaceAll(tt.want, "$DIR", dir)
			if diff := cmp.Diff(want, err.Error()); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			var ye *yamlx.Error
			if !errors.As(err, &ye) || (tt.hint != "" && !contains(ye.Hints, tt.hint)) {
				t.Errorf("hints of %v lack %q", err, tt.hint)
			}
		})
	}
}

func TestDirectory(t *testing.T) {
	dir := write(t, map[string]string{
		"agents/bb.yaml":    "version: 1\ngit_user: {name: Top, email: top@example.com}\n",
		"agents/README.md":  "# not an agent\n",
		"agents/.swp.md":    "ignored",
		"agents/notes.txt":  "ignored",
		"agents/web.yaml":   "egress:\n  routes:\n    - host: example.com\n",
		"agents/writer.md":  "---\ntemplate: shell\nbottle: web\ngit_user: {name: Writer}\n---\n\nWrite a poem.\n\n",
		"agents/filed.md":   "---\ntemplate: shell\nbottle: web\nprompt_file: p.txt\n---\n",
		"agents/p.txt":      "from a file",
		"agents/sub/x.yaml": "not: read",
	})
	ix, err := Load("agents", testEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	wantList := []AgentSummary{{"filed", "shell", "web"}, {"writer", "shell", "web"}}
	if diff := cmp.Diff(wantList, ix.List()); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
	m, err := ix.Resolve("writer")
	if err != nil {
		t.Fatal(err)
	}
	want := &Manifest{Kind: Kind, Version: 1, Source: filepath.Join(dir, "agents", "writer.md"),
		Agent: Agent{Name: "writer", Template: "shell", Bottle: "web", Prompt: "Write a poem."},
		Bottle: Bottle{Name: "web", Egress: Egress{Routes: []routes.Route{{Host: "example.com"}}},
			GitUser: &GitUser{Name: "Writer", Email: "top@example.com"}}}
	if diff := cmp.Diff(want, m, ignoreFiles); diff != "" {
		t.Errorf("Resolve (-want +got):\n%s", diff)
	}
	// Every file the agent was made from, with what was read of it.
	sum := func(f string) string {
		b, _ := os.ReadFile(f)
		return fmt.Sprintf("%x", sha256.Sum256(b))
	}
	var wantFiles []SourceFile
	for _, f := range []string{filepath.Join(dir, "agents", "bb.yaml"), filepath.Join(dir, "agents", "writer.md"),
		filepath.Join(dir, "agents", "web.yaml")} {
		wantFiles = append(wantFiles, SourceFile{Path: f, SHA256: sum(f)})
	}
	if diff := cmp.Diff(wantFiles, m.Files); diff != "" {
		t.Errorf("Files (-want +got):\n%s", diff)
	}
	if m, err := ix.Resolve("filed"); err != nil || len(m.Files) != 4 || !strings.HasSuffix(m.Files[3].Path, "p.txt") {
		t.Errorf("Resolve(filed).Files = %+v, %v: want the prompt file last", m.Files, err)
	}
	if m, err := ix.Resolve("filed"); err != nil || m.Agent.Prompt != "from a file" {
		t.Errorf("Resolve(filed) = %+v, %v", m, err)
	}
}

func TestDirectoryErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"no front matter", map[string]string{"a.md": "just a prompt\n"},
			`d/a.md:1:1: an agent file must start with YAML front matter between --- lines`},
		{"unclosed front matter", map[string]string{"a.md": "---\ntemplate: shell\n"},
			`d/a.md:1:1: the front matter has no closing --- line`},
		{"error in front matter keeps its line", map[string]string{"b.yaml": "", "a.md": "---\ntemplate: shell\nbottle: b\ncolour: red\n---\nhi\n"},
			`d/a.md:4:1: agents.a.colour: unknown field "colour"`},
		{"missing bottle", map[string]string{"a.md": "---\ntemplate: shell\nbottle: nope\n---\nhi\n"},
			`d/a.md:3:9: agents.a.bottle: bottle "nope" is not defined`},
		{"prompt twice", map[string]string{"b.yaml": "", "a.md": "---\ntemplate: shell\nbottle: b\nprompt: hi\n---\nhello\n"},
			`d/a.md:4:9: agents.a.prompt: is set, and the file has a body (the prompt) too`},
		{"top-level field in a bottle", map[string]string{"b.yaml": "version: 1\n"},
			`d/b.yaml:1:1: bottles.b.version: unknown field "version"`},
		{"defined twice", map[string]string{"bb.yaml": "bottles:\n  b: {}\n", "b.yaml": ""},
			`d/b.yaml:1:1: bottles.b: bottle "b" is also defined at d/bb.yaml:2:3`},
		{"error in bb.yaml", map[string]string{"bb.yaml": "version: 3\n"},
			`d/bb.yaml:1:10: version: unsupported version 3`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := map[string]string{}
			for k, v := range tt.files {
				files["d/"+k] = v
			}
			write(t, files)
			_, err := Load("d", testEnv(t))
			if err == nil {
				t.Fatal("Load succeeded")
			}
			if diff := cmp.Diff(tt.want, err.Error()); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
		})
	}
}

// TestExample loads examples/bb.yaml, the file new users copy, and
// resolves every agent in it.
func TestExample(t *testing.T) {
	ix, err := Load(filepath.Join("..", "..", "examples", "bb.yaml"), testEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range ix.List() {
		names = append(names, a.Name)
		m, err := ix.Resolve(a.Name)
		if err != nil {
			t.Errorf("Resolve(%q): %v", a.Name, err)
			continue
		}
		if _, err := json.Marshal(m); err != nil {
			t.Errorf("Manifest of %q: %v", a.Name, err)
		}
	}
	if diff := cmp.Diff([]string{"claude", "codex", "demo"}, names); diff != "" {
		t.Errorf("agents (-want +got):\n%s", diff)
	}
	demo, _ := ix.Resolve("demo")
	if diff := cmp.Diff([]routes.Route{{Host: "allowed.demo.internal"}}, demo.Bottle.Egress.Routes); diff != "" {
		t.Errorf("demo routes (-want +got):\n%s", diff)
	}
}

var ignoreFiles = cmpopts.IgnoreFields(Manifest{}, "Files")
