package state

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestWriteFileAtomic(t *testing.T) {
	tests := []struct {
		name string
		old  string // "" for no previous file
		data string
		perm os.FileMode
	}{
		{"new file", "", "routes: []\n", 0o600},
		{"replace", "old\n", "new\n", 0o600},
		{"exact perm despite umask", "old", "new", 0o644},
		{"empty", "old", "", 0o600},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "routes.yaml")
			var before os.FileInfo
			if tt.old != "" {
				if err := os.WriteFile(path, []byte(tt.old), 0o600); err != nil {
					t.Fatal(err)
				}
				before, _ = os.Stat(path)
			}
			if err := WriteFileAtomic(path, []byte(tt.data), tt.perm); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.data, string(got)); diff != "" {
				t.Errorf("content (-want +got):\n%s", diff)
			}
			after, _ := os.Stat(path)
			if after.Mode().Perm() != tt.perm {
				t.Errorf("mode = %v, want %v", after.Mode().Perm(), tt.perm)
			}
			// A watcher of the file must see a new file renamed into
			// place, not the old one rewritten.
			if before != nil && os.SameFile(before, after) {
				t.Error("the file was rewritten in place, not replaced by rename")
			}
			assertOnlyFile(t, dir, "routes.yaml")
		})
	}
}

func TestWriteFileAtomicFailureKeepsOld(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "routes.yaml")
	if err := os.WriteFile(path, []byte("old routes\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	failing := func(f *os.File, b []byte) error {
		if _, err := f.Write(b[:len(b)/2]); err != nil {
			return err
		}
		return errors.New("disk full")
	}
	err := writeFileAtomic(path, []byte("new routes, half written\n"), 0o600, failing)
	if err == nil {
		t.Fatal("no error from a failing write")
	}
	if want := "writing " + path + ": disk full"; err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
	got, _ := os.ReadFile(path)
	if diff := cmp.Diff("old routes\n", string(got)); diff != "" {
		t.Errorf("content after a failed write (-want +got):\n%s", diff)
	}
	assertOnlyFile(t, dir, "routes.yaml")
}

func TestWriteFileAtomicReadOnlyFolder(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root writes into read-only folders")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "routes.yaml")
	if err := os.WriteFile(path, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o700) })
	if err := WriteFileAtomic(path, []byte("new\n"), 0o600); err == nil {
		t.Fatal("no error writing into a read-only folder")
	}
	got, _ := os.ReadFile(path)
	if diff := cmp.Diff("old\n", string(got)); diff != "" {
		t.Errorf("content (-want +got):\n%s", diff)
	}
}

// A rename onto a folder fails after the temporary file is complete: the
// temporary file must still be cleaned up.
func TestWriteFileAtomicRenameFails(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "routes.yaml")
	if err := os.MkdirAll(filepath.Join(path, "keep"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(path, []byte("new\n"), 0o600); err == nil {
		t.Fatal("no error renaming onto a non-empty folder")
	}
	if _, err := os.Stat(filepath.Join(path, "keep")); err != nil {
		t.Errorf("the folder in the way was changed: %v", err)
	}
	assertOnlyFile(t, dir, "routes.yaml")
}

func assertOnlyFile(t *testing.T, dir, name string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if diff := cmp.Diff([]string{name}, names); diff != "" {
		t.Errorf("files left in the folder (-want +got):\n%s", diff)
	}
}
