package workspace

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.invalid", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.invalid")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %q in %s: %v\n%s", args, dir, err, out)
	}
	return strings.TrimSpace(string(out))
}

// writeSeed writes what Seed returned as a git folder at dir, as the
// launch writes it into the bottle's own repository.
func writeSeed(t *testing.T, dir string, files []File) {
	t.Helper()
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f.Path))
		if f.Mode.IsDir() {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, f.Data, f.Mode.Perm()); err != nil {
			t.Fatal(err)
		}
	}
}

// hostileConfig is a repository configuration whose every line but the
// remotes, branches and format would run code, or change what runs.
const hostileConfig = `
	fsmonitor = touch /tmp/pwned-fsmonitor
	hooksPath = /tmp/hooks
	sshCommand = touch /tmp/pwned-ssh
	pager = touch /tmp/pwned-pager
	editor = touch /tmp/pwned-editor
	askPass = /tmp/askpass
[include]
	path = /tmp/evil.cfg
[includeIf "gitdir:/"]
	path = /tmp/evil.cfg
[filter "x"]
	clean = touch /tmp/pwned-filter
[diff "x"]
	textconv = touch /tmp/pwned-diff
[credential]
	helper = !touch /tmp/pwned-cred
[url "ext::sh -c touch% /tmp/pwned-url"]
	insteadOf = https://
[alias]
	st = !touch /tmp/pwned-alias
[user]
	name = the person
[remote "origin"]
	url = "git@github.com:acme/widgets.git"
	fetch = +refs/heads/*:refs/remotes/origin/*
[remote "host"]
	url = /tmp/elsewhere
[branch "main"]
	remote = origin
	merge = refs/heads/main
[submodule "lib"]
	url = ../lib
	update = !touch /tmp/pwned-submodule
[core "x"]
	repositoryformatversion = 9
`

func TestSeed(t *testing.T) {
	ws := t.TempDir()
	git(t, ws, "init", "-q", "-b", "main")
	os.WriteFile(filepath.Join(ws, "a.txt"), []byte("a\n"), 0o644)
	git(t, ws, "add", "a.txt")
	git(t, ws, "commit", "-q", "-m", "first")
	git(t, ws, "branch", "feature")
	git(t, ws, "tag", "v1")
	os.WriteFile(filepath.Join(ws, "b.txt"), []byte("b\n"), 0o644)
	git(t, ws, "add", "b.txt")
	git(t, ws, "commit", "-q", "-m", "second")
	git(t, ws, "pack-refs", "--all")
	git(t, ws, "branch", "loose") // one loose ref beside packed ones
	cfgPath := filepath.Join(ws, ".git", "config")
	cfg, _ := os.ReadFile(cfgPath)
	cfg = append(cfg, []byte(strings.Replace(hostileConfig, "\n", "\n[core]\n", 1))...)
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	// A hook and a link out, neither of which may reach the copy.
	os.WriteFile(filepath.Join(ws, ".git", "hooks", "post-commit"), []byte("#!/bin/sh\ntouch /tmp/pwned-hook\n"), 0o755)
	os.Symlink("/etc/passwd", filepath.Join(ws, ".git", "refs", "heads", "passwd"))

	g, err := InspectGit(ws)
	if err != nil || g.Kind != GitDir {
		t.Fatalf("InspectGit: %+v, %v", g, err)
	}
	files, notes, err := Seed(g, g.Dir)
	if err != nil {
		t.Fatal(err)
	}
	agent := filepath.Join(t.TempDir(), "agent.git")
	writeSeed(t, agent, files)
	for _, f := range files {
		if strings.HasPrefix(f.Path, "hooks") || strings.Contains(f.Path, "passwd") {
			t.Errorf("seeded %s", f.Path)
		}
	}
	if !slices.ContainsFunc(notes, func(n string) bool { return strings.Contains(n, "core.fsmonitor") }) {
		t.Errorf("the notes do not say what was left out: %q", notes)
	}

	ag := func(args ...string) string {
		return git(t, ws, append([]string{"--git-dir=" + agent, "--work-tree=" + ws}, args...)...)
	}
	if st := ag("status", "--porcelain"); st != "" {
		t.Errorf("the agent's repository is not clean where the person's is:\n%s", st)
	}
	if log := ag("log", "--format=%s", "main"); log != "second\nfirst" {
		t.Errorf("log: %q", log)
	}
	for _, ref := range []string{"refs/heads/feature", "refs/heads/loose", "refs/tags/v1"} {
		if ag("rev-parse", ref) != git(t, ws, "rev-parse", ref) {
			t.Errorf("%s differs", ref)
		}
	}
	list := ag("config", "--list", "--local")
	for _, bad := range []string{"pwned", "hookspath", "include", "filter", "credential", "insteadof", "alias", "user.name",
		"/tmp/elsewhere", "repositoryformatversion=9", "update="} {
		if strings.Contains(strings.ToLower(list), bad) {
			t.Errorf("the agent's configuration keeps %q:\n%s", bad, list)
		}
	}
	for _, want := range []string{"remote.origin.url=git@github.com:acme/widgets.git", "branch.main.merge=refs/heads/main",
		"submodule.lib.url=../lib", "remote.host.url=" + g.Dir, "core.bare=false"} {
		if !strings.Contains(list, want) {
			t.Errorf("the agent's configuration lacks %q:\n%s", want, list)
		}
	}

	// The agent commits into its own repository; the person's does not move.
	before := git(t, ws, "rev-parse", "HEAD")
	objects := git(t, ws, "count-objects")
	os.WriteFile(filepath.Join(ws, "c.txt"), []byte("c\n"), 0o644)
	ag("add", "c.txt")
	ag("commit", "-q", "-m", "the agent's")
	if git(t, ws, "rev-parse", "HEAD") != before || git(t, ws, "count-objects") != objects {
		t.Error("the agent's commit changed the person's repository")
	}
	if ag("log", "-1", "--format=%s") != "the agent's" {
		t.Error("the agent's commit is not in its repository")
	}
	// And fetches what the person commits meanwhile, from the remote host.
	os.Remove(filepath.Join(ws, ".git", "refs", "heads", "passwd"))
	os.WriteFile(filepath.Join(ws, "d.txt"), []byte("d\n"), 0o644)
	git(t, ws, "add", "d.txt")
	git(t, ws, "-c", "core.hooksPath=/dev/null", "commit", "-q", "-m", "the person's")
	ag("fetch", "-q", "host")
	if ag("log", "-1", "--format=%s", "refs/remotes/host/main") != "the person's" {
		t.Error("the agent cannot fetch the person's new commits")
	}
}

