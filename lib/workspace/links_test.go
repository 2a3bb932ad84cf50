package workspace

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Every link on the way is found, relative, absolute, chained, through
// "..", and a loop ends.
func TestLinks(t *testing.T) {
	root, _ := filepath.EvalSymlinks(t.TempDir())
	agent := filepath.Join(root, "agent")
	other := filepath.Join(root, "other")
	os.MkdirAll(filepath.Join(other, "deep"), 0o755)
	os.MkdirAll(filepath.Join(agent, "real"), 0o755)
	os.Symlink(other, filepath.Join(agent, "abs"))
	os.Symlink("../other", filepath.Join(agent, "rel"))
	os.Symlink("abs", filepath.Join(agent, "chain"))
	os.Symlink("real/../rel", filepath.Join(agent, "dotdot"))
	os.Symlink("loop", filepath.Join(agent, "loop"))
	for _, c := range []struct {
		p     string
		links int
	}{
		{filepath.Join(agent, "real"), 0},
		{filepath.Join(agent, "abs", "deep"), 1},
		{filepath.Join(agent, "rel", "deep"), 1},
		{filepath.Join(agent, "chain"), 2},
		{filepath.Join(agent, "dotdot", "deep"), 2},
		{filepath.Join(agent, "real", "..", "abs"), 1},
		{filepath.Join(agent, "missing", "x"), 0},
	} {
		ls := Links(c.p)
		if len(ls) != c.links {
			t.Errorf("Links(%s) = %q, want %d", c.p, ls, c.links)
		}
		err := NotThroughLinksIn(c.p, []string{agent})
		if (err != nil) != (c.links > 0) {
			t.Errorf("NotThroughLinksIn(%s) = %v", c.p, err)
		}
		if c.links > 0 && (err == nil || !strings.Contains(err.Error(), "link")) {
			t.Errorf("the refusal does not say why: %v", err)
		}
		if err := NotThroughLinksIn(c.p, []string{other}); err != nil {
			t.Errorf("a link outside the agent's folders: %v", err)
		}
	}
	if ls := Links(filepath.Join(agent, "loop", "x")); len(ls) != maxLinks+1 {
		t.Errorf("a loop: %d links", len(ls))
	}
}

// A folder the walk cannot read is not taken for one without repositories:
// the look is said to be incomplete. And a deep tree is walked with few
// files open at once.
func TestNestedReposUnreadable(t *testing.T) {
	if os.Geteuid() == 0 {
		// root reads a folder of mode 0; the test drops to another user
		// only where it can.
		t.Skip("root reads every folder")
	}
	ws := t.TempDir()
	locked := filepath.Join(ws, "locked")
	os.MkdirAll(filepath.Join(locked, "hidden", ".git"), 0o755)
	os.Chmod(locked, 0)
	defer os.Chmod(locked, 0o755)
	if _, complete := NestedRepos(ws, 1000); complete {
		t.Error("an unreadable folder counted as looked through")
	}
}

func TestNestedReposDeep(t *testing.T) {
	ws := t.TempDir()
	p := ws
	for i := 0; i < 1500; i++ {
		p = filepath.Join(p, "d")
	}
	if err := os.MkdirAll(filepath.Join(p, ".git"), 0o755); err != nil {
		t.Skip("the disk takes no path this deep:", err)
	}
	repos, complete := NestedRepos(ws, 100_000)
	if len(repos) != 1 || !complete {
		t.Errorf("a repository 1500 folders down: %d found, complete %v", len(repos), complete)
	}
}

// A .git file that names a repository inside the workspace (the ".bare"
// layout: gitdir: ./.bare) leaves that repository, configuration and hooks,
// the agent's to write: refused. One outside (a linked worktree's) is not.
func TestPlanGitFileInside(t *testing.T) {
	ws := t.TempDir()
	bare := filepath.Join(ws, ".bare")
	if out, err := exec.Command("git", "init", "-q", "--bare", bare).CombinedOutput(); err != nil {
		t.Fatalf("git init: %v\n%s", err, out)
	}
	os.WriteFile(filepath.Join(ws, ".git"), []byte("gitdir: ./.bare\n"), 0o644)
	if _, err := PlanGit(ws); err == nil || !strings.Contains(err.Error(), ".bare") {
		t.Errorf("a .git file naming a repository in the workspace: %v", err)
	}
	// Its worktree's metadata inside, its common folder too.
	wt := filepath.Join(ws, "wt")
	os.MkdirAll(filepath.Join(bare, "worktrees", "wt"), 0o755)
	os.WriteFile(filepath.Join(bare, "worktrees", "wt", "commondir"), []byte("../..\n"), 0o644)
	os.Mkdir(wt, 0o755)
	os.WriteFile(filepath.Join(wt, ".git"), []byte("gitdir: "+filepath.Join(bare, "worktrees", "wt")+"\n"), 0o644)
	if _, err := PlanGit(wt); err != nil {
		t.Errorf("a linked worktree whose repository lies outside it: %v", err)
	}
	// The same worktree, its common folder named inside it.
	os.WriteFile(filepath.Join(bare, "worktrees", "wt", "commondir"), []byte(filepath.Join(wt, "common")+"\n"), 0o644)
	if _, err := PlanGit(wt); err == nil {
		t.Error("a worktree whose common folder lies inside the workspace")
	}
}

// Settings of the person's repository that make git on the host read
// files in the workspace are said (husky's hooks, an included project
// configuration); others are not.
func TestPlanGitFilesInWorkspace(t *testing.T) {
	ws := t.TempDir()
	if out, err := exec.Command("git", "init", "-q", ws).CombinedOutput(); err != nil {
		t.Fatalf("git init: %v\n%s", err, out)
	}
	p, err := PlanGit(ws)
	if err != nil || len(p.Notes) != 0 {
		t.Fatalf("a plain repository: %q %v", p.Notes, err)
	}
	for _, kv := range [][2]string{{"core.hooksPath", ".husky/_"}, {"include.path", "../.gitconfig"},
		{"includeIf.onbranch:main.path", "../shared.cfg"}, {"core.excludesFile", ".ignore"}, {"include.path", "/etc/gitconfig-x"}} {
		exec.Command("git", "-C", ws, "config", "--add", kv[0], kv[1]).Run()
	}
	p, err = PlanGit(ws)
	notes := strings.Join(p.Notes, "\n")
	if err != nil || len(p.Notes) != 3 || !strings.Contains(notes, "core.hookspath is .husky/_") ||
		!strings.Contains(notes, "include.path is ../.gitconfig") || !strings.Contains(notes, "includeif.path is ../shared.cfg") {
		t.Errorf("notes: %v\n%s", err, notes)
	}
}

// A .git folder whose commondir names a folder in the workspace is
// refused: git takes configuration and hooks from there.
func TestPlanGitCommondirInside(t *testing.T) {
	ws := t.TempDir()
	if out, err := exec.Command("git", "init", "-q", ws).CombinedOutput(); err != nil {
		t.Fatalf("git init: %v\n%s", err, out)
	}
	os.WriteFile(filepath.Join(ws, ".git", "commondir"), []byte("../shared\n"), 0o644)
	if _, err := PlanGit(ws); err == nil || !strings.Contains(err.Error(), "commondir") {
		t.Errorf("a commondir in the workspace: %v", err)
	}
	os.WriteFile(filepath.Join(ws, ".git", "commondir"), []byte(t.TempDir()+"\n"), 0o644)
	if _, err := PlanGit(ws); err != nil {
		t.Errorf("a commondir outside: %v", err)
	}
}
