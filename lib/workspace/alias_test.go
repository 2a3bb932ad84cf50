package workspace

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

func TestCaseSpellings(t *testing.T) {
	got := caseSpellings()
	sort.Strings(got)
	want := ".GIT .GIt .GiT .Git .gIT .gIt .giT"
	if strings.Join(got, " ") != want {
		t.Errorf("spellings: %q", got)
	}
}

// Where the disk ignores case every other spelling of .git is found; where
// it does not, none (a spelling the agent made is another folder).
func TestGitAliases(t *testing.T) {
	ws := t.TempDir()
	if got := GitAliases(ws); got != nil && !ignoresCase(ws) {
		t.Errorf("aliases of no .git, where case counts: %q", got)
	}
	os.Mkdir(filepath.Join(ws, ".git"), 0o755)
	os.Mkdir(filepath.Join(ws, ".GIT"), 0o755) // another folder, where case counts
	insensitive := false
	if a, err := os.Stat(filepath.Join(ws, ".git")); err == nil {
		if b, err := os.Stat(filepath.Join(ws, ".Git")); err == nil && os.SameFile(a, b) {
			insensitive = true
		}
	}
	got := GitAliases(ws)
	if !insensitive && len(got) != 0 {
		t.Errorf("a case-sensitive disk: %q", got)
	}
	if dir := os.Getenv("BB_TEST_CASEFOLD_DIR"); dir != "" || insensitive {
		if dir == "" {
			dir = t.TempDir()
		}
		ws, err := os.MkdirTemp(dir, "alias-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(ws)
		if got := GitAliases(ws); len(got) != 7 {
			t.Errorf("a disk that ignores case, no .git yet: %q", got)
		}
		os.WriteFile(filepath.Join(ws, ".git"), []byte("gitdir: ../main/.git/worktrees/ws\n"), 0o644)
		if got := GitAliases(ws); len(got) != 7 {
			t.Errorf("a disk that ignores case: %q", got)
		}
	}
}