func TestSeedSubmodule(t *testing.T) {
	lib := t.TempDir()
	git(t, lib, "init", "-q", "-b", "main")
	os.WriteFile(filepath.Join(lib, "l.txt"), []byte("l\n"), 0o644)
	git(t, lib, "add", "l.txt")
	git(t, lib, "commit", "-q", "-m", "lib")
	ws := t.TempDir()
	git(t, ws, "init", "-q", "-b", "main")
	git(t, ws, "-c", "protocol.file.allow=always", "submodule", "add", "-q", lib, "vendor/lib")
	git(t, ws, "commit", "-q", "-m", "with a submodule")
	os.WriteFile(filepath.Join(ws, ".git", "modules", "vendor", "lib", "hooks", "post-commit"), []byte("#!/bin/sh\n"), 0o755)

	g, err := InspectGit(ws)
	if err != nil {
		t.Fatal(err)
	}
	files, _, err := Seed(g, g.Dir)
	if err != nil {
		t.Fatal(err)
	}
	// The bottle's /workspace/.git is the agent's repository; here the
	// test puts it where the checkout's .git file points, by copying the
	// checkout next to it.
	work := t.TempDir()
	agent := filepath.Join(work, ".git")
	writeSeed(t, agent, files)
	if out, err := exec.Command("cp", "-a", filepath.Join(ws, "vendor"), filepath.Join(ws, ".gitmodules"), work).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	os.WriteFile(filepath.Join(work, "vendor", "lib", ".keep"), nil, 0o644)
	os.Remove(filepath.Join(work, "vendor", "lib", ".keep"))
	if st := git(t, filepath.Join(work, "vendor", "lib"), "status", "--porcelain"); st != "" {
		t.Errorf("the submodule's copy is not clean: %s", st)
	}
	if wt := git(t, filepath.Join(work, "vendor", "lib"), "rev-parse", "--show-toplevel"); wt != Resolve(filepath.Join(work, "vendor", "lib")) {
		t.Errorf("the submodule's worktree is %s", wt)
	}
	if _, err := os.Stat(filepath.Join(agent, "modules", "vendor", "lib", "hooks", "post-commit")); err == nil {
		t.Error("the submodule's hook was copied")
	}
}

