package workspace

import (
	"os/exec"
	"syscall"
	"testing"
)

// Past the system's path length a repository cannot be reached by its
// path: the look says it is incomplete rather than clean.
func TestNestedReposPastPathMax(t *testing.T) {
	ws := t.TempDir()
	fd, err := syscall.Open(ws, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2100; i++ { // 4,200 bytes of "d/"
		if err := syscall.Mkdirat(fd, "d", 0o755); err != nil {
			t.Fatal(err)
		}
		next, err := syscall.Openat(fd, "d", syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
		syscall.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		fd = next
	}
	syscall.Mkdirat(fd, ".git", 0o755)
	syscall.Close(fd)
	t.Cleanup(func() { exec.Command("rm", "-rf", ws).Run() })
	repos, complete := NestedRepos(ws, 100_000)
	if complete && len(repos) == 0 {
		t.Error("a repository past the path length was passed over as none")
	}
}
