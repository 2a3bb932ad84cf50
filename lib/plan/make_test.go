package plan

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/bb-bottles/bb/lib/manifest"
	"github.com/bb-bottles/bb/lib/names"
	"github.com/bb-bottles/bb/lib/routes"
)

const testCanary = "c2VjcmV0LWNhbmFyeS1mb3ItdGVzdHMtb25seS0xMjM"

func testManifest(template string) *manifest.Manifest {
	return &manifest.Manifest{Kind: manifest.Kind, Version: manifest.Version, Source: "/src/bb.yaml", Files: []manifest.SourceFile{},
		Agent: manifest.Agent{Name: "demo", Template: template, Bottle: "dev", Prompt: "fix the tests"},
		Bottle: manifest.Bottle{Name: "dev",
			Egress: manifest.Egress{Routes: []routes.Route{{Host: "github.com",
				Inject: &routes.Inject{Header: "Authorization", Token: "GITHUB", Format: "Bearer {token}"}}}},
			Tokens: map[string]manifest.TokenSource{"GITHUB": {Env: "GITHUB_TOKEN"}}}}
}

func testOptions() Options { return Options{Slug: "demo-abcd", Canary: testCanary} }

func TestNewEgress(t *testing.T) {
	ph := Placeholder("demo-abcd", "ANTHROPIC")
	github := routes.Route{Host: "github.com",
		Inject: &routes.Inject{Header: "Authorization", Token: "GITHUB", Format: "Bearer {token}"}}
	anthropic := routes.Route{Host: "api.anthropic.com",
		Inject: &routes.Inject{Header: "x-api-key", Token: "ANTHROPIC", Placeholder: ph}}
	tests := []struct {
		name       string
		edit       func(*manifest.Manifest)
		wantRoutes []routes.Route
		wantTokens []Token
		wantEnv    string // the agent's ANTHROPIC_API_KEY
	}{{
		name:       "provider defaults added",
		wantRoutes: []routes.Route{github, anthropic},
		wantTokens: []Token{{Name: "ANTHROPIC", Env: "ANTHROPIC_API_KEY", From: "provider"},
			{Name: "GITHUB", Env: "GITHUB_TOKEN", From: "bottle"}},
		wantEnv: ph,
	}, {
		name: "bottle route for the host wins",
		edit: func(m *manifest.Manifest) {
			m.Bottle.Egress.Routes = append(m.Bottle.Egress.Routes, routes.Route{Host: "api.anthropic.com", Paths: []string{"/v1/"},
				Inject: &routes.Inject{Header: "x-api-key", Token: "ANTHROPIC"}})
		},
		wantRoutes: []routes.Route{github, {Host: "api.anthropic.com", Paths: []string{"/v1/"},
			Inject: &routes.Inject{Header: "x-api-key", Token: "ANTHROPIC", Placeholder: ph}}},
		wantTokens: []Token{{Name: "ANTHROPIC", Env: "ANTHROPIC_API_KEY", From: "provider"},
			{Name: "GITHUB", Env: "GITHUB_TOKEN", From: "bottle"}},
		wantEnv: ph,
	}, {
		name: "bottle wildcard covers the host",
		edit: func(m *manifest.Manifest) {
			m.Bottle.Egress.Routes = append(m.Bottle.Egress.Routes, routes.Route{Host: "*.anthropic.com", Methods: []string{"GET"}})
		},
		wantRoutes: []routes.Route{github, {Host: "*.anthropic.com", Methods: []string{"GET"}}},
		wantTokens: []Token{{Name: "ANTHROPIC", Env: "ANTHROPIC_API_KEY", From: "provider"},
			{Name: "GITHUB", Env: "GITHUB_TOKEN", From: "bottle"}},
		wantEnv: ph,
	}, {
		name: "bottle placeholder and token win",
		edit: func(m *manifest.Manifest) {
			m.Bottle.Egress.Routes = append(m.Bottle.Egress.Routes, routes.Route{Host: "api.anthropic.com",
				Inject: &routes.Inject{Header: "x-api-key", Token: "ANTHROPIC", Placeholder: "sk-ant-not-a-real-key"}})
			m.Bottle.Tokens["ANTHROPIC"] = manifest.TokenSource{File: "~/.config/anthropic/key"}
		},
		wantRoutes: []routes.Route{github, {Host: "api.anthropic.com",
			Inject: &routes.Inject{Header: "x-api-key", Token: "ANTHROPIC", Placeholder: "sk-ant-not-a-real-key"}}},
		wantTokens: []Token{{Name: "ANTHROPIC", File: "~/.config/anthropic/key", From: "bottle"},
			{Name: "GITHUB", Env: "GITHUB_TOKEN", From: "bottle"}},
		wantEnv: "sk-ant-not-a-real-key",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := testManifest("claude")
			if tt.edit != nil {
				tt.edit(m)
			}
			before, _ := json.Marshal(m)
			p, err := New(m, testOptions())
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantRoutes, p.Egress.Routes); diff != "" {
				t.Errorf("routes (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantTokens, p.Egress.Tokens); diff != "" {
				t.Errorf("tokens (-want +got):\n%s", diff)
			}
			wantSidecar := []string{"EGRESS_TOKEN_ANTHROPIC", "EGRESS_TOKEN_CANARY", "EGRESS_TOKEN_GITHUB"}
			if diff := cmp.Diff(wantSidecar, p.Egress.SidecarEnv); diff != "" {
				t.Errorf("sidecar_env (-want +got):\n%s", diff)
			}
			if got := p.Agent.Env["ANTHROPIC_API_KEY"]; got != tt.wantEnv {
				t.Errorf("agent's ANTHROPIC_API_KEY = %q, want %q", got, tt.wantEnv)
			}
			// The plan's manifest is the manifest as read: no placeholder
			// filled into it, nothing shared with the plan's routes.
			after, _ := json.Marshal(p.Manifest)
			if string(before) != string(after) {
				t.Errorf("the manifest changed:\n%s\n%s", before, after)
			}
		})
	}
}

