package docker

import (
	"errors"
	"strings"
	"testing"
)

func TestStorageSized(t *testing.T) {
	for _, c := range []struct {
		driver, backing string
		want            bool
	}{
		{"overlay2", "xfs", true},
		{"overlay2", "extfs", false},
		{"fuse-overlayfs", "", false},
		{"btrfs", "btrfs", true},
		{"zfs", "zfs", true},
		{"vfs", "extfs", false},
		{"", "", false},
	} {
		st := storageOf(c.driver, [][2]string{{"Supports d_type", "true"}, {"Backing Filesystem", c.backing}})
		if st.sized() != c.want {
			t.Errorf("%s on %s: sized %v, want %v", c.driver, c.backing, st.sized(), c.want)
		}
		note := diskNote("", st)
		if !strings.HasPrefix(note, "none: ") || (c.driver != "" && !strings.Contains(note, c.driver)) {
			t.Errorf("%s on %s: note %q", c.driver, c.backing, note)
		}
	}
	if got := diskNote("16g", storage{driver: "btrfs"}); got != "16g" {
		t.Errorf("bounded: note %q", got)
	}
	refused := errors.New("Error response from daemon: --storage-opt is supported only for overlay over xfs with 'pquota' mount option")
	if !storageOptRefused(refused) || storageOptRefused(errors.New("No such image: x")) {
		t.Error("storageOptRefused tells the wrong errors apart")
	}
	if got := diskNote("", storage{driver: "overlay2", backing: "xfs", refused: refused.Error()}); !strings.Contains(got, "pquota") {
		t.Errorf("refused: note %q", got)
	}
}
