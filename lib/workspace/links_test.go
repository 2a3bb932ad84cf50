package workspace

import (
	"os"
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