func TestNewAgent(t *testing.T) {
	p, err := New(testManifest("codex"), Options{Slug: "demo-abcd", Canary: testCanary, Backend: names.Smolvm})
	if err != nil {
		t.Fatal(err)
	}
	ca := "/etc/bb/ca.pem"
	proxy := "http://bb.egress:3128"
	ph := Placeholder("demo-abcd", "OPENAI")
	want := Agent{Name: "demo", Template: "codex", Image: "bb-agent-codex",
		Dockerfile: Dockerfile{Source: "provider", Builtin: "codex", Reason: "the built-in provider codex's own Dockerfile",
			Considered: []string{"bottle: not set (bottle dev names no dockerfile)",
				"manifest: not set (a manifest has no top-level dockerfile)",
				"plugin: none (template codex is a built-in)",
				"provider: the built-in codex's embedded Dockerfile"}},
		BuildArgs: map[string]string{}, Home: "/home/agent", User: "agent", Workdir: "/workspace", CAFile: ca,
		// codex takes the prompt as the initial prompt of its session.
		Command: []string{"codex", "--dangerously-bypass-approvals-and-sandbox", "fix the tests"}, Prompt: "fix the tests",
		Files: []File{
			{Path: "/home/agent/.bb/prompt.md", Mode: "0644", Content: "fix the tests", Source: "manifest"},
			{Path: "/home/agent/.codex/config.toml", Mode: "0644", Source: "provider:codex"},
		},
		Env: map[string]string{"HOME": "/home/agent", "BOT_BOTTLE_CANARY": testCanary, "OPENAI_API_KEY": ph,
			"HTTP_PROXY": proxy, "HTTPS_PROXY": proxy, "http_proxy": proxy, "https_proxy": proxy,
			"ALL_PROXY": proxy, "all_proxy": proxy, "NO_PROXY": NoProxy, "no_proxy": NoProxy,
			"NODE_EXTRA_CA_CERTS": ca, "REQUESTS_CA_BUNDLE": ca, "SSL_CERT_FILE": ca, "CURL_CA_BUNDLE": ca, "GIT_SSL_CAINFO": ca},
		Placeholders: map[string]string{"OPENAI_API_KEY": "OPENAI"}}
	// The files' content is TestProvisionedFiles'.
	if diff := cmp.Diff(want, p.Agent, cmpopts.IgnoreFields(File{}, "Content")); diff != "" {
		t.Errorf("agent (-want +got):\n%s", diff)
	}
	if p.Docker != nil || p.MacOSContainer != nil || p.Smolvm == nil {
		t.Errorf("backend sections: docker %v, macos_container %v, smolvm %v; want smolvm only", p.Docker, p.MacOSContainer, p.Smolvm)
	}
	if p.Smolvm.VM != "bot-bottle-demo-abcd" || p.Smolvm.Limits.MemoryBytes != 4<<30 {
		t.Errorf("smolvm = %+v", p.Smolvm)
	}
}

