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
