package docker

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/bb-bottles/bb/lib/manifest"
	"github.com/bb-bottles/bb/lib/state"
)

// In a git workspace the agent commits, but cannot change what the host's
// git runs: .git/config (core.fsmonitor) and .git/hooks are read-only, and
// .git cannot be swapped for another.
func TestLaunchGitReadOnly(t *testing.T) {
	c := needBase(t)
	ws := t.TempDir()
	for _, args := range [][]string{{"init", "-q", ws}, {"-C", ws, "config", "user.name", "host"}} {
		if out, err := exec.Command("git", args...).CombinedOutput(); err != nil {
			t.Fatalf("git %q: %v\n%s", args, err, out)
		}
	}
	os.RemoveAll(filepath.Join(ws, ".git", "hooks")) // made by launch
	slug := newSlug("git")
	p, raw := shellPlan(t, slug, func(m *manifest.Manifest) { m.Bottle.Workspace = ws })
	st := &state.Store{Dir: t.TempDir()}
	cleanupBottle(t, c, slug)
	if _, err := Launch(t.Context(), c, launchOptions(t, p, raw, st)); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(ws, ".git", "hooks")); err != nil || !fi.IsDir() {
		t.Errorf("no hooks folder was made: %v", err)
	}
	// The workspace is the agent's user's, as a person's checkout is.
	_, out, _ := execIn(t, c, slug, "id", "-u")
	uid, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		t.Fatal(err)
	}
	filepath.WalkDir(ws, func(p string, _ fs.DirEntry, err error) error {
		if err == nil {
			os.Lchown(p, uid, uid)
		}
		return nil
	})

	fails := map[string]string{
		"git config":       "git config core.fsmonitor 'touch /tmp/pwned'",
		"write the config": "echo '[core] fsmonitor = x' >> .git/config",
		"add a hook":       "printf '#!/bin/sh\\ntouch /tmp/pwned\\n' > .git/hooks/post-checkout",
		"swap .git":        "mv .git .git-old",
		"swap the config":  "cp .git/config /tmp/c && mv /tmp/c .git/config",
	}
	for name, cmd := range fails {
		if code, out, errs := execIn(t, c, slug, "sh", "-c", "cd /workspace && "+cmd); code == 0 {
			t.Errorf("%s: %s succeeded: %s%s", name, cmd, out, errs)
		}
	}
	if code, out, errs := execIn(t, c, slug, "sh", "-c",
		"cd /workspace && echo work > f && git add f && git commit -q -m 'the agent commits' && git log --oneline"); code != 0 ||
		!strings.Contains(out, "the agent commits") {
		t.Errorf("the agent cannot commit: exit %d\n%s%s", code, out, errs)
	}
	cfg, _ := os.ReadFile(filepath.Join(ws, ".git", "config"))
	if strings.Contains(string(cfg), "fsmonitor") {
		t.Errorf(".git/config was changed:\n%s", cfg)
	}
	if _, err := os.Stat(filepath.Join(ws, ".git", "hooks", "post-checkout")); err == nil {
		t.Error("a hook was added")
	}
}