func TestNewGitUser(t *testing.T) {
	m := testManifest("shell")
	m.Bottle.GitUser = &manifest.GitUser{Name: "Bottle", Email: "bottle@example.com"}
	p, err := New(m, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if p.Agent.GitUser.Name != "Bottle" || p.Agent.Env["GIT_AUTHOR_EMAIL"] != "bottle@example.com" || p.Agent.Env["GIT_COMMITTER_NAME"] != "Bottle" {
		t.Errorf("bottle's git_user: %+v, env %v", p.Agent.GitUser, p.Agent.Env)
	}
	m.Agent.GitUser = &manifest.GitUser{Name: "Agent", Email: "agent@example.com"}
	if p, err = New(m, testOptions()); err != nil {
		t.Fatal(err)
	}
	if p.Agent.GitUser.Name != "Agent" || p.Agent.Env["GIT_AUTHOR_NAME"] != "Agent" {
		t.Errorf("agent's git_user over the bottle's: %+v", p.Agent.GitUser)
	}
}

// notSet is what the cascade says of the steps before the plugin's when the
// bottle names no dockerfile.
func notSet() []string {
	return []string{"bottle: not set (bottle dev names no dockerfile)",
		"manifest: not set (a manifest has no top-level dockerfile)"}
}

func TestNewDockerfile(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"mine/provider.yaml", "mine/Dockerfile", "lazy/provider.yaml"} {
		f = filepath.Join(dir, f)
		os.MkdirAll(filepath.Dir(f), 0o755)
		text := "FROM scratch\n"
		if strings.HasSuffix(f, ".yaml") {
			// A plugin may not point its agent past the proxy.
			text = "extends: claude\ncommand: [mine]\nenv: {HTTPS_PROXY: '', NO_PROXY: '*', EDITOR: vi}\n"
		}
		if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name       string
		template   string
		dockerfile string
		want       Dockerfile
	}{
		{name: "bottle", template: "claude", dockerfile: "/src/agent/Dockerfile",
			want: Dockerfile{Source: "bottle", Path: "/src/agent/Dockerfile", Context: "/src/agent", Reason: "bottle dev names a dockerfile",
				Considered: []string{"bottle: /src/agent/Dockerfile"}}},
		{name: "bottle over plugin", template: "mine", dockerfile: "/src/agent/Dockerfile",
			want: Dockerfile{Source: "bottle", Path: "/src/agent/Dockerfile", Context: "/src/agent", Reason: "bottle dev names a dockerfile",
				Considered: []string{"bottle: /src/agent/Dockerfile"}}},
		{name: "plugin", template: "mine",
			want: Dockerfile{Source: "plugin", Path: filepath.Join(dir, "mine", "Dockerfile"), Context: filepath.Join(dir, "mine"),
				Reason:     "the plugin mine's Dockerfile beside its provider.yaml",
				Considered: append(notSet(), "plugin: "+filepath.Join(dir, "mine", "Dockerfile"))}},
		{name: "plugin without one", template: "lazy",
			want: Dockerfile{Source: "provider", Builtin: "claude",
				Reason: "the plugin lazy has no " + filepath.Join(dir, "lazy", "Dockerfile") + ": the built-in provider claude's",
				Considered: append(notSet(), "plugin: none (no plugin in the chain of lazy has a Dockerfile)",
					"provider: the built-in claude's embedded Dockerfile")}},
		{name: "provider", template: "shell",
			want: Dockerfile{Source: "provider", Builtin: "shell", Reason: "the built-in provider shell's own Dockerfile",
				Considered: append(notSet(), "plugin: none (template shell is a built-in)",
					"provider: the built-in shell's embedded Dockerfile")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := testManifest(tt.template)
			m.Bottle.Dockerfile = tt.dockerfile
			o := testOptions()
			o.PluginDir = dir
			p, err := New(m, o)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, p.Agent.Dockerfile); diff != "" {
				t.Errorf("dockerfile (-want +got):\n%s", diff)
			}
			if p.Agent.Image != "bb-agent-"+tt.template {
				t.Errorf("image %q", p.Agent.Image)
			}
			env := p.Agent.Env
			if env["HTTPS_PROXY"] != "http://bb.egress:3128" || env["NO_PROXY"] != NoProxy {
				t.Errorf("a plugin's env reached past the proxy: HTTPS_PROXY=%q NO_PROXY=%q", env["HTTPS_PROXY"], env["NO_PROXY"])
			}
			if strings.HasPrefix(tt.template, "mine") && env["EDITOR"] != "vi" {
				t.Errorf("the plugin's own env is lost: %v", env)
			}
		})
	}
}

