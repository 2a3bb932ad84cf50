package backend

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A bundle's branches are counted from its header, by real git's bundles,
// around the bound; what is no bundle is refused.
func TestBundleBranches(t *testing.T) {
	repo := t.TempDir()
	git := func(stdin string, args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", repo, "-c", "user.name=t", "-c", "user.email=t@t"}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %q: %v\n%s", args, err, out)
		}
	}
	git("", "init", "-q", "-b", "main")
	git("", "commit", "-q", "--allow-empty", "-m", "one")
	const max = 5
	for _, n := range []int{max - 1, max, max + 1, 10 * max} {
		var b strings.Builder
		for i := 1; i < n; i++ { // main is one
			fmt.Fprintf(&b, "create refs/heads/b%d HEAD\n", i)
		}
		cmd := exec.Command("sh", "-c", "git for-each-ref --format='delete %(refname)' 'refs/heads/b*' | git update-ref --stdin")
		cmd.Dir = repo
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("deleting the branches: %v\n%s", err, out)
		}
		git(b.String(), "update-ref", "--stdin")
		for _, v := range []string{"2", "3"} {
			f := filepath.Join(t.TempDir(), "b.bundle")
			git("", "bundle", "create", "-q", "--version="+v, f, "--branches")
			got, err := bundleBranches(f, max)
			want := min(n, max+1)
			if err != nil || got != want {
				t.Errorf("v%s, %d branches: %d %v, want %d", v, n, got, err, want)
			}
		}
	}
	junk := filepath.Join(t.TempDir(), "junk")
	os.WriteFile(junk, []byte("# v2 git bundle\n"+strings.Repeat("x", 100<<10)), 0o644)
	if _, err := bundleBranches(junk, max); err == nil {
		t.Error("a header line past the bound is taken")
	}
	os.WriteFile(junk, []byte("PACK"), 0o644)
	if _, err := bundleBranches(junk, max); err == nil {
		t.Error("no bundle is taken")
	}
}

// The writer takes exactly its bound, no byte more.
func TestLimitWriter(t *testing.T) {
	for _, n := range []int{9, 10, 11, 100} {
		var b bytes.Buffer
		lw := &limitWriter{w: &b, left: 10}
		_, err := lw.Write(make([]byte, n))
		if (err != nil) != (n > 10) || lw.over != (n > 10) || (n > 10 && b.Len() != 0) {
			t.Errorf("%d bytes: %v, over %v, %d written", n, err, lw.over, b.Len())
		}
	}
	lw := &limitWriter{w: &bytes.Buffer{}, left: 10}
	lw.Write(make([]byte, 6))
	if _, err := lw.Write(make([]byte, 5)); err == nil {
		t.Error("two writes past the bound")
	}
}
