package plan

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/manifest"
)

func TestCheckWorkspace(t *testing.T) {
	home := t.TempDir()
	stateDir := filepath.Join(home, ".local", "state", "bot-bottle")
	project := filepath.Join(home, "src", "project")
	if err := os.MkdirAll(project, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "home-link")
	if err := os.Symlink(home, link); err != nil {
		t.Fatal(err)
	}
	env := func(k string) string {
		if k == "HOME" {
			return home
		}
		return ""
	}
	for _, tc := range []struct {
		ws, want string // want: "" for accepted, else a part of the message
	}{
		{project, ""},
		{"/", "host's root"},
		{home, "home folder"},
		{home + "/", "home folder"},
		{link, "home folder"},
		{filepath.Join(home, ".local"), "holds bb's state folder"},
		{filepath.Join(stateDir, "x-1"), "inside bb's state folder"},
		{"relative", "not an absolute path"},
	} {
		err := CheckWorkspace(tc.ws, env)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.ws, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || exit.CodeOf(err) != exit.CodeUsage):
			t.Errorf("%s: got %v, want exit 2 and %q", tc.ws, err, tc.want)
		}
	}
	// BB_STATE_DIR moves the state folder, and the rule with it.
	moved := func(k string) string {
		if k == "BB_STATE_DIR" {
			return filepath.Join(project, "state")
		}
		return env(k)
	}
	if err := CheckWorkspace(project, moved); err == nil {
		t.Error("a workspace holding $BB_STATE_DIR was accepted")
	}
}

func TestNewRefusesWorkspace(t *testing.T) {
	home := t.TempDir()
	m := &manifest.Manifest{Kind: manifest.Kind, Version: manifest.Version,
		Agent:  manifest.Agent{Name: "a", Template: "shell", Bottle: "b"},
		Bottle: manifest.Bottle{Name: "b", Workspace: home}}
	env := func(k string) string {
		if k == "HOME" {
			return home
		}
		return ""
	}
	if _, err := New(m, Options{Env: env}); err == nil || !strings.Contains(err.Error(), "home folder") {
		t.Errorf("New with the home folder as workspace: %v", err)
	}
	// Without Env (a library caller that knows no host), no check.
	if _, err := New(m, Options{}); err != nil {
		t.Errorf("New without Env: %v", err)
	}
}
