package docker

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bb-bottles/bb/lib/manifest"
	"github.com/bb-bottles/bb/lib/state"
)

// caseInsensitiveDir is a folder on a disk that ignores case, as macOS's
// do by default: BB_TEST_CASEFOLD_DIR, else the temporary folder when its
// disk is one; the test is skipped where there is none (a Linux disk).
func caseInsensitiveDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("BB_TEST_CASEFOLD_DIR")
	if dir == "" {
		dir = os.TempDir()
	}
	parent, err := os.MkdirTemp(dir, "bb-case-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	os.Chmod(parent, 0o755)
	if _, err := os.Stat(strings.ToUpper(parent[:len(dir)]) + parent[len(dir):]); err != nil {
		if _, err := os.Stat(filepath.Join(dir, strings.ToUpper(filepath.Base(parent)))); err != nil {
			t.Skip("no disk that ignores case here: set BB_TEST_CASEFOLD_DIR to a folder on one")
		}
	}
	return parent
}

// On a disk that ignores case, .GIT is .git: the agent must not reach the
// person's .git, nor the folder bb made for its own repository, through
// another spelling, and leave there what git on the host runs.
func TestLaunchGitCaseFolding(t *testing.T) {
	c := needBase(t)
	for _, kind := range []string{"repository", "none", "worktree"} {
		t.Run(kind, func(t *testing.T) {
			parent := caseInsensitiveDir(t)
			ws := filepath.Join(parent, "ws")
			os.Chown(parent, personUID, personUID)
			if kind != "worktree" {
				os.Mkdir(ws, 0o755)
				os.Chown(ws, personUID, personUID)
			}
			if kind == "worktree" {
				// A linked worktree: its .git is a file naming the main
				// repository's, outside the workspace.
				main := filepath.Join(parent, "main")
				os.Mkdir(main, 0o755)
				os.Chown(main, personUID, personUID)
				personGit(t, main, "init", "-q", "-b", "main")
				personGit(t, main, "commit", "-q", "--allow-empty", "-m", "first")
				personGit(t, main, "worktree", "add", "-q", ws)
			}
			gitFile, _ := os.ReadFile(filepath.Join(ws, ".git"))
			if kind == "repository" {
				personGit(t, ws, "init", "-q", "-b", "main")
				os.WriteFile(filepath.Join(ws, "README"), []byte("the person's\n"), 0o644)
				personGit(t, ws, "add", "README")
				personGit(t, ws, "commit", "-q", "-m", "first")
			}
			slug := newSlug("gitcase")
			p, raw := shellPlan(t, slug, func(m *manifest.Manifest) { m.Bottle.Workspace = ws })
			st := &state.Store{Dir: t.TempDir()}
			cleanupBottle(t, c, slug)
			if _, err := Launch(t.Context(), c, launchOptions(t, p, raw, st)); err != nil {
				t.Fatal(err)
			}
			// Every spelling the agent may try, each a repository git on the
			// host would take, or a change to the person's.
			script := `cd /workspace
for d in .GIT .Git .gIT .giT; do
  [ -d "$d" ] || continue
  printf 'ref: refs/heads/main\n' > "$d/HEAD" 2>/dev/null
  mkdir -p "$d/objects" "$d/refs" 2>/dev/null
  printf '[core]\n\tfsmonitor = touch pwned-case\n' >> "$d/config" 2>/dev/null
done
if [ -f .GIT ]; then
  git init -q --bare evil && git --git-dir=evil config core.bare false && git --git-dir=evil config core.fsmonitor 'touch pwned-case'
  printf 'gitdir: evil\n' > .GIT 2>/dev/null || printf 'gitdir: evil\n' > .Git
fi; true`
			if code, out, errs := execIn(t, c, slug, "sh", "-c", script); code != 0 {
				t.Fatalf("in the bottle: exit %d\n%s%s", code, out, errs)
			}
			if cfg, _ := os.ReadFile(filepath.Join(ws, ".git", "config")); strings.Contains(string(cfg), "pwned") {
				t.Errorf("the agent wrote the host's .git/config through another spelling:\n%s", cfg)
			}
			if now, _ := os.ReadFile(filepath.Join(ws, ".git")); kind == "worktree" && string(now) != string(gitFile) {
				t.Errorf("the agent rewrote the workspace's .git file through another spelling: %q", now)
			}
			if kind == "none" {
				if entries, _ := os.ReadDir(filepath.Join(ws, ".git")); len(entries) != 0 {
					t.Errorf("the agent filled the host's empty .git through another spelling: %d entries", len(entries))
				}
			}
			gitAs(personUID, ws, "status")
			if got := pwned(ws); len(got) > 0 {
				t.Errorf("git on the host ran what the agent wrote: %q", got)
			}
		})
	}
}