func TestNewBackends(t *testing.T) {
	for _, b := range names.Backends {
		p, err := New(testManifest("shell"), Options{Backend: b, Slug: "demo-abcd", Canary: testCanary})
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := json.Marshal(p)
		var keys map[string]json.RawMessage
		json.Unmarshal(raw, &keys)
		var got []string
		for _, k := range []string{"docker", "macos_container", "smolvm"} {
			if _, ok := keys[k]; ok {
				got = append(got, k)
			}
		}
		if want := []string{strings.ReplaceAll(b, "-", "_")}; !cmp.Equal(want, got) {
			t.Errorf("backend %s: sections %v, want %v", b, got, want)
		}
	}
	p, err := New(testManifest("shell"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Backend != "docker" || p.Docker == nil || !strings.HasPrefix(p.Slug, "demo-") || !ValidSlug(p.Slug) ||
		!ValidCanary(p.Canary) || p.Label != "demo" || p.Color != ColorFor(p.Slug) {
		t.Errorf("defaults: backend %q slug %q canary %q label %q color %q", p.Backend, p.Slug, p.Canary, p.Label, p.Color)
	}
	d := p.Docker
	if d.AgentContainer != "bot-bottle-"+p.Slug || d.SidecarLabels["bb.role"] != "egress" || d.AgentLabels["bb.role"] != "agent" ||
		d.Labels["bb.role"] != "" || d.Limits.PidsLimit != 512 || !cmp.Equal(d.CapDrop, []string{"ALL"}) {
		t.Errorf("docker section: %+v", d)
	}
}

func TestNewErrors(t *testing.T) {
	// The plugin mine extends claude, whose telemetry routes it inherits
	// but may never open.
	pluginDir := t.TempDir()
	os.MkdirAll(filepath.Join(pluginDir, "mine"), 0o755)
	if err := os.WriteFile(filepath.Join(pluginDir, "mine", "provider.yaml"), []byte("extends: claude\noptions: [telemetry]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		edit func(*manifest.Manifest, *Options)
		want string
	}{
		{"backend", func(_ *manifest.Manifest, o *Options) { o.Backend = "k8s" },
			`bad --backend "k8s": want docker, macos-container or smolvm`},
		{"slug", func(_ *manifest.Manifest, o *Options) { o.Slug = "Demo_1" },
			`bad --slug "Demo_1": want a DNS label (a-z, 0-9 and inner '-', at most 63 characters)`},
		{"color", func(_ *manifest.Manifest, o *Options) { o.Color = "mauve" },
			`bad --color "mauve": want red, orange, yellow, green, cyan, blue, purple, pink or #rrggbb`},
		{"canary", func(_ *manifest.Manifest, o *Options) { o.Canary = "sk-live-1234" },
			`bad --canary: want 43 base64url characters (32 random bytes without padding)`},
		{"label", func(_ *manifest.Manifest, o *Options) { o.Label = "a\x1b]0;x" },
			`bad --label "a\x1b]0;x": want no control characters`},
		{"kind", func(m *manifest.Manifest, _ *Options) { m.Kind = "bb.plan" }, `kind is "bb.plan", want "bb.manifest"`},
		{"version", func(m *manifest.Manifest, _ *Options) { m.Version = 2 }, `version is 2, want 1`},
		{"agent name", func(m *manifest.Manifest, _ *Options) { m.Agent.Name = "" }, `agent.name is empty`},
		{"template", func(m *manifest.Manifest, _ *Options) { m.Agent.Template = "" }, `agent.template is empty`},
		{"unknown template", func(m *manifest.Manifest, _ *Options) { m.Agent.Template = "nope" },
			`looking up template of agent demo: unknown template "nope" (built-ins: [claude codex shell])`},
		{"route", func(m *manifest.Manifest, _ *Options) { m.Bottle.Egress.Routes[0].Host = "GitHub.com" },
			`bottle.egress.routes[0].host: "GitHub.com" must be lower case`},
		{"token name", func(m *manifest.Manifest, _ *Options) { m.Bottle.Tokens["gh"] = manifest.TokenSource{Env: "X"} },
			`bottle.tokens.gh: "gh" is not a token NAME (upper case, digits, _)`},
		{"canary token", func(m *manifest.Manifest, _ *Options) { m.Bottle.Tokens["CANARY"] = manifest.TokenSource{Env: "X"} },
			`bottle.tokens.CANARY: the name CANARY is the canary's`},
		{"token source", func(m *manifest.Manifest, _ *Options) { m.Bottle.Tokens["GITHUB"] = manifest.TokenSource{} },
			`bottle.tokens.GITHUB: want exactly one of env and file`},
		{"token both", func(m *manifest.Manifest, _ *Options) {
			m.Bottle.Tokens["GITHUB"] = manifest.TokenSource{Env: "A", File: "/b"}
		}, `bottle.tokens.GITHUB: want exactly one of env and file`},
		{"undeclared token", func(m *manifest.Manifest, _ *Options) { delete(m.Bottle.Tokens, "GITHUB") },
			`route github.com injects token GITHUB, which neither bottle dev nor template claude declares`},
		{"telemetry not a boolean", func(m *manifest.Manifest, _ *Options) { m.Agent.Options = map[string]any{"telemetry": "yes"} },
			`agent.options.telemetry: want true or false, not yes`},
		{"reserved option on a plugin", func(m *manifest.Manifest, o *Options) {
			o.PluginDir = pluginDir
			m.Agent.Template = "mine"
			m.Agent.Options = map[string]any{"telemetry": true}
		}, `agent.options.telemetry: option "telemetry" is reserved to the built-in templates; "mine" is a plugin`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, o := testManifest("claude"), testOptions()
			tt.edit(m, &o)
			_, err := New(m, o)
			if err == nil || err.Error() != tt.want {
				t.Errorf("error %v, want %s", err, tt.want)
			}
		})
	}
}

func TestNewTelemetry(t *testing.T) {
	for _, on := range []bool{false, true} {
		t.Run(fmt.Sprint(on), func(t *testing.T) {
			m := testManifest("claude")
			m.Agent.Options = map[string]any{"telemetry": on, "forward_login": true}
			p, err := New(m, testOptions())
			if err != nil {
				t.Fatal(err)
			}
			var hosts []string
			for _, r := range p.Egress.Routes {
				hosts = append(hosts, r.Host)
			}
			want := []string{"github.com", "api.anthropic.com"}
			if on {
				want = append(want, "statsig.anthropic.com", "*.sentry.io")
			}
			if diff := cmp.Diff(want, hosts); diff != "" {
				t.Errorf("routes (-want +got):\n%s", diff)
			}
			if got := p.Agent.Env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"]; (got == "1") == on {
				t.Errorf("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC = %q with telemetry %v", got, on)
			}
			if p.Agent.Telemetry != on || !p.Agent.ForwardLogin {
				t.Errorf("telemetry %v, forward_login %v", p.Agent.Telemetry, p.Agent.ForwardLogin)
			}
		})
	}
	// A bottle that names a telemetry host decides about it.
	m := testManifest("claude")
	m.Agent.Options = map[string]any{"telemetry": true}
	m.Bottle.Egress.Routes = append(m.Bottle.Egress.Routes, routes.Route{Host: "statsig.anthropic.com", Methods: []string{"POST"}})
	p, err := New(m, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if n := len(p.Egress.Routes); n != 4 || len(p.Egress.Routes[1].Methods) != 1 {
		t.Errorf("routes %+v", p.Egress.Routes)
	}
}

func TestNewPromptArg(t *testing.T) {
	tests := []struct {
		template, prompt string
		want             []string
	}{
		{"claude", "fix it", []string{"claude", "--dangerously-skip-permissions", "fix it"}},
		{"claude", "- fix it\n- test it", []string{"claude", "--dangerously-skip-permissions", "--", "- fix it\n- test it"}},
		{"claude", "", []string{"claude", "--dangerously-skip-permissions"}},
		{"shell", "fix it", []string{"/bin/bash", "-l"}},
	}
	for _, tt := range tests {
		m := testManifest(tt.template)
		m.Agent.Prompt = tt.prompt
		p, err := New(m, testOptions())
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tt.want, p.Agent.Command); diff != "" {
			t.Errorf("%s with prompt %q (-want +got):\n%s", tt.template, tt.prompt, diff)
		}
	}
}

// The provisioned files hold the bottle's identity and never a secret: not
// the canary, not a placeholder, not a token's name where its value would go.
func TestNewFiles(t *testing.T) {
	for _, tmpl := range []string{"claude", "codex", "shell"} {
		t.Run(tmpl, func(t *testing.T) {
			o := testOptions()
			o.Label, o.Color = "bob", "#FF8800"
			p, err := New(testManifest(tmpl), o)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Agent.Files) == 0 || p.Agent.Files[0].Path != "/home/agent/.bb/prompt.md" {
				t.Fatalf("files %v", p.Agent.Files)
			}
			var all strings.Builder
			for _, f := range p.Agent.Files {
				if !strings.HasPrefix(f.Path, p.Agent.Home+"/") {
					t.Errorf("%s is outside the home", f.Path)
				}
				all.WriteString(f.Content)
			}
			text := all.String()
			for _, secret := range append([]string{p.Canary}, mapValues(p.Agent.Placeholders, p)...) {
				if strings.Contains(text, secret) {
					t.Errorf("a file holds %q", secret)
				}
			}
			if tmpl != "shell" {
				for _, s := range []string{"bob", "demo-abcd"} {
					if !strings.Contains(text, s) {
						t.Errorf("no file shows %q", s)
					}
				}
			}
		})
	}
}

