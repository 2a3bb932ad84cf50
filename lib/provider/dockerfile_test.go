package provider

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestBuiltinDockerfiles(t *testing.T) {
	for _, name := range Builtins() {
		t.Run(name, func(t *testing.T) {
			b, err := BuiltinDockerfile(name)
			if err != nil {
				t.Fatal(err)
			}
			df := string(b)
			// The launcher passes the offline base as BASE: the first lines
			// must take it.
			if !strings.HasPrefix(df, "ARG BASE=debian:bookworm-slim\nFROM ${BASE}\n") {
				t.Errorf("does not start with ARG BASE / FROM ${BASE}:\n%.80s", df)
			}
			users := regexp.MustCompile(`(?m)^USER (\S+)$`).FindAllStringSubmatch(df, -1)
			if len(users) == 0 || users[len(users)-1][1] == "root" || users[len(users)-1][1] == "0" {
				t.Errorf("does not end as a non-root USER: %v", users)
			}
			p, err := Lookup(name, "")
			if err != nil {
				t.Fatal(err)
			}
			if want := "USER " + p.User + "\n"; !strings.Contains(df, want) {
				t.Errorf("no %q for the provider's user", want)
			}
			hasCLI := strings.Contains(df, "ARG INSTALL_CLI=1\n")
			if hasCLI != (name != "shell") {
				t.Errorf("ARG INSTALL_CLI=1 present: %v, want %v", hasCLI, name != "shell")
			}
		})
	}
	if _, err := BuiltinDockerfile("nope"); err == nil {
		t.Error("BuiltinDockerfile(nope): no error")
	}
}

func TestDockerfileSource(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, text string) {
		t.Helper()
		f := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("own/provider.yaml", "command: [own]\n")
	write("own/Dockerfile", "FROM scratch\n")
	write("bare/provider.yaml", "command: [bare]\n")
	write("kid/provider.yaml", "extends: codex\n")
	write("mid/provider.yaml", "extends: own\n")
	write("grandkid/provider.yaml", "extends: mid\ncommand: [gk]\n")
	write("over/provider.yaml", "extends: claude\ncommand: [my-claude]\n")
	write("claude2/provider.yaml", "extends: over\n")
	write("claude/provider.yaml", "command: [my-claude]\n")

	tests := []struct {
		name    string
		want    DockerfileSource
		wantErr string
	}{
		{name: "codex", want: DockerfileSource{Builtin: "codex", Reason: "the built-in provider codex's own Dockerfile"}},
		{name: "own", want: DockerfileSource{Path: filepath.Join(dir, "own", "Dockerfile"),
			Reason: "the plugin own's Dockerfile beside its provider.yaml"}},
		{name: "bare", want: DockerfileSource{Builtin: "shell",
			Reason: "the plugin bare has no " + filepath.Join(dir, "bare", "Dockerfile") + ": the built-in provider shell's"}},
		{name: "kid", want: DockerfileSource{Builtin: "codex",
			Reason: "the plugin kid has no " + filepath.Join(dir, "kid", "Dockerfile") + ": the built-in provider codex's"}},
		// A plugin named like a built-in overrides it, Dockerfile and all.
		{name: "claude", want: DockerfileSource{Builtin: "shell",
			Reason: "the plugin claude has no " + filepath.Join(dir, "claude", "Dockerfile") + ": the built-in provider shell's"}},
		// Down a chain of plugins, the nearest Dockerfile wins.
		{name: "grandkid", want: DockerfileSource{Path: filepath.Join(dir, "own", "Dockerfile"),
			Reason: "the plugin grandkid has no " + filepath.Join(dir, "grandkid", "Dockerfile") + ": it extends mid, so " +
				"the plugin mid has no " + filepath.Join(dir, "mid", "Dockerfile") + ": it extends own, so " +
				"the plugin own's Dockerfile beside its provider.yaml"}},
		// over extends claude, and the plugin claude is found before the
		// built-in.
		{name: "claude2", want: DockerfileSource{Builtin: "shell",
			Reason: "the plugin claude2 has no " + filepath.Join(dir, "claude2", "Dockerfile") + ": it extends over, so " +
				"the plugin over has no " + filepath.Join(dir, "over", "Dockerfile") + ": it extends claude, so " +
				"the plugin claude has no " + filepath.Join(dir, "claude", "Dockerfile") + ": the built-in provider shell's"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Lookup(tt.name, dir)
			if err != nil {
				t.Fatal(err)
			}
			got, err := p.DockerfileSource()
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error %v, want %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("DockerfileSource (-want +got):\n%s", diff)
			}
			b, src, err := p.Dockerfile()
			if err != nil || src != got || len(b) == 0 {
				t.Errorf("Dockerfile() = %d bytes, %+v, %v", len(b), src, err)
			}
		})
	}
}
