package provider

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/bb-bottles/bb/lib/routes"
	"github.com/bb-bottles/bb/lib/yamlx"
)

// writePlugins writes files (relative path -> text) under a new plugin
// folder and returns it.
func writePlugins(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for rel, text := range files {
		f := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestPluginExtends(t *testing.T) {
	dir := writePlugins(t, map[string]string{
		"fast-codex/provider.yaml": `extends: codex
command: [codex, --full-auto]
env: {CODEX_QUIET: "1"}
tokens:
  GITHUB: {env: GITHUB_TOKEN}
routes:
  - host: api.github.com
    inject: {header: Authorization, token: GITHUB, format: "Bearer {token}"}
files:
  - {path: ~/.codex/AGENTS.md, file: AGENTS.md}
  - {path: ~/bin/hello, content: "#!/bin/sh\necho hello\n", mode: "0755"}
options: [fast]
`,
		"fast-codex/AGENTS.md": "Be brief.\n",
		// A plugin named like a built-in that extends its own name builds
		// on the built-in it overrides.
		"claude/provider.yaml": "extends: claude\nhome: /home/dev\nuser: dev\nprompt_arg: false\n",
		// A plugin extending a plugin.
		"faster/provider.yaml": "extends: fast-codex\nenv: {CODEX_QUIET: \"0\"}\nroutes: [{host: api.openai.com, paths: [/v1/], inject: {header: Authorization, token: OPENAI, format: \"Bearer {token}\"}}]\n",
	})

	codex, _ := Lookup("codex", "")
	p, err := Lookup("fast-codex", dir)
	if err != nil {
		t.Fatal(err)
	}
	want := &Provider{Name: "fast-codex", Dir: filepath.Join(dir, "fast-codex"), Extends: "codex",
		Home: "/home/agent", User: "agent", Command: []string{"codex", "--full-auto"},
		Env: map[string]string{"CODEX_QUIET": "1"},
		Routes: []routes.Route{
			{Host: "api.github.com", Inject: &routes.Inject{Header: "Authorization", Token: "GITHUB", Format: "Bearer {token}"}},
			codex.Routes[0],
		},
		Tokens:       []Token{{Name: "GITHUB", Env: "GITHUB_TOKEN"}, {Name: "OPENAI", Env: "OPENAI_API_KEY"}},
		Placeholders: map[string]string{"OPENAI_API_KEY": "OPENAI"},
		// The reserved options of codex are not inherited.
		Options:     []string{"fast"},
		PromptArg:   true,
		Provisioner: "codex",
		Files: []File{
			{Path: "~/.codex/AGENTS.md", Mode: "0644", Content: "Be brief.\n", Source: "plugin:fast-codex"},
			{Path: "~/bin/hello", Mode: "0755", Content: "#!/bin/sh\necho hello\n", Source: "plugin:fast-codex"},
		},
	}
	if diff := cmp.Diff(want, p, cmpopts.IgnoreUnexported(Provider{})); diff != "" {
		t.Errorf("fast-codex (-want +got):\n%s", diff)
	}

	p, err = Lookup("faster", dir)
	if err != nil {
		t.Fatal(err)
	}
	if p.Env["CODEX_QUIET"] != "0" || len(p.Files) != 2 || p.Extends != "fast-codex" {
		t.Errorf("faster: env %v, %d files, extends %q", p.Env, len(p.Files), p.Extends)
	}
	// The plugin's route for api.openai.com replaces the inherited one.
	if len(p.Routes) != 2 || p.Routes[0].Host != "api.openai.com" || len(p.Routes[0].Paths) != 1 || p.Routes[1].Host != "api.github.com" {
		t.Errorf("faster's routes: %+v", p.Routes)
	}

	p, err = Lookup("claude", dir)
	if err != nil {
		t.Fatal(err)
	}
	if p.Builtin || p.Home != "/home/dev" || p.User != "dev" || p.PromptArg || p.Provisioner != "claude" ||
		p.Command[0] != "claude" || len(p.TelemetryRoutes) == 0 || len(p.Options) != 0 {
		t.Errorf("claude plugin over the built-in: %+v", p)
	}
}

func TestPluginErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string // with DIR for the plugin folder
	}{
		{"unknown field", map[string]string{"p/provider.yaml": "command: [x]\ncomand: [y]\n"},
			`DIR/p/provider.yaml:2:1: comand: unknown field "comand"`},
		{"wrong type", map[string]string{"p/provider.yaml": "command: x\n"},
			`DIR/p/provider.yaml:1:10: command: must be a list, not a string`},
		{"bad route host", map[string]string{"p/provider.yaml": "command: [x]\nroutes:\n  - host: \"*.com\"\n"},
			`DIR/p/provider.yaml:3:11: routes[0].host: "*.com" is not a host name, a *. wildcard or an IP address`},
		{"extends cycle", map[string]string{
			"p/provider.yaml": "extends: q\n",
			"q/provider.yaml": "extends: r\n",
			"r/provider.yaml": "extends: p\n"},
			`DIR/r/provider.yaml:1:10: extends: extends cycle: p -> q -> r -> p`},
		{"missing extends target", map[string]string{"p/provider.yaml": "extends: gemini\n"},
			`DIR/p/provider.yaml:1:10: extends: extends "gemini", which is neither a plugin nor a built-in`},
		{"extends itself", map[string]string{"p/provider.yaml": "extends: p\n"},
			`DIR/p/provider.yaml:1:10: extends: "p" extends itself, and there is no built-in p to build on`},
		{"broken parent", map[string]string{
			"p/provider.yaml": "extends: q\n",
			"q/provider.yaml": "extends: codex\nhome: 7\n"},
			`DIR/q/provider.yaml:2:7: home: must be a string, not an integer (7)`},
		{"undeclared token", map[string]string{"p/provider.yaml": "extends: shell\nroutes: [{host: a.example, inject: {header: X, token: KEY}}]\n"},
			`DIR/p/provider.yaml:2:55: routes[0].inject.token: token "KEY" is not declared in tokens`},
		{"canary token", map[string]string{"p/provider.yaml": "extends: shell\ntokens: {CANARY: {env: X}}\n"},
			`DIR/p/provider.yaml:2:10: tokens.CANARY: token name CANARY is reserved for the canary bb plants itself`},
		{"token without env", map[string]string{"p/provider.yaml": "extends: shell\ntokens: {KEY: {}}\n"},
			`DIR/p/provider.yaml:2:10: tokens.KEY.env: is not an environment variable name (letters, digits and _): write the name of the variable that holds the token, like GITHUB_TOKEN`},
		{"placeholder of no token", map[string]string{"p/provider.yaml": "extends: shell\nplaceholders: {API_KEY: KEY}\n"},
			`DIR/p/provider.yaml:2:25: placeholders.API_KEY: token "KEY" is not declared in tokens`},
		{"root", map[string]string{"p/provider.yaml": "extends: shell\nuser: root\n"},
			`DIR/p/provider.yaml:2:7: user: the agent never runs as root`},
		{"relative home", map[string]string{"p/provider.yaml": "extends: shell\nhome: home/agent\n"},
			`DIR/p/provider.yaml:2:7: home: "home/agent" is not a clean absolute folder`},
		{"empty command", map[string]string{"p/provider.yaml": "extends: shell\ncommand: []\n"},
			`DIR/p/provider.yaml:2:10: command: is empty`},
		{"file outside the home", map[string]string{"p/provider.yaml": "extends: shell\nfiles: [{path: /etc/passwd, content: x}]\n"},
			`DIR/p/provider.yaml:2:16: files[0].path: "/etc/passwd" is not a clean path in the home (~/...)`},
		{"file climbing out", map[string]string{"p/provider.yaml": "extends: shell\nfiles: [{path: ~/../x, content: x}]\n"},
			`DIR/p/provider.yaml:2:16: files[0].path: "~/../x" is not a clean path in the home (~/...)`},
		{"file with both", map[string]string{"p/provider.yaml": "extends: shell\nfiles: [{path: ~/x, content: x, file: x}]\n"},
			`DIR/p/provider.yaml:2:9: files[0]: want exactly one of content and file`},
		{"file missing", map[string]string{"p/provider.yaml": "extends: shell\nfiles: [{path: ~/x, file: x.txt}]\n"},
			`DIR/p/provider.yaml:2:27: files[0].file: reading DIR/p/x.txt: no such file or directory`},
		{"file beyond the plugin", map[string]string{"p/provider.yaml": "extends: shell\nfiles: [{path: ~/x, file: ../q/secret}]\n"},
			`DIR/p/provider.yaml:2:27: files[0].file: "../q/secret" is not a file beside provider.yaml`},
		{"bad mode", map[string]string{"p/provider.yaml": "extends: shell\nfiles: [{path: ~/x, content: x, mode: \"777\"}]\n"},
			`DIR/p/provider.yaml:2:39: files[0].mode: "777" is not an octal mode like "0644" or "0755"`},
		{"bad option", map[string]string{"p/provider.yaml": "extends: shell\noptions: [Fast]\n"},
			`DIR/p/provider.yaml:2:11: options[0]: "Fast" is not an option name (lower case letters, digits and _)`},
		{"bad env name", map[string]string{"p/provider.yaml": "extends: shell\nenv: {1X: y}\n"},
			`DIR/p/provider.yaml:2:7: env.1X: "1X" is not an environment variable name`},
		{"syntax", map[string]string{"p/provider.yaml": "command: [x\n"},
			`DIR/p/provider.yaml:1:1: YAML syntax error: did not find expected ',' or ']'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writePlugins(t, tt.files)
			_, err := Lookup("p", dir)
			if err == nil {
				t.Fatal("no error")
			}
			if _, ok := err.(*yamlx.Error); !ok {
				t.Errorf("error is a %T, want a *yamlx.Error", err)
			}
			if got, want := err.Error(), strings.ReplaceAll(tt.want, "DIR", dir); got != want {
				t.Errorf("error\n got %s\nwant %s", got, want)
			}
		})
	}
}

// A template name that is not a folder name never reaches the file system.
func TestLookupOddNames(t *testing.T) {
	dir := writePlugins(t, map[string]string{"x/provider.yaml": "command: [x]\n"})
	for _, name := range []string{"../x", "x/..", ""} {
		if _, err := Lookup(name, filepath.Join(dir, "x")); err == nil {
			t.Errorf("Lookup(%q): no error", name)
		}
	}
}

// A plugin's file may not be a symlink out of its folder: a plugin cloned
// from a repository could link notes.txt to a host token file.
func TestPluginFileSymlinkOut(t *testing.T) {
	dir := writePlugins(t, map[string]string{
		"p/provider.yaml": "extends: shell\nfiles: [{path: ~/notes.txt, file: notes.txt}]\n"})
	secret := filepath.Join(t.TempDir(), "hosts.yml")
	const value = "ghp_SUPERSECRETHOSTTOKEN123456"
	if err := os.WriteFile(secret, []byte(value+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(dir, "p", "notes.txt")); err != nil {
		t.Fatal(err)
	}
	p, err := Lookup("p", dir)
	if err == nil {
		t.Fatalf("a symlink out of the plugin was read: %+v", p.Files)
	}
	if !strings.Contains(err.Error(), "files[0].file: reading") || strings.Contains(err.Error(), value) {
		t.Errorf("error = %v", err)
	}
	// A symlink inside the plugin's folder is fine.
	os.Remove(filepath.Join(dir, "p", "notes.txt"))
	os.WriteFile(filepath.Join(dir, "p", "real.txt"), []byte("hello\n"), 0o644)
	os.Symlink("real.txt", filepath.Join(dir, "p", "notes.txt"))
	p, err = Lookup("p", dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Files) != 1 || p.Files[0].Content != "hello\n" {
		t.Errorf("files = %+v", p.Files)
	}
}
