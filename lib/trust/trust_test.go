package trust

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestStore(t *testing.T) {
	s := Open(t.TempDir())
	p := "/src/project/bb.yaml"
	v1, v2 := []byte("version: 1\n"), []byte("version: 1\nagents: {}\n")
	if ok, before, err := s.Lookup(p, Sum(v1)); ok || before != nil || err != nil {
		t.Fatalf("an empty store trusts: %v %q %v", ok, before, err)
	}
	if err := s.Trust(p, v1); err != nil {
		t.Fatal(err)
	}
	if ok, _, err := s.Lookup(p, Sum(v1)); !ok || err != nil {
		t.Errorf("trusted content is not trusted: %v", err)
	}
	ok, before, err := s.Lookup(p, Sum(v2))
	if ok || err != nil || string(before) != string(v1) {
		t.Errorf("changed content: ok %v, before %q, %v", ok, before, err)
	}
	if ok, _, _ := s.Lookup("/elsewhere/bb.yaml", Sum(v1)); ok {
		t.Error("the same content at another path is trusted")
	}
	fi, err := os.Stat(s.Dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("the store's folder: %v %v", fi.Mode(), err)
	}
	// A record moved to another path's name trusts nothing there.
	entries, _ := os.ReadDir(s.Dir)
	other := s.file("/x/bb.yaml")
	os.Rename(filepath.Join(s.Dir, entries[0].Name()), other)
	if ok, _, _ := s.Lookup("/x/bb.yaml", Sum(v1)); ok {
		t.Error("a record for another path was taken")
	}
}

func TestDiff(t *testing.T) {
	before := "a\nb\nc\nd\ne\nf\ng\nh\n"
	after := "a\nb\nC\nd\ne\nf\ng\nh\ni\n"
	want := "  a\n  b\n- c\n+ C\n  d\n  e\n  ...\n  g\n  h\n+ i\n"
	if got := Diff([]byte(before), []byte(after)); got != want {
		t.Errorf("diff:\n%s", cmp.Diff(want, got))
	}
	if got := Diff(nil, []byte("x\n")); got != "+ x\n" {
		t.Errorf("from nothing: %q", got)
	}
}

func TestPending(t *testing.T) {
	s := Open(t.TempDir())
	ws := t.TempDir()
	in := filepath.Join(ws, "bb.yaml")
	out := filepath.Join(t.TempDir(), "bb.yaml")
	content := []byte("agents: {}\n\x1b]0;owned\x07\n")
	os.WriteFile(in, content, 0o644)
	os.WriteFile(out, content, 0o644)
	files := []File{{in, Sum(content)}, {out, Sum(content)}}
	ps, err := s.Pending(files, []string{ws})
	if err != nil || len(ps) != 1 || ps[0].Path != in || string(ps[0].Now) != string(content) || ps[0].Known {
		t.Fatalf("pending: %+v %v", ps, err)
	}
	d := Describe(ps[0])
	if strings.ContainsAny(d, "\x1b\x07") || !strings.Contains(d, "not trusted it yet") {
		t.Errorf("describe: %q", d)
	}
	s.Trust(in, content)
	if ps, _ := s.Pending(files, []string{ws}); len(ps) != 0 {
		t.Errorf("a trusted file is pending: %+v", ps)
	}
	// The agent rewrites it: pending again, shown as a change.
	changed := []byte("agents: {}\nbottles: {x: {}}\n")
	os.WriteFile(in, changed, 0o644)
	ps, _ = s.Pending([]File{{in, Sum(changed)}}, []string{ws})
	if len(ps) != 1 || !strings.Contains(Describe(ps[0]), "+ bottles: {x: {}}") {
		t.Errorf("a changed file: %+v", ps)
	}
	// Changed again after it was read: never shown as what was read.
	ps, _ = s.Pending([]File{{in, Sum([]byte("what was read"))}}, []string{ws})
	if len(ps) != 1 || ps[0].Now != nil || !strings.Contains(Describe(ps[0]), "changed while bb was reading") {
		t.Errorf("a file changed since it was read: %+v", ps)
	}
}

// A folder once a workspace is remembered; a file trusted once is pending
// when changed, wherever it lies now.
func TestRememberAndKnown(t *testing.T) {
	s := Open(t.TempDir())
	if ws, err := s.Workspaces(); len(ws) != 0 || err != nil {
		t.Fatalf("an empty store: %q %v", ws, err)
	}
	s.Remember("/src/a")
	s.Remember("/src/b")
	s.Remember("/src/a")
	ws, err := s.Workspaces()
	if err != nil || len(ws) != 2 || !strings.Contains(strings.Join(ws, " "), "/src/a") {
		t.Errorf("remembered: %q %v", ws, err)
	}
	f := filepath.Join(t.TempDir(), "bb.yaml")
	v1, v2 := []byte("a: 1\n"), []byte("a: 2\n")
	s.Trust(f, v1)
	os.WriteFile(f, v2, 0o644)
	ps, _ := s.Pending([]File{{f, Sum(v2)}}, nil)
	if len(ps) != 1 || !strings.Contains(Describe(ps[0]), "when you trusted it") {
		t.Errorf("a trusted file changed outside every workspace: %+v", ps)
	}
	if ps, _ := s.Pending([]File{{f, Sum(v1)}}, nil); len(ps) != 0 {
		t.Errorf("trusted content: %+v", ps)
	}
}

// What cannot be shown is never offered to trust as shown: a file past the
// lines a change is shown for, or past the bytes kept, is pending with no
// content to ask about, and says why.
func TestPendingTooLong(t *testing.T) {
	s := Open(t.TempDir())
	ws := t.TempDir()
	f := filepath.Join(ws, "bb.yaml")
	for _, c := range []struct {
		lines, width int
		long         bool
	}{
		{maxDiffLines - 1, 10, false},
		{maxDiffLines, 10, false},
		{maxDiffLines + 1, 10, true},
		{10 * maxDiffLines, 10, true},
		{1, maxKept - 1, false},
		{1, maxKept, false},
		{1, maxKept + 1, true},
		{1, 10 * maxKept, true},
	} {
		line := strings.Repeat("x", c.width-1) + "\n"
		content := []byte(strings.Repeat(line, c.lines))
		os.WriteFile(f, content, 0o644)
		ps, err := s.Pending([]File{{f, Sum(content)}}, []string{ws})
		if err != nil || len(ps) != 1 {
			t.Fatalf("%d lines of %d: %+v %v", c.lines, c.width, ps, err)
		}
		p := ps[0]
		if p.TooLong != c.long || (p.Now != nil) == c.long {
			t.Errorf("%d lines of %d bytes: too long %v, content %d bytes", c.lines, c.width, p.TooLong, len(p.Now))
		}
		if c.long && !strings.Contains(Describe(p), "too long to show") {
			t.Errorf("%d lines of %d bytes: not said to be too long to show (%d bytes said)", c.lines, c.width, len(Describe(p)))
		}
	}
}
