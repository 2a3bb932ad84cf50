//go:build !linux && !darwin

package pty

import (
	"errors"
	"os"
	"runtime"
)

// Open is written for Linux and macOS only.
func Open() (ptmx, tty *os.File, err error) {
	return nil, nil, errors.New("opening pseudo-terminals is not written for " + runtime.GOOS)
}
