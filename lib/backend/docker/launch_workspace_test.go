package docker

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/manifest"
	"github.com/bb-bottles/bb/lib/plan"
	"github.com/bb-bottles/bb/lib/state"
)

// A workspace that holds what the agent must never reach is refused before
// anything is made: exit 2, the reason, and a hint.
func TestLaunchRefusesWorkspace(t *testing.T) {
	c := needEngine(t)
	home := t.TempDir()
	stateDir := filepath.Join(home, ".local", "state", "bot-bottle")
	project := filepath.Join(home, "project")
	tokenFile := filepath.Join(project, "secrets", "gh-token")
	for _, d := range []string{stateDir, filepath.Dir(tokenFile), filepath.Join(home, ".config", "bot-bottle"), filepath.Join(home, ".ssh", "keys"), filepath.Join(home, "run", "engine")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(tokenFile, []byte("tok-in-the-workspace\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	homeLink := filepath.Join(t.TempDir(), "home")
	if err := os.Symlink(home, homeLink); err != nil {
		t.Fatal(err)
	}
	env := func(k string) string {
		switch k {
		case "HOME":
			return home
		case "BB_TEST_GITHUB_TOKEN":
			return testToken
		case "DOCKER_HOST":
			return "unix://" + filepath.Join(home, "run", "engine", "docker.sock")
		}
		return ""
	}
	for _, tc := range []struct {
		name, ws, dir string // the plan's workspace, or the folder bb-launch runs in
		tokenFile     bool   // GITHUB comes from tokenFile
		want          string
	}{
		{name: "root", ws: "/", want: "host's root"},
		{name: "home", ws: home, want: "home folder"},
		{name: "home by a symlink", ws: homeLink, want: "home folder"},
		{name: "home as the current folder", dir: home, want: "the current folder (the plan has no workspace)"},
		{name: "holds the state", ws: filepath.Join(home, ".local"), want: "holds bb's state folder"},
		{name: "inside the state", ws: filepath.Join(stateDir, "x-1"), want: "inside bb's state folder"},
		{name: "holds the configuration", ws: filepath.Join(home, ".config"), want: "it is ~/.config, which holds credentials"},
		{name: "holds a token file", ws: project, tokenFile: true, want: "holds the file of token GITHUB (" + tokenFile + ")"},
		{name: "holds the docker socket", ws: filepath.Join(home, "run"), want: "holds the Docker socket (" + filepath.Join(home, "run", "engine", "docker.sock") + ")"},
		{name: "holds the engine's data", ws: "/var", want: "holds the engine's own data (/var/lib/docker)"},
		{name: "holds the host's sockets", ws: "/run", want: "it is the host's sockets and runtime state"},
		{name: "inside ~/.ssh", ws: filepath.Join(home, ".ssh", "keys"), want: "inside ~/.ssh"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			slug := newSlug("ws")
			p, raw := shellPlan(t, slug, func(m *manifest.Manifest) {
				m.Bottle.Workspace = tc.ws
				if tc.tokenFile {
					m.Bottle.Tokens["GITHUB"] = manifest.TokenSource{File: tokenFile}
				}
			})
			st := &state.Store{Dir: stateDir}
			o := launchOptions(t, p, raw, st)
			o.Env = env
			if tc.dir != "" {
				o.Dir = tc.dir
			}
			_, err := Launch(t.Context(), c, o)
			if err == nil {
				Stop(context.Background(), c, slug)
				t.Fatal("launched")
			}
			if exit.CodeOf(err) != exit.CodeUsage || !strings.Contains(err.Error(), "checking the workspace: ") ||
				!strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v (exit %d); want exit 2 and %q", err, exit.CodeOf(err), tc.want)
			}
			var ce *exit.Error
			if !errors.As(err, &ce) || len(ce.Hints) == 0 {
				t.Errorf("no hint: %v", err)
			}
			if _, err := os.Stat(st.BottleDir(slug)); !os.IsNotExist(err) {
				t.Errorf("the refused launch made state: %v", err)
			}
			assertGone(t, c, slug)
		})
	}
}

// A resume mounts the folder of the first launch, wherever it runs from.
func TestResumeKeepsWorkspace(t *testing.T) {
	c := needBase(t)
	slug := newSlug("wsresume")
	p, raw := shellPlan(t, slug, func(m *manifest.Manifest) { m.Bottle.Workspace = "" })
	st := &state.Store{Dir: t.TempDir()}
	cleanupBottle(t, c, slug)
	first := launchOptions(t, p, raw, st)
	if err := os.WriteFile(filepath.Join(first.Dir, "first.txt"), []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Launch(t.Context(), c, first); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(st.BottleDir(slug), LaunchFile))
	if err != nil {
		t.Fatal(err)
	}
	var ld Launched
	if err := json.Unmarshal(b, &ld); err != nil || ld.Workspace != plan.ResolvePath(first.Dir) {
		t.Errorf("launch.json workspace = %q (%v), want %s", ld.Workspace, err, first.Dir)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := Stop(ctx, c, slug); err != nil {
		t.Fatal(err)
	}
	again := launchOptions(t, p, raw, st) // another current folder
	again.Resume = true
	if _, err := Launch(t.Context(), c, again); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := execIn(t, c, slug, "ls", plan.Workdir); code != 0 || strings.TrimSpace(out) != "first.txt" {
		t.Errorf("the resumed bottle's workspace holds %q (exit %d), want first.txt", out, code)
	}
}
