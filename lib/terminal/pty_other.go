//go:build !linux && !darwin

package terminal

import (
	"errors"
	"os"
)

// OpenPTY cannot open a pseudo-terminal here.
func OpenPTY() (ptmx, tty *os.File, err error) {
	return nil, nil, errors.New("pseudo-terminals are held on Linux and macOS only")
}

// SetPTYSize does nothing here.
func SetPTYSize(*os.File, uint16, uint16) error { return nil }
