package trust

import (
	"os"
	"path/filepath"
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
