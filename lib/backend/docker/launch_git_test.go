package docker

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/manifest"
	"github.com/bb-bottles/bb/lib/state"
)

// personUID owns the test's checkouts and runs git on them, as the person
// whose checkout a workspace is (git refuses a repository another user
// owns, root's included). It is the agent's uid in the base image, as on a
// single-user Linux machine the person's is: the case where whatever the
// agent writes is the person's own.
const personUID = 1000

// otherUID owns a checkout that is neither the agent's nor root's.
const otherUID = 4242

// personGit runs git as the checkout's owner, with a home of their own,
// and fails the test when it fails.
func personGit(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := gitAs(personUID, dir, args...)
	if err != nil {
		t.Fatalf("git %q in %s: %v\n%s", args, dir, err, out)
	}
	return strings.TrimSpace(out)
}

func gitAs(uid uint32, dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=person", "GIT_AUTHOR_EMAIL=p@example.invalid", "GIT_COMMITTER_NAME=person", "GIT_COMMITTER_EMAIL=p@example.invalid"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// checkoutOf makes a repository with one commit in a fresh folder owned by
// uid, in a folder others may pass through.
func checkoutOf(t *testing.T, uid uint32) string {
	t.Helper()
	parent, err := os.MkdirTemp("", "bb-checkout-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	os.Chmod(parent, 0o755)
	ws := filepath.Join(parent, "checkout")
	if err := os.Mkdir(ws, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chown(ws, int(uid), int(uid))
	for _, args := range [][]string{{"init", "-q", "-b", "main"}} {
		if out, err := gitAs(uid, ws, args...); err != nil {
			t.Fatalf("git %q: %v\n%s", args, err, out)
		}
	}
	os.WriteFile(filepath.Join(ws, "README"), []byte("the person's\n"), 0o644)
	os.Chown(filepath.Join(ws, "README"), int(uid), int(uid))
	for _, args := range [][]string{{"add", "README"}, {"commit", "-q", "-m", "the person's first"}} {
		if out, err := gitAs(uid, ws, args...); err != nil {
			t.Fatalf("git %q: %v\n%s", args, err, out)
		}
	}
	return ws
}

func personCheckout(t *testing.T) string { return checkoutOf(t, personUID) }

// pwned lists the files an attack's payload made in dir: every payload
// below touches a file named pwned-* where it runs.
func pwned(dir string) []string {
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), "pwned") {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// The agent commits to a repository of its own, seeded from the person's;
// whatever it writes there — configuration naming commands, hooks, a
// commondir, submodules, a nested repository in its index — git on the host
// never reads, and the person's .git it cannot write at all. Its branches
// come to the person as data (bb-launch fetch), with no hook run.
func TestLaunchGitOwnRepository(t *testing.T) {
	c := needBase(t)
	ws := personCheckout(t)
	hostConfig, _ := os.ReadFile(filepath.Join(ws, ".git", "config"))
	first := personGit(t, ws, "rev-parse", "HEAD")
	slug := newSlug("git")
	p, raw := shellPlan(t, slug, func(m *manifest.Manifest) { m.Bottle.Workspace = ws })
	st := &state.Store{Dir: t.TempDir()}
	cleanupBottle(t, c, slug)
	if _, err := Launch(t.Context(), c, launchOptions(t, p, raw, st)); err != nil {
		t.Fatal(err)
	}
	sh := func(script string) (int, string) {
		t.Helper()
		code, out, errs := execIn(t, c, slug, "sh", "-c", "cd /workspace && "+script)
		return code, out + errs
	}
	// The agent's git works on the person's checkout (another uid's), and
	// sees its history and a clean tree.
	if code, out := sh("git log --format=%s && git status --porcelain"); code != 0 || strings.TrimSpace(out) != "the person's first" {
		t.Fatalf("the agent's git: exit %d\n%s", code, out)
	}
	// The person's .git cannot be written, nor the repository swapped.
	for name, cmd := range map[string]string{
		"write the person's config": "echo '[core] fsmonitor = x' >> /bb/git/host/config",
		"add a hook to it":          "printf '#!/bin/sh\\n' > /bb/git/host/hooks/post-checkout",
		"put a commondir in it":     "echo /tmp > /bb/git/host/commondir",
		"move .git away":            "mv .git .git-old",
	} {
		if code, out := sh(cmd); code == 0 {
			t.Errorf("%s: %s succeeded: %s", name, cmd, out)
		}
	}
	// In its own repository the agent may do all it likes.
	plant := `set -e
git config core.fsmonitor 'touch pwned-fsmonitor'
git config alias.st '!touch pwned-alias'
git config core.sshCommand 'touch pwned-ssh'
mkdir -p .git/hooks
printf '#!/bin/sh\ntouch pwned-hook\n' > .git/hooks/post-commit
printf '#!/bin/sh\ntouch pwned-hook\n' > .git/hooks/pre-commit
printf '#!/bin/sh\ntouch pwned-hook\n' > .git/hooks/post-checkout
chmod +x .git/hooks/*
mkdir -p sub && (cd sub && git init -q && git config core.fsmonitor 'touch pwned-nested' && git commit -q --allow-empty -m n)
git add sub
mkdir -p .git/modules/lib && printf '[core]\n\tfsmonitor = touch pwned-module\n' > .git/modules/lib/config
echo work > work.txt && git add work.txt README && git commit -q -m "the agent's"
echo "[core]\n\tfsmonitor = touch pwned-worktree" > .git/config.worktree
git log --format=%s -1`
	if code, out := sh(plant); code != 0 || !strings.Contains(out, "the agent's") {
		t.Fatalf("the agent's own repository: exit %d\n%s", code, out)
	}
	if got := pwned(ws); len(got) > 0 {
		t.Logf("made in the bottle, by the agent's own git (its business): %q", got)
		for _, p := range got {
			os.Remove(p)
		}
	}
	// The person works as they would: nothing the agent wrote runs.
	os.WriteFile(filepath.Join(ws, "README"), []byte("the person's, changed\n"), 0o644)
	personGit(t, ws, "status")
	personGit(t, ws, "log", "--oneline")
	personGit(t, ws, "diff")
	personGit(t, ws, "commit", "-q", "-am", "the person's second")
	personGit(t, ws, "checkout", "-q", "-b", "topic")
	if got := pwned(ws); len(got) > 0 {
		t.Errorf("git on the host ran what the agent wrote: %q", got)
	}
	if cfg, _ := os.ReadFile(filepath.Join(ws, ".git", "config")); !bytes.Equal(cfg, hostConfig) {
		t.Errorf("the person's .git/config changed:\n%s", cfg)
	}
	if _, err := os.Stat(filepath.Join(ws, ".git", "commondir")); err == nil {
		t.Error("a commondir appeared in the person's .git")
	}
	if log := personGit(t, ws, "log", "--format=%s", "main"); log != "the person's second\nthe person's first" {
		t.Errorf("the person's history: %q", log)
	}

	// The agent's branch comes to the person as data, checked, no hook run.
	refs, err := backend.FetchGit(t.Context(), New(c), st, p, "")
	if err != nil {
		t.Fatal(err)
	}
	want := backend.FetchedRefs(slug) + "main"
	if len(refs) != 1 || refs[0] != want {
		t.Fatalf("fetched %q, want %s", refs, want)
	}
	if log := personGit(t, ws, "log", "--format=%s", want); log != "the agent's\nthe person's first" {
		t.Errorf("the agent's branch: %q", log)
	}
	if personGit(t, ws, "rev-parse", "main~1") != first {
		t.Error("the person's branch moved")
	}
	if got := pwned(ws); len(got) > 0 {
		t.Errorf("fetching ran what the agent wrote: %q", got)
	}

	// Stopped and resumed, the agent still has its repository.
	if err := Stop(t.Context(), c, slug); err != nil {
		t.Fatal(err)
	}
	o := launchOptions(t, p, raw, st)
	o.Resume = true
	if _, err := Launch(t.Context(), c, o); err != nil {
		t.Fatal(err)
	}
	if code, out := sh("git log --format=%s -1"); code != 0 || strings.TrimSpace(out) != "the agent's" {
		t.Errorf("after a resume, the agent's repository: exit %d %s", code, out)
	}
}

// A workspace that is no repository: a repository the agent makes there is
// its own too, never one the person's git would find in their folder.
func TestLaunchGitNone(t *testing.T) {
	c := needBase(t)
	parent, err := os.MkdirTemp("", "bb-nogit-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	os.Chmod(parent, 0o755)
	ws := filepath.Join(parent, "ws")
	os.Mkdir(ws, 0o755)
	os.Chown(ws, personUID, personUID)
	slug := newSlug("nogit")
	p, raw := shellPlan(t, slug, func(m *manifest.Manifest) { m.Bottle.Workspace = ws })
	st := &state.Store{Dir: t.TempDir()}
	cleanupBottle(t, c, slug)
	if _, err := Launch(t.Context(), c, launchOptions(t, p, raw, st)); err != nil {
		t.Fatal(err)
	}
	code, out, errs := execIn(t, c, slug, "sh", "-c", `cd /workspace && git init -q && git config core.fsmonitor 'touch pwned-fsmonitor' &&
printf '#!/bin/sh\ntouch pwned-hook\n' > .git/hooks/post-checkout && chmod +x .git/hooks/post-checkout &&
echo x > f && git add f && git commit -q -m made && git log --format=%s`)
	if code != 0 || strings.TrimSpace(out) != "made" {
		t.Fatalf("the agent's git init: exit %d\n%s%s", code, out, errs)
	}
	for _, p := range pwned(ws) {
		os.Remove(p) // the agent's own git ran it, in the bottle: its business
	}
	entries, err := os.ReadDir(filepath.Join(ws, ".git"))
	if err != nil || len(entries) != 0 {
		t.Errorf("the workspace's .git on the host: %v, %d entries (want an empty folder)", err, len(entries))
	}
	if out, err := gitAs(personUID, ws, "status"); err == nil {
		t.Errorf("git on the host finds a repository in the workspace:\n%s", out)
	}
	if got := pwned(ws); len(got) > 0 {
		t.Errorf("git on the host ran what the agent wrote: %q", got)
	}
	// Its branches can still be had, as a bundle.
	bundle := filepath.Join(t.TempDir(), "agent.bundle")
	if _, err := backend.FetchGit(t.Context(), New(c), st, p, bundle); err != nil {
		t.Fatal(err)
	}
	clone := filepath.Join(t.TempDir(), "clone")
	if out, err := exec.Command("git", "clone", "-q", bundle, clone).CombinedOutput(); err != nil {
		t.Fatalf("cloning the bundle: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(filepath.Join(clone, "f")); string(b) != "x\n" {
		t.Errorf("the bundle's clone holds %q", b)
	}
}

// A .git that is a link is never mounted, wherever it leads (an agent
// with the workspace's parent as its own could have put it there).
func TestLaunchGitLinkRefused(t *testing.T) {
	c := needBase(t)
	ws := t.TempDir()
	if err := os.Symlink(t.TempDir(), filepath.Join(ws, ".git")); err != nil {
		t.Fatal(err)
	}
	slug := newSlug("gitlink")
	p, raw := shellPlan(t, slug, func(m *manifest.Manifest) { m.Bottle.Workspace = ws })
	st := &state.Store{Dir: t.TempDir()}
	cleanupBottle(t, c, slug)
	_, err := Launch(t.Context(), c, launchOptions(t, p, raw, st))
	var se *StepError
	if !errors.As(err, &se) || se.Step != "checking the workspace" || exit.CodeOf(err) != exit.CodeUsage ||
		!strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("a .git link: %v", err)
	}
}

// The workspace's owner is neither root nor the agent: the agent's git
// still works there (no "dubious ownership").
func TestLaunchGitForeignOwner(t *testing.T) {
	c := needBase(t)
	ws := checkoutOf(t, otherUID)
	slug := newSlug("owner")
	p, raw := shellPlan(t, slug, func(m *manifest.Manifest) { m.Bottle.Workspace = ws })
	st := &state.Store{Dir: t.TempDir()}
	cleanupBottle(t, c, slug)
	if _, err := Launch(t.Context(), c, launchOptions(t, p, raw, st)); err != nil {
		t.Fatal(err)
	}
	_, uidOut, _ := execIn(t, c, slug, "id", "-u")
	if uid, _ := strconv.Atoi(strings.TrimSpace(uidOut)); uid == otherUID {
		t.Fatalf("the agent runs as the person's uid %d: the test proves nothing", uid)
	}
	if code, out, errs := execIn(t, c, slug, "sh", "-c", "cd /workspace && git log --oneline && git status --short && git fetch -q host"); code != 0 {
		t.Errorf("the agent's git on another's checkout: exit %d\n%s%s", code, out, errs)
	}
}
