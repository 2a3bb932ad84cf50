//go:build unix

package workspace

import (
	"fmt"
	"os"
	"syscall"
)

// IDOf returns the identity of the folder at p (not following a last link).
func IDOf(p string) (ID, error) {
	fi, err := os.Lstat(p)
	if err != nil {
		return ID{}, fmt.Errorf("reading %s: %w", p, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ID{}, nil
	}
	return ID{Dev: uint64(st.Dev), Ino: uint64(st.Ino)}, nil //nolint:unconvert // int32 on darwin
}
