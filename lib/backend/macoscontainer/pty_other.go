//go:build !linux && !darwin

package macoscontainer

import (
	"errors"
	"os"
)

func openPTY() (ptmx, tty *os.File, err error) {
	return nil, nil, errors.New("pseudo-terminals are opened on macOS and Linux only")
}