// mapValues returns the values of the agent's placeholder variables.
func mapValues(ph map[string]string, p *Plan) []string {
	var vs []string
	for v := range ph {
		vs = append(vs, p.Agent.Env[v])
	}
	return vs
}

func BenchmarkPlan(b *testing.B) {
	m := testManifest("claude")
	for b.Loop() {
		if _, err := New(m, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// forward_login puts a claude agent on the person's subscription: the
// sidecar holds the token `claude setup-token` printed and injects it as a
// bearer token; the agent holds its placeholder, and no API key.
func TestNewForwardLogin(t *testing.T) {
	m := testManifest("claude")
	m.Bottle.Tokens = nil
	m.Bottle.Egress.Routes = nil
	m.Agent.Options = map[string]any{"forward_login": true}
	p, err := New(m, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Egress.Routes) != 1 {
		t.Fatalf("routes: %+v", p.Egress.Routes)
	}
	r := p.Egress.Routes[0]
	if r.Host != "api.anthropic.com" || r.Inject == nil || r.Inject.Header != "Authorization" || r.Inject.Token != "CLAUDE_OAUTH" ||
		r.Inject.Format != "Bearer {token}" || r.Inject.Placeholder == "" {
		t.Errorf("route: %+v %+v", r, r.Inject)
	}
	if diff := cmp.Diff([]Token{{Name: "CLAUDE_OAUTH", Env: "CLAUDE_CODE_OAUTH_TOKEN", From: "provider"}}, p.Egress.Tokens); diff != "" {
		t.Errorf("tokens (-want +got):\n%s", diff)
	}
	if p.Agent.Env["CLAUDE_CODE_OAUTH_TOKEN"] != r.Inject.Placeholder {
		t.Errorf("the agent holds %q, the route expects %q", p.Agent.Env["CLAUDE_CODE_OAUTH_TOKEN"], r.Inject.Placeholder)
	}
	if _, ok := p.Agent.Env["ANTHROPIC_API_KEY"]; ok {
		t.Error("the agent holds an API key placeholder too: Claude Code would prefer it to the login")
	}
	// Codex's login cannot be held by the sidecar.
	c := testManifest("codex")
	c.Agent.Options = map[string]any{"forward_login": true}
	if _, err := New(c, testOptions()); err == nil || !strings.Contains(err.Error(), "forward_login") {
		t.Errorf("codex with forward_login: %v", err)
	}
}