func TestInspectGit(t *testing.T) {
	ws := t.TempDir()
	if g, err := InspectGit(ws); err != nil || g.Kind != GitNone {
		t.Errorf("no .git: %+v %v", g, err)
	}
	os.WriteFile(filepath.Join(ws, ".git"), []byte("gitdir: /elsewhere\n"), 0o644)
	if g, err := InspectGit(ws); err != nil || g.Kind != GitFile {
		t.Errorf(".git file: %+v %v", g, err)
	}
	os.Remove(filepath.Join(ws, ".git"))
	os.Symlink(t.TempDir(), filepath.Join(ws, ".git"))
	if _, err := InspectGit(ws); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf(".git link: %v", err)
	}
}

// What FilterConfig writes is read by git as the values it kept, however
// they were quoted: nothing in a value starts a section of its own.
func TestFilterConfigQuoting(t *testing.T) {
	in := "[remote \"o\\\"x\"]\n\turl = \"a\\\"b\\\\c ; d\" # comment\n\tfetch = plain  value  ; c\n" +
		"[remote \"nl\"]\n\turl = \"x\\n[core]\\n\\tfsmonitor = touch /tmp/p\"\n" +
		"[branch.old]\n\tremote = o\n[core] logAllRefUpdates\n"
	out, dropped := FilterConfig([]byte(in), false, "")
	f := filepath.Join(t.TempDir(), "config")
	os.WriteFile(f, out, 0o644)
	list := git(t, "/", "config", "-f", f, "--list")
	want := "remote.o\"x.url=a\"b\\c ; d\nremote.o\"x.fetch=plain  value\nbranch.old.remote=o\ncore.logallrefupdates=true\ncore.bare=false"
	if list != want {
		t.Errorf("git reads\n%s\nwant\n%s\n(from %s)", list, want, out)
	}
	if !slices.Contains(dropped, "remote.<remote>.url") {
		t.Errorf("dropped %q: the value with a line break is not said", dropped)
	}
}

// The seed holds at most maxSeedEntries files and folders, however many
// submodules, refs or folders without HEAD the repository holds, and says
// what it left out; the main repository's own files come first.
func TestSeedEntryBudget(t *testing.T) {
	defer func(n int) { maxSeedEntries = n }(maxSeedEntries)
	maxSeedEntries = 300
	ws := t.TempDir()
	if out, err := exec.Command("git", "init", "-q", ws).CombinedOutput(); err != nil {
		t.Fatalf("git init: %v\n%s", err, out)
	}
	git := filepath.Join(ws, ".git")
	head := []byte("ref: refs/heads/main\n")
	for m := 0; m < 40; m++ { // 40 submodules of 20 refs each
		mod := filepath.Join(git, "modules", "m"+strconv.Itoa(m))
		os.MkdirAll(filepath.Join(mod, "refs", "heads"), 0o755)
		os.WriteFile(filepath.Join(mod, "HEAD"), head, 0o644)
		for r := 0; r < 20; r++ {
			os.WriteFile(filepath.Join(mod, "refs", "heads", "b"+strconv.Itoa(r)), []byte(strings.Repeat("a", 40)+"\n"), 0o644)
		}
	}
	deep := filepath.Join(git, "modules", "x")
	for i := 0; i < 500; i++ { // folders without HEAD, one in another
		deep = filepath.Join(deep, "d")
	}
	os.MkdirAll(deep, 0o755)
	g, err := InspectGit(ws)
	if err != nil {
		t.Fatal(err)
	}
	files, notes, err := Seed(g, HostGitMount)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) > maxSeedEntries {
		t.Errorf("%d entries seeded, more than %d", len(files), maxSeedEntries)
	}
	if !strings.Contains(strings.Join(notes, "\n"), "more than 300 files") {
		t.Errorf("notes: %q", notes)
	}
	have := map[string]bool{}
	for _, f := range files {
		have[f.Path] = true
	}
	for _, p := range []string{"HEAD", "config", "objects/info/alternates"} {
		if !have[p] {
			t.Errorf("the main repository's %s is left out", p)
		}
	}
}
